"""Where runs go and how they are recorded in MLflow.

The default store is ``sqlite:///mlruns/mlflow.db`` (MLflow >= 3.13 refuses a plain
``./mlruns`` file store) with artifacts and checkpoints in ``mlruns/`` beside it;
``MLFLOW_TRACKING_URI`` points lit-nn at another store or a tracking server instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag

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


def tracking_client(uri: str | None = None) -> Any:
    """The one way lit-nn talks to the tracking store: an ``MlflowClient`` on ``uri`` (default:
    :func:`resolve_tracking_uri`), after making sure a local store can be written."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(prepare_store(uri))


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Get or create an experiment by name (with the local artifact location); return its id."""
    uri = prepare_store(uri)
    client = tracking_client(uri)
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
    return {Tag.HOST: socket.gethostname(), Tag.PID: str(os.getpid())}


def standard_tags() -> dict[str, str]:
    """The tags every lit-nn run starts with: the writing process and the source commit."""
    return {**process_tags(), Tag.GIT_COMMIT: git_commit()}
