"""Where runs go and how they are recorded in MLflow.

The default store is ``sqlite:///mlruns/mlflow.db`` (MLflow >= 3.13 refuses a plain
``./mlruns`` file store) with artifacts and checkpoints in ``mlruns/`` beside it;
``MLFLOW_TRACKING_URI`` points lit-nn at another store or a tracking server instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from lit_nn.errors import UserError

DEFAULT_STORE = Path("mlruns")
SQLITE_PREFIX = "sqlite:///"


def resolve_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite file in ``./mlruns`` (absolute)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return SQLITE_PREFIX + str((DEFAULT_STORE / "mlflow.db").resolve())


def local_store_dir(uri: str | None = None) -> Path | None:
    """The folder holding a SQLite store (artifacts and checkpoints go beside it), else None."""
    uri = uri or resolve_tracking_uri()
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri[len(SQLITE_PREFIX) :].split("?", 1)[0]).parent


def prepare_store(uri: str | None = None) -> str:
    """Create the local store folder (failing clearly if it cannot be written); return the URI."""
    uri = uri or resolve_tracking_uri()
    store = local_store_dir(uri)
    if store is not None:
        try:
            store.mkdir(parents=True, exist_ok=True)
            probe = store / ".write-test"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise UserError(
                f"cannot write the MLflow store in {store} ({err.strerror}); "
                "make it writable or set MLFLOW_TRACKING_URI to another store"
            ) from None
    return uri


def artifact_location(experiment: str, uri: str | None = None) -> str | None:
    """Artifacts of a local store live in ``<store>/artifacts/<experiment>``; servers choose their own."""
    store = local_store_dir(uri)
    return (store / "artifacts" / experiment).resolve().as_uri() if store is not None else None


def checkpoint_root(uri: str | None = None) -> Path:
    """Checkpoints go beside a local store (``mlruns/checkpoints``), else ``./checkpoints``."""
    store = local_store_dir(uri)
    return (store / "checkpoints") if store is not None else Path("checkpoints").resolve()


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Get or create an experiment by name (with the local artifact location); return its id."""
    from mlflow.tracking import MlflowClient

    uri = prepare_store(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(name, uri))
    except Exception:  # noqa: BLE001 - another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@cache
def git_commit() -> str:
    """The commit of the lit-nn source tree, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def process_tags() -> dict[str, str]:
    """Who is writing the run: lets ``lit-nn runs --cleanup`` tell a dead RUNNING run from a live one."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


class MLflowTracker(MLFlowLogger):
    """Lightning's MLFlowLogger with lit-nn's conventions.

    * Metrics use the epoch as MLflow step, so every chart's x axis is the epoch.
    * The experiment is created with the local artifact location (``ensure_experiment``).
    * The final status distinguishes FINISHED, FAILED (reason in the ``failure_reason`` tag)
      and KILLED (Ctrl-C): Lightning itself reports every interruption as "failed".
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
            tags={**process_tags(), **(tags or {})},
            tracking_uri=uri,
            artifact_location=artifact_location(experiment_name, uri),
            log_model=False,  # lit-nn logs the best checkpoint itself, once, at the end
        )
        self.failure: BaseException | None = None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if not self._initialized:
            return
        if status == "failed" and self.failure is not None:
            # empty for Ctrl-C: a sweep worker fills in why it stopped the point
            self.experiment.set_tag(self.run_id, "failure_reason", str(self.failure)[:5000])
            if isinstance(self.failure, KeyboardInterrupt):
                status = "KILLED"
        super().finalize(status)

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
