"""Callbacks that connect a fit to its MLflow run: tags, config, checkpoints, figures, failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lit_nn.tracking import MLflowTracker, checkpoint_root, git_commit, process_tags


def _tracker(trainer: L.Trainer) -> MLflowTracker | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLflowTracker)), None)


def run_tags(model: L.LightningModule, datamodule: L.LightningDataModule | None) -> dict[str, str]:
    """Tags the MLflow UI can group and filter by: model kind, optimizer, depth, data, commit."""
    hp = model.hparams
    tags = {"model": getattr(model, "kind", type(model).__name__.lower()), "git_commit": git_commit()}
    for key in ("optimizer", "depth", "activation", "cell", "hidden", "num_layers"):
        if key in hp:
            tags[key] = str(hp[key])
    if datamodule is not None:
        dm_hp = datamodule.hparams
        tags["dataset"] = str(dm_hp.get("dataset") or dm_hp.get("corpus") or type(datamodule).__name__)
    return tags


class RunCheckpoint(ModelCheckpoint):
    """Checkpoints in ``<checkpoint root>/<run id>/``: ``best.ckpt`` (by val metric) and ``last.ckpt``.

    The run id exists only on rank 0; ``ModelCheckpoint.setup`` broadcasts rank 0's dirpath
    to the other ranks, so every rank agrees on the folder.
    """

    def __init__(self, monitor: str = "val_acc", mode: str = "max", root: Path | None = None) -> None:
        super().__init__(monitor=monitor, mode=mode, filename="best", save_last=True, save_top_k=1,
                         enable_version_counter=False)
        self.root = root

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tracker = _tracker(trainer)
        if trainer.is_global_zero and self.dirpath is None:
            run = tracker.run_id if tracker is not None else "untracked"
            self.dirpath = str((self.root or checkpoint_root()) / run)
        super().setup(trainer, pl_module, stage)


class RunRecorder(L.Callback):
    """Writes what a run is made of into its MLflow run (rank 0 only).

    On fit start: the flattened config as params, the resolved config YAML as an artifact,
    and the tags. After test: the confusion matrix figure. After fit: the best checkpoint
    as an artifact (``log_checkpoint``). On an exception: the reason, for the final status.
    """

    def __init__(self, params: dict[str, Any], config_yaml: str, log_checkpoint: bool = True,
                 resumed: bool = False) -> None:
        self.params, self.config_yaml, self.log_checkpoint = params, config_yaml, log_checkpoint
        self.resumed = resumed  # a resumed run has its params already (MLflow params are write-once)
        self._logged_config = False

    @rank_zero_only
    def _record_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = _tracker(trainer)
        if tracker is None or self._logged_config:
            return
        self._logged_config = True
        datamodule = trainer.datamodule
        source = getattr(datamodule, "source", None)
        ckpt = trainer.checkpoint_callback
        if trainer.state.fn == "fit" and isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath:
            last = Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
            tracker.set_tags({"checkpoint_dir": ckpt.dirpath, "last_checkpoint": str(last)})
            rank_zero_info(f"checkpoints: {ckpt.dirpath} (last.ckpt each epoch, best.ckpt by {ckpt.monitor})")
        if self.resumed:
            tracker.set_tags({**process_tags(), "resumed_at": str(int(time.time() * 1000))})
            return
        tracker.log_hyperparams({**self.params, "num_parameters": getattr(pl_module, "num_parameters", None),
                                 "data_source": source})
        tracker.set_tags({**run_tags(pl_module, datamodule), "data_source": source})
        tracker.log_text(self.config_yaml, "config.yaml")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_run(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_run(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._record_run(trainer, pl_module)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = _tracker(trainer)
        ckpt = trainer.checkpoint_callback
        if tracker is None or not isinstance(ckpt, ModelCheckpoint):
            return
        if self.log_checkpoint and ckpt.best_model_path:
            tracker.log_artifact(ckpt.best_model_path, "checkpoints")

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = _tracker(trainer)
        confusion = getattr(pl_module, "confusion_matrix", None)
        if tracker is None or confusion is None:
            return
        from lit_nn.figures import confusion_matrix_figure, plt

        classes = getattr(getattr(trainer.datamodule, "spec", None), "classes", None)
        figure = confusion_matrix_figure(confusion, classes)
        tracker.log_figure(figure, "confusion_matrix.png")
        plt.close(figure)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        tracker = _tracker(trainer)
        if tracker is not None:
            tracker.failure = exception


def describe_finish(trainer: L.Trainer) -> None:
    """Print the closing lines of a run: test accuracy, run id, where to look."""
    tracker = _tracker(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)}
    shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in ("test_acc", "test_loss", "val_acc", "val_loss", "val_bpc")
                      if k in metrics)
    if shown:
        rank_zero_info(f"result: {shown}")
    if tracker is not None and tracker.run_id:
        rank_zero_info(f"mlflow: run {tracker.run_id} in experiment '{tracker._experiment_name}' "
                       f"({tracker._tracking_uri}); open it with `make ui` → http://127.0.0.1:5000")
