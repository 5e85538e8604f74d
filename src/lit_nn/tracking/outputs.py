"""The folders a run writes besides its store, checked before the command that makes it works.

A run's config, figures, ``predictions.csv`` and model go to its experiment's artifact folder, a
fit's checkpoints to the checkpoint folder (:func:`lit_nn.tracking.store.checkpoint_root`); the
store itself is checked by :func:`lit_nn.tracking.store.prepare_store`. Each is tried with
:func:`lit_nn.core.writable.check_writable` before any training and before the run exists, so a
read-only one is one sentence instead of a run that fails (or a result that is lost) at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from lit_nn.core.writable import check_writable
from lit_nn.tracking.store import (
    artifact_location,
    checkpoint_root,
    local_store_dir,
    resolve_tracking_uri,
    tracking_client,
)

STORE_REMEDY = "make it writable, or set MLFLOW_TRACKING_URI to a store in a folder you can write"


def local_folder(location: str | None) -> Path | None:
    """The local folder of an artifact location (``file://`` or a plain path); None for a server's."""
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(location) if not parsed.scheme else None


def artifact_folder(client: Any, experiment: str) -> Path | None:
    """Where the runs of ``experiment`` keep their artifacts on this machine: the experiment's own
    location, or the one lit-nn will give it (:func:`ensure_experiment`); None on a server."""
    found = client.get_experiment_by_name(experiment)
    location = found.artifact_location if found is not None else artifact_location(experiment, client.tracking_uri)
    return local_folder(location)


def check_checkpoint_folder(uri: str) -> None:
    """A fit's checkpoints (``last.ckpt``, ``best.ckpt``) can be written where they go."""
    remedy = (STORE_REMEDY if local_store_dir(uri) is not None
              else "run lit-nn from a folder you can write (beside a tracking server, checkpoints go to ./checkpoints)")
    check_writable(checkpoint_root(uri), "the checkpoint folder", remedy)


def check_run_outputs(client: Any, experiment: str, checkpoints: bool = False) -> None:
    """Before a run of ``experiment`` is created: its artifact folder, and with ``checkpoints`` the
    checkpoint folder, can be written (``client``: on the store the run goes to, already prepared)."""
    folder = artifact_folder(client, experiment)
    if folder is not None:
        check_writable(folder, f"the artifact folder of experiment {experiment!r}", STORE_REMEDY)
    if checkpoints:
        check_checkpoint_folder(client.tracking_uri)


def check_trainer_outputs(command: str, experiment: str, trainer_config: Mapping[str, Any]) -> None:
    """What ``lit-nn fit|validate|test|predict`` will write, tried before its run exists or a batch
    is trained: the store and the experiment's artifact folder (unless ``--trainer.logger false``),
    and for ``fit`` the checkpoint folder (unless ``--trainer.enable_checkpointing false``)."""
    checkpoints = command == "fit" and trainer_config.get("enable_checkpointing", True) is not False
    if trainer_config.get("logger") is not False:
        check_run_outputs(tracking_client(), experiment, checkpoints)
    elif checkpoints:
        check_checkpoint_folder(resolve_tracking_uri())
