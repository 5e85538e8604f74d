"""The contract between lit-nn's DataModules and the CLI, the models and the tracking callbacks.

Every DataModule a lit-nn run uses derives from :class:`LitDataModule`, so the run-naming,
tagging and reporting code reads declared attributes instead of guessing with ``getattr``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L


@dataclass(frozen=True)
class DataInput:
    """What one split of a run's data was read from, for the run's MLflow dataset records
    (:mod:`lit_nn.tracking.datasets`).

    Attributes:
        name: what the data is (``mnist-sample-5k``, ``mnist``, ``fashion-mnist``, ``pydoc-topics``...).
        files: the files the split's items were read from.
        selection: which of those files' items the split holds, in words that change when it does
            (``train of 4,500 (val_size 500, seed 0)``): with the files' bytes, it makes the digest.
        size: items in the split (images, characters).
    """

    name: str
    files: tuple[Path, ...]
    selection: str
    size: int


class LitDataModule(L.LightningDataModule):
    """What the CLI and the tracking callbacks may rely on, besides Lightning's hooks.

    Attributes:
        has_test_split: whether ``test_dataloader`` serves a held-out test set (``fit`` then
            evaluates it at the end); the char-RNN's text has only train and validation.
        source: where the data came from, in words (set by ``setup``; recorded as ``data_source``).
        classes: names of the classes, in label order, for the confusion matrix; None for
            data without classes.
        inputs: per split (``train``, ``val``, ``test``) that ``setup`` loaded, what it was read from.
    """

    has_test_split: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.classes: tuple[str, ...] | None = None
        self.inputs: dict[str, DataInput] = {}

    @property
    def dataset_name(self) -> str:
        """The short name runs are named and tagged by (``mnist``, ``pydoc_topics``...)."""
        raise NotImplementedError(f"{type(self).__name__} must define dataset_name")

    def resident(self, *tensors: Any) -> tuple[Any, ...]:
        """``tensors`` on the training device, copied there once and kept: on a GPU the in-memory
        splits are sliced into batches where they live, with no host-to-device copy per batch.
        On the CPU (and without a trainer) they are returned as they are."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else None
        if device is None or device.type == "cpu":
            return tensors
        cache = self.__dict__.setdefault("_resident", {})
        moved = []
        for tensor in tensors:
            key = (id(tensor), str(device))
            if key not in cache:
                cache[key] = (tensor, tensor.to(device))  # the source is kept so its id stays unique
            moved.append(cache[key][1])
        return tuple(moved)

    def source_identity(self) -> str | None:
        """Which data a run will see, known before ``setup`` reads anything, when the same options
        can mean different data on different machines (full MNIST where its files are, the
        embedded sample elsewhere). A sweep hashes it into each point's identity, so results on
        different data are never taken for one another. None: the options alone say it."""
        return None

    def check_available(self, stage: str = "fit") -> None:
        """Raise the :class:`~lit_nn.core.errors.UserError` that ``setup(stage)`` would raise for
        data that is not there, without reading it: a sweep checks every point's data before the
        first one runs, instead of 21 points failing with the same sentence. Files are looked up,
        not read (a corrupt file is still found by ``setup``); a download is not tried. Default:
        nothing to check."""


def source_identity(data_config: Any) -> str | None:
    """``source_identity`` of the DataModule a run config's ``data`` section describes."""
    if not isinstance(data_config, dict) or "class_path" not in data_config:
        return None
    module, _, name = str(data_config["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "lit_nn.data"), name)
        datamodule = cls(**(data_config.get("init_args") or {}))
    except Exception:  # noqa: BLE001 - a bad data section is reported by the run itself, in its words
        return None
    return datamodule.source_identity() if isinstance(datamodule, LitDataModule) else None


def check_data_available(data_config: Any, stages: tuple[str, ...] = ("fit",)) -> None:
    """``check_available`` for each of ``stages`` of the DataModule a run config's ``data`` section
    describes; its option checks and missing data both raise the sentence the run would give."""
    if not isinstance(data_config, dict) or "class_path" not in data_config:
        return
    module, _, name = str(data_config["class_path"]).rpartition(".")
    datamodule = getattr(importlib.import_module(module or "lit_nn.data"), name)(**(data_config.get("init_args") or {}))
    if isinstance(datamodule, LitDataModule):
        for stage in stages:
            datamodule.check_available(stage)
