"""The Lightning logger of every lit-nn fit: Lightning's ``MLFlowLogger`` with lit-nn's conventions."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, NamedTuple

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from lit_nn.tracking.faults import describe_fault
from lit_nn.tracking.lifecycle import RunStatus, end_run, failure_reason
from lit_nn.tracking.outage import no_retries, server_down_reason, unanswered
from lit_nn.tracking.store import artifact_location, resolve_tracking_uri, standard_tags


class RunTarget(NamedTuple):
    """Where a tracker records: the experiment, the tracking URI, and the run to resume (or None)."""

    experiment_name: str
    tracking_uri: str
    run_id: str | None


class MLflowTracker(MLFlowLogger):
    """``MLFlowLogger`` that logs by epoch and ends its run through :func:`end_run`.

    * Metrics use the epoch as MLflow step, so every chart's x axis is the epoch.
    * The experiment is created with the local artifact location (``ensure_experiment``).
    * The end status distinguishes FINISHED, FAILED and KILLED (Ctrl-C), with the reason:
      Lightning itself reports every interruption as "failed", without one.
    * A fit that failed because the tracking server stopped answering records its end with one
      try, not a second retry window (:mod:`lit_nn.tracking.outage`).
    """

    def __init__(
        self,
        experiment_name: str = "lit-nn",
        run_name: str | None = None,
        run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        uri = tracking_uri or resolve_tracking_uri()
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            run_id=run_id,
            tags={**standard_tags(), **(tags or {})},
            tracking_uri=uri,
            artifact_location=artifact_location(experiment_name, uri),
            log_model=False,  # lit-nn logs the best checkpoint itself, once, at the end
        )
        # lit-nn's own copy of what it was given: MLFlowLogger keeps these in private attributes
        self.target = RunTarget(experiment_name, uri, run_id)
        self.resumed = run_id is not None  # a resumed run has its params (MLflow params are write-once)
        self.failure: BaseException | None = None  # set by the RunRecorder callback's on_exception
        self.run_started = False  # set on rank 0 once `experiment` has found or created the run
        self._ended: RunStatus | None = None

    @property
    def experiment_name(self) -> str:
        return self.target.experiment_name

    @property
    def tracking_uri(self) -> str:
        return self.target.tracking_uri

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """MLFlowLogger's client; the first access finds (a resumed run) or creates the run."""
        client = super().experiment
        self.run_started = True
        return client

    @property
    def started_run_id(self) -> str | None:
        """The run's id once the run exists; unlike ``run_id``, never creates it (no request to the store)."""
        return self.run_id if self.run_started else self.target.run_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning calls this after fit and after test, with "success" or "failed"."""
        if not self.run_started:
            return
        if status == "failed":
            error = self.failure or RuntimeError("Lightning reported the run as failed")
            end, reason = RunStatus.of(error), failure_reason(error, self.tracking_uri)
        else:
            end, reason = RunStatus.FINISHED, ""
        if end is RunStatus.FINISHED and self._ended not in (None, RunStatus.FINISHED):
            return  # a failure already recorded stands
        why = unanswered(self.failure, self.tracking_uri) if status == "failed" else None
        if why is None and status == "failed":
            try:
                end_run(self.experiment, self.run_id, end, reason)
            except Exception as err:
                if describe_fault(err, self.tracking_uri) is None:
                    raise
                return  # the store itself failed: the command's sentence says so, and that the run stays RUNNING
        elif why is None:
            end_run(self.experiment, self.run_id, end, reason)
        else:
            # the server did not answer for the whole retry window: one try to record the end, not
            # a second wait; still down, the run stays RUNNING until `lit-nn runs --cleanup` marks it
            reason = server_down_reason(self.tracking_uri, why)
            with no_retries(), suppress(Exception):  # MLflow's errors for a server that is down vary
                end_run(self.experiment, self.run_id, end, reason)
        self._ended = end

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Lightning calls this on rank 0 after every checkpoint a ``ModelCheckpoint`` writes.

        On a tracking server the run, not this disk, holds what resuming needs: each ``last.ckpt``
        (:class:`~lit_nn.tracking.callbacks.LastCheckpoint`) is uploaded to the run, so a crash
        loses at most one epoch and ``--resume RUN_ID`` works from any machine.
        """
        super().after_save_checkpoint(checkpoint_callback)
        last = ModelCheckpoint.CHECKPOINT_NAME_LAST
        if checkpoint_callback.filename != last or not checkpoint_callback.dirpath:
            return
        path = Path(checkpoint_callback.dirpath) / f"{last}{checkpoint_callback.FILE_EXTENSION}"
        if self.tracking_uri.startswith(("http://", "https://")) and self.run_id and path.is_file():
            self.log_artifact(path, "checkpoints")

    @rank_zero_only
    def log_text(self, text: str, artifact_file: str) -> None:
        self.experiment.log_text(self.run_id, text, artifact_file)

    @rank_zero_only
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.experiment.log_artifact(self.run_id, str(path), artifact_path)

    @rank_zero_only
    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.experiment.log_figure(self.run_id, figure, artifact_file)

    @rank_zero_only
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.experiment.set_tag(self.run_id, key, str(value))
