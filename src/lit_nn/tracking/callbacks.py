"""Callbacks that connect a fit to its MLflow run: config, tags, checkpoints, figures, samples, failures.

They read what the model and the data offer through the declared contracts
(:class:`lit_nn.models.LitModel`, :class:`lit_nn.data.LitDataModule`), and write through the
run's :class:`~lit_nn.tracking.logger.MLflowTracker` on rank 0 only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lit_nn.core.names import Artifact, Metric, Param, Tag
from lit_nn.data.datamodule import LitDataModule
from lit_nn.models.base import LitModel
from lit_nn.tracking.atomic import copy_atomically, how_to_continue, not_written
from lit_nn.tracking.logger import MLflowTracker
from lit_nn.tracking.store import checkpoint_root, process_tags


def find_tracker(trainer: L.Trainer) -> MLflowTracker | None:
    """The trainer's lit-nn MLflow logger, if it has one (``--trainer.logger false`` has none)."""
    return next((lg for lg in trainer.loggers if isinstance(lg, MLflowTracker)), None)


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"class_path": C, "init_args": {"depth": 2}}}`` → ``{"model": C, "model.depth": 2}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "init_args" and isinstance(value, dict):
            flat.update(flatten_config(value, prefix))
            continue
        name = prefix[:-1] if key == "class_path" else f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif key not in ("config", "__path__"):
            flat[name] = value
    return flat


def device_tags(trainer: L.Trainer) -> dict[str, str]:
    """Where the run trains: ``device`` (``cpu``, ``cpu ×2`` for two DDP processes, ``mps``,
    ``cuda:0 (NVIDIA H200)``, ``cuda:0,1 (NVIDIA H200)``) and, when the process has one, its
    ``CUDA_VISIBLE_DEVICES`` (the physical GPUs behind ``cuda:0``..., e.g. a sweep worker's)."""
    from lightning.pytorch.strategies import ParallelStrategy

    strategy = trainer.strategy
    devices = list((strategy.parallel_devices if isinstance(strategy, ParallelStrategy) else None)
                   or [strategy.root_device])
    if all(d.type == "cuda" for d in devices):
        names = [torch.cuda.get_device_name(d) for d in devices]
        indices = [str(d.index if d.index is not None else i) for i, d in enumerate(devices)]
        if len(set(names)) == 1:
            device = f"cuda:{','.join(indices)} ({names[0]})"
        else:
            device = ", ".join(f"cuda:{i} ({name})" for i, name in zip(indices, names, strict=True))
    else:
        kinds = sorted({str(d) for d in devices})
        device = ", ".join(kinds) + (f" ×{len(devices)}" if len(kinds) == 1 and len(devices) > 1 else "")
    tags = {Tag.DEVICE: device}
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        tags[Tag.CUDA_VISIBLE_DEVICES] = os.environ["CUDA_VISIBLE_DEVICES"]
    return tags


