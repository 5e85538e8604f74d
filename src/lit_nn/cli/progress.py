"""The progress bar of every lit-nn command: Lightning's Rich bar, fed a few times a second.

Lightning's ``RichProgressBar`` updates its task, recomputes the shown metrics and soft-
refreshes the display after *every* batch. A small model on a CPU runs hundreds of batches a
second, so that bookkeeping alone cost 10-50 % of an MLP epoch (``make bench``). This bar
passes a batch on to Lightning only when ``1 / refresh_rate`` seconds have gone by since the
last update, or when it is the last batch of the loop, so what the learner sees is the same
and the count at the end of every epoch is exact.

``leave=False``: with ``leave=True`` Lightning stops and restarts the bar at every epoch
start, joining its refresh thread, which sleeps in ``1 / refresh_rate`` steps (up to 0.2 s per
epoch at 5 refreshes a second).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """``RichProgressBar`` that forwards at most ``refresh_rate`` batch updates per second."""

    def __init__(self, refresh_rate: int = 5, leave: bool = False, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave, **kwargs)
        self._interval = 1.0 / max(refresh_rate, 1)
        self._last_update = 0.0

    def _due(self, batch_idx: int, total: int | float) -> bool:
        """True for the last batch of a loop and whenever the update interval has passed."""
        now = time.monotonic()
        if batch_idx + 1 >= total or now - self._last_update >= self._interval:
            self._last_update = now
            return True
        return False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
