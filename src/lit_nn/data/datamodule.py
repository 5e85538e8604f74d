"""The contract between lit-nn's DataModules and the CLI, the models and the tracking callbacks.

Every DataModule a lit-nn run uses derives from :class:`LitDataModule`, so the run-naming,
tagging and reporting code reads declared attributes instead of guessing with ``getattr``.
"""

from __future__ import annotations

from typing import ClassVar

import lightning as L


class LitDataModule(L.LightningDataModule):
    """What the CLI and the tracking callbacks may rely on, besides Lightning's hooks.

    Attributes:
        has_test_split: whether ``test_dataloader`` serves a held-out test set (``fit`` then
            evaluates it at the end); the char-RNN's text has only train and validation.
        source: where the data came from, in words (set by ``setup``; recorded as ``data_source``).
        classes: names of the classes, in label order, for the confusion matrix; None for
            data without classes.
    """

    has_test_split: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.classes: tuple[str, ...] | None = None

    @property
    def dataset_name(self) -> str:
        """The short name runs are named and tagged by (``mnist``, ``pydoc_topics``...)."""
        raise NotImplementedError(f"{type(self).__name__} must define dataset_name")