class MLflowSaveConfig(SaveConfigCallback):
    """LightningCLI's config saving, into the MLflow run: ``config.yaml`` (re-run it with
    ``lit-nn fit -c``) and the flattened config as params (``model.depth``, ``trainer.max_epochs``...).

    A resumed run already has both (MLflow params are write-once), so it is left as it is.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tracker = find_tracker(trainer)
        if tracker is None or tracker.resumed:
            return
        config_yaml = self.parser.dump(self.config, skip_none=False, format="yaml")
        tracker.log_hyperparams(flatten_config(yaml.safe_load(config_yaml)))
        tracker.log_text(config_yaml, self.config_filename)


class _InRunFolder(ModelCheckpoint):
    """A ``ModelCheckpoint`` writing into ``<checkpoint root>/<run id>/`` (``untracked/`` without a run).

    The run id exists only on rank 0; ``ModelCheckpoint.setup`` broadcasts rank 0's dirpath
    to the other ranks, so every rank agrees on the folder.
    """

    def __init__(self, root: Path | None = None, **kwargs: Any) -> None:
        super().__init__(save_top_k=1, enable_version_counter=False, **kwargs)
        self.root = root

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tracker = find_tracker(trainer)
        if trainer.is_global_zero and self.dirpath is None:
            run = tracker.run_id if tracker is not None else "untracked"
            self.dirpath = str((self.root or checkpoint_root()) / run)
        super().setup(trainer, pl_module, stage)


class RunCheckpoint(_InRunFolder):
    """``best.ckpt`` in the run's checkpoint folder, by the model's monitor.

    Its class name is part of the state key Lightning files its state under in every checkpoint
    (best score, best path): a resumed run finds it only under the same name.
    """

    def __init__(self, model: LitModel, root: Path | None = None) -> None:
        monitor, mode = model.monitor
        super().__init__(root, monitor=monitor, mode=mode, filename="best")


class LastCheckpoint(_InRunFolder):
    """``last.ckpt`` in the run's checkpoint folder, after every epoch whatever the monitor did.

    It is what resuming reads, so it is written wherever Lightning saves (the end of each training
    epoch, or of each validation when it runs within epochs or every n epochs), not only when
    ``best.ckpt`` improved as ``save_last=True`` would. A fit that wrote no checkpoint at all (its
    validation never ran, ``fast_dev_run``) writes it once at the end, as ``save_last`` does.
    On a tracking server the logger uploads each one (:meth:`MLflowTracker.after_save_checkpoint`).
    Comes after :class:`RunCheckpoint` among the callbacks, so each last.ckpt holds that epoch's best.
    """

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root, monitor=None, filename=self.CHECKPOINT_NAME_LAST)
        self.wrote_this_fit = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.wrote_this_fit = False

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        self.wrote_this_fit = True  # any checkpoint of this fit, best.ckpt included

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.wrote_this_fit:
            return
        self.best_model_path = self.format_checkpoint_name({})
        trainer.save_checkpoint(self.best_model_path, self.save_weights_only)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)


def log_checkpoint_artifact(tracker: MLflowTracker, path: Path) -> None:
    """The run's ``checkpoints/<name>`` artifact. Into a local artifact store lit-nn copies it itself,
    atomically (:func:`~lit_nn.tracking.atomic.copy_atomically`): MLflow before 3.17 copies in place, and
    a full disk would leave half a best.ckpt among the run's artifacts. A tracking server gets MLflow's
    upload, which it stores whole or not at all."""
    folder = local_folder(tracker.experiment.get_run(tracker.run_id).info.artifact_uri)
    if folder is None:
        tracker.log_artifact(path, "checkpoints")
        return
    dest = folder / "checkpoints" / path.name
    try:
        copy_atomically(path, dest)
    except OSError as err:
        raise not_written(err, dest, path.stat().st_size, how_to_continue(tracker.run_id, path.parent)) from None


def local_folder(uri: str) -> Path | None:
    """The folder an artifact URI names on this machine (``file://`` or a bare path); None for a remote one."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(url2pathname(parts.path))
    return Path(uri) if len(parts.scheme) <= 1 else None  # "" or a Windows drive letter


class RunRecorder(L.Callback):
    """Writes what a run is made of and what it produced into its MLflow run (rank 0 only).

    At the start: the model's and data's tags, ``num_parameters`` and ``data_source`` (known
    only once the model and data are set up); at the start of each stage, the splits it reads as
    MLflow dataset inputs (:mod:`lit_nn.tracking.datasets`). After each validation: the model's text sample.
    After test: the confusion matrix. After fit: the best checkpoint (``log_checkpoint``).
    On an exception: the error, for the run's end status.
    """

    def __init__(self, log_checkpoint: bool = True) -> None:
        self.log_checkpoint = log_checkpoint
        self._recorded = False
        self._inputs_logged: set[str] = set()

    @rank_zero_only
    def _log_inputs(self, trainer: L.Trainer, *splits: str) -> None:
        """The splits a stage reads, as the run's dataset inputs (each once per run)."""
        from lit_nn.tracking.datasets import log_data_inputs

        tracker = find_tracker(trainer)
        wanted = tuple(split for split in splits if split not in self._inputs_logged)
        if tracker is None or not wanted:
            return
        self._inputs_logged.update(log_data_inputs(tracker.experiment, tracker.run_id, trainer.datamodule, wanted))

    @rank_zero_only
    def _record_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = find_tracker(trainer)
        if tracker is None or self._recorded or not isinstance(pl_module, LitModel):
            return
        self._recorded = True
        datamodule = trainer.datamodule
        ckpt = trainer.checkpoint_callback
        if trainer.state.fn == "fit" and isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath:
            last = Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
            tracker.set_tags({Tag.CHECKPOINT_DIR: ckpt.dirpath, Tag.LAST_CHECKPOINT: str(last)})
            rank_zero_info(f"checkpoints: {ckpt.dirpath} (last.ckpt each epoch, best.ckpt by {ckpt.monitor})")
        if tracker.resumed:  # the device too: a run may resume elsewhere (a GPU run on a CPU)
            tracker.set_tags({**process_tags(), **device_tags(trainer), Tag.RESUMED_AT: str(int(time.time() * 1000))})
            return
        tags = {**pl_module.run_tags(), **device_tags(trainer)}
        source = None
        if isinstance(datamodule, LitDataModule):
            source = datamodule.source
            tags.update({Tag.DATASET: datamodule.dataset_name, Tag.DATA_SOURCE: str(source)})
        tracker.log_hyperparams({Param.NUM_PARAMETERS: pl_module.num_parameters, Param.DATA_SOURCE: source})
        tracker.set_tags(tags)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_run(trainer, pl_module)
        self._log_inputs(trainer, "train", "val")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_run(trainer, pl_module)
        self._log_inputs(trainer, "test")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._record_run(trainer, pl_module)
            self._log_inputs(trainer, "val")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_inputs(trainer, "test")

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = find_tracker(trainer)
        if tracker is None or not isinstance(pl_module, LitModel) or pl_module.sample_text is None:
            return
        name = f"epoch_{pl_module.current_epoch:03d}"
        if trainer.state.fn != "fit":  # `lit-nn validate`
            name = "validate"
        elif not trainer.is_last_batch:  # validation inside an epoch (val_check_interval)
            name += f"_step_{pl_module.global_step:07d}"
        tracker.log_text(pl_module.sample_text, f"{Artifact.SAMPLES}/{name}.txt")

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = find_tracker(trainer)
        if tracker is None:
            return
        if isinstance(pl_module, LitModel):
            self._log_best(tracker, *pl_module.monitor)
        ckpt = trainer.checkpoint_callback
        if self.log_checkpoint and isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
            log_checkpoint_artifact(tracker, Path(ckpt.best_model_path))

    @staticmethod
    def _log_best(tracker: MLflowTracker, monitor: str, mode: str) -> None:
        """``best_<monitor>`` and ``best_epoch`` over the whole run, a resumed run's earlier epochs included."""
        history = tracker.experiment.get_metric_history(tracker.run_id, monitor)
        if not history:
            return
        pick = max if mode == "max" else min
        best = pick(history, key=lambda m: (m.value, -m.step) if mode == "max" else (m.value, m.step))
        tracker.log_metrics({Metric.best(monitor): best.value, Metric.BEST_EPOCH: best.step}, step=best.step)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = find_tracker(trainer)
        if tracker is None or not isinstance(pl_module, LitModel) or pl_module.confusion_matrix is None:
            return
        from lit_nn.tracking.figures import confusion_matrix_figure, plt

        datamodule = trainer.datamodule
        classes = datamodule.classes if isinstance(datamodule, LitDataModule) else None
        figure = confusion_matrix_figure(pl_module.confusion_matrix, classes)
        tracker.log_figure(figure, "confusion_matrix.png")
        plt.close(figure)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        tracker = find_tracker(trainer)
        if tracker is not None:
            tracker.failure = exception
