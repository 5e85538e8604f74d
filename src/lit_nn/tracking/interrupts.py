"""SIGTERM inside a Trainer stage: Lightning's handling, completed for lit-nn's runs.

While a stage runs, Lightning's own SIGTERM handler records the signal and its loops raise
``SIGTERMException`` at the next batch boundary; the run then ends KILLED with the reason
"terminated by SIGTERM" (:func:`lit_nn.tracking.lifecycle.failure_reason`), and the last
completed epoch's ``last.ckpt`` is the one to resume from. Two gaps are closed here: a signal
that arrives after the loops' last check (during the last validation or test batch, or
``on_train_end``) would let the stage finish as if nothing happened; and the user learns in one
line how to continue the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from lit_nn.core.signals import SIGTERM_REASON, Terminated, is_sigterm, sigterm_received
from lit_nn.tracking.callbacks import find_tracker
from lit_nn.tracking.lifecycle import watch_run
from lit_nn.tracking.store import checkpoint_root


class StopOnSigterm(L.Callback):
    """Ends a stage that received SIGTERM as KILLED even when Lightning's loops had no check left,
    and says how to resume; also keeps the run in view of :func:`~lit_nn.tracking.lifecycle.end_runs_on_interrupt`."""

    @rank_zero_only
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tracker = find_tracker(trainer)
        if tracker is not None:  # the run exists by now (Lightning creates it before the setup hooks)
            watch_run(tracker.experiment, tracker.run_id)

    @staticmethod
    def _stop_if_terminated(trainer: L.Trainer) -> None:
        if sigterm_received() or trainer.received_sigterm:
            raise Terminated

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_terminated(trainer)  # before the model is exported and logged

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop_if_terminated(trainer)  # after Lightning's handler is gone, before the run ends FINISHED

    @rank_zero_only
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not is_sigterm(exception):
            return
        tracker = find_tracker(trainer)
        run_id = tracker.started_run_id if tracker is not None else None
        if run_id is None:
            print(SIGTERM_REASON, file=sys.stderr, flush=True)
            return
        ckpt = trainer.checkpoint_callback
        how = ""
        if isinstance(ckpt, ModelCheckpoint):  # a fit's (or its final test's): say how to resume it
            folder = Path(ckpt.dirpath) if ckpt.dirpath else checkpoint_root() / run_id  # set up, or not yet
            last = folder / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
            how = (f"; {trainer.current_epoch} epoch(s) complete: the same command with --resume {run_id} "
                   f"continues it from {last}" if last.is_file()
                   else "; no epoch was complete, so there is nothing to resume: run the command again")
        print(f"{SIGTERM_REASON}: run {run_id} ends KILLED{how}", file=sys.stderr, flush=True)
