"""``--system_metrics true``: MLflow's system metrics (CPU, memory, disk, network; GPU with the
``gpu`` extra, nvidia-ml-py) in the fit's run, the first thing to look at when a run is slow.

MLflow samples them in a thread of its own every 10 s (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``
changes it) as ``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``,
``system/gpu_0_utilization_percentage``... with step = the sample's number. MLflow's own switch,
``mlflow.enable_system_metrics_logging()``, works for runs ``mlflow.start_run`` opens; a lit-nn run
is opened by Lightning's logger, so :class:`SystemMetrics` starts MLflow's monitor on it directly.
It also records one last sample when the fit ends, so that even a run shorter than one interval
has its figures. Rank 0 only (one process per machine under DDP on one node).

Its cost: one sample and its write to a SQLite store take ~18 ms of CPU (~40 ms wall) every 10 s,
under 0.2 % of one core (measured on the 2-core development machine).
"""

from __future__ import annotations

from typing import Any

import lightning as L

from lit_nn.core.errors import UserError


def check_system_metrics_available() -> None:
    """MLflow's system metrics need psutil (a lit-nn dependency; a UserError if it is missing)."""
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        raise UserError("--system_metrics true needs the 'psutil' package: pip install psutil")


class SystemMetrics(L.Callback):
    """Runs MLflow's ``SystemMetricsMonitor`` on the fit's run from fit start to fit end."""

    def __init__(self) -> None:
        check_system_metrics_available()
        self.monitor: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lit_nn.tracking.callbacks import find_tracker

        tracker = find_tracker(trainer)
        if not trainer.is_global_zero or tracker is None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # resume_logging: a resumed run's samples continue after its earlier ones
        self.monitor = SystemMetricsMonitor(tracker.run_id, resume_logging=tracker.resumed,
                                            tracking_uri=tracker.tracking_uri)
        self.monitor.start()

    def _finish(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        monitor.finish()
        monitor.collect_metrics()  # the last sample, with whatever the thread collected since it published
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._finish()
