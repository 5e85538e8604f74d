"""One lab = one MLflow run in the ``lab`` experiment, never left RUNNING.

Labs are small scripts, not Lightning fits, so they talk to MLflow through the tracking
client directly: :func:`lab_run` opens a run named after the lab (lit-nn's one run
lifecycle, :func:`lit_nn.tracking.lifecycle.tracked_run`), the lab logs its params, metrics,
figures and text summary through :class:`LabRun`, and the run ends FINISHED, FAILED or
KILLED (Ctrl-C), with the reason, however the lab ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import matplotlib.pyplot as plt
import torch

from lit_nn.core.names import Tag
from lit_nn.tracking.lifecycle import tracked_run
from lit_nn.tracking.outputs import check_run_outputs
from lit_nn.tracking.store import ensure_experiment, prepare_store, tracking_client

EXPERIMENT = "lab"
MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


class LabRun:
    """Logging handle of an open lab run (a thin layer over ``MlflowClient``)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are strings in MLflow; None becomes 'none' so every option is visible."""
        from mlflow.entities import Param

        items = [Param(k, "none" if v is None else str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log several metrics at one step (one request per 1000 values, not one per value)."""
        self.log_history({k: [(step, v)] for k, v in metrics.items()})

    def log_history(self, series: Mapping[str, list[tuple[int, float]]]) -> None:
        """Log whole metric curves ``{key: [(step, value), ...]}`` in a few batched requests."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(s)) for k, points in series.items() for s, v in points]
        for start in range(0, len(items), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + MAX_BATCH])

    def log_figure(self, figure: plt.Figure, artifact_file: str) -> None:
        """Store a matplotlib figure as a PNG artifact, then close it (labs make many)."""
        try:
            self.client.log_figure(self.run_id, figure, artifact_file)
        finally:
            plt.close(figure)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Run torch and NumPy's BLAS on at most ``threads`` threads, restoring the settings after.

    Lab tensors are tiny: a second thread cannot speed them up, but on a busy machine the
    threads' synchronization makes every small op wait (a 10x slowdown measured on 2 shared cores).
    """
    try:
        from threadpoolctl import threadpool_limits  # NumPy's OpenBLAS; installed with scikit-learn
    except ImportError:  # pragma: no cover - optional, only a speed-up
        blas = nullcontext()
    else:
        blas = threadpool_limits(limits=threads, user_api="blas")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with blas:
            yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def lab_run(lab: str, params: Mapping[str, Any] | None = None, threads: int = 1) -> Iterator[LabRun]:
    """Open an MLflow run named ``lab`` in experiment ``lab``; close it with the right status.

    Validate user input *before* entering, so a typo does not leave a FAILED run behind.
    Inside, torch and BLAS use ``threads`` threads (see :func:`limited_threads`).
    """
    uri = prepare_store()
    client = tracking_client(uri)
    check_run_outputs(client, EXPERIMENT)  # its figures and summary: before the run, and before the lab's work
    experiment_id = ensure_experiment(EXPERIMENT, uri)
    with tracked_run(client, experiment_id, lab, {Tag.LAB: lab}) as run:
        record = LabRun(client, run.run_id)
        record.log_params(params or {})
        with limited_threads(threads):
            yield record
