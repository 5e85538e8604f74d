"""Where runs go and how they are recorded in MLflow.

The default store is ``sqlite:///mlruns/mlflow.db`` (MLflow >= 3.13 refuses a plain
``./mlruns`` file store) with artifacts and checkpoints in ``mlruns/`` beside it;
``MLFLOW_TRACKING_URI`` points lit-nn at another store or a tracking server instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.core.writable import check_writable
from lit_nn.tracking.faults import shown_uri

DEFAULT_STORE = Path("mlruns")
SQLITE_PREFIX = "sqlite:///"


# the stores lit-nn can record into (a database through SQLAlchemy, or a tracking server);
# MLflow >= 3.13 refuses the plain file store (./mlruns)
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
SERVER_CHECK_TIMEOUT_S = 5.0
SQLITE_MAGIC = b"SQLite format 3\x00"
MODEL_TRAINING = "custom_model_development"  # the UI's experiment type for model training (not GenAI)


def resolve_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite file in ``./mlruns`` (absolute).

    ``postgresql://`` means psycopg 3 (``postgresql+psycopg://``), the driver of lit-nn's
    ``postgres`` extra; SQLAlchemy alone would look for psycopg2.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return SQLITE_PREFIX + str((DEFAULT_STORE / "mlflow.db").resolve())
    if uri.startswith("postgresql://"):
        return "postgresql+psycopg://" + uri[len("postgresql://"):]
    return uri


def check_uri(uri: str) -> None:
    """Refuse a tracking URI lit-nn cannot use, in one sentence, before anything is recorded."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    base = scheme.split("+", 1)[0]
    if base not in DATABASE_SCHEMES + SERVER_SCHEMES:
        valid = ", ".join(f"{s}://" for s in DATABASE_SCHEMES + SERVER_SCHEMES)
        raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(uri)!r} has an unknown scheme {scheme or '(none)'!r}; "
                        f"valid: {valid} (unset it for the local store mlruns/)")
    if base == "postgresql":
        driver = scheme.split("+", 1)[1] if "+" in scheme else "psycopg"
        if importlib.util.find_spec(driver) is None:
            raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(uri)!r} needs the PostgreSQL driver {driver}, which is not "
                            "installed; install it with: pip install 'lit-nn[postgres]'")
    if base == "postgresql":
        check_database(uri)
    if base in SERVER_SCHEMES:
        from lit_nn.tracking.outage import configure_retries

        configure_retries(uri)  # how long every request waits for the server if it stops answering
        check_server(uri)


@cache
def check_database(uri: str) -> None:
    """One connection to a PostgreSQL store (at most 5 s) before MLflow's own: MLflow retries a
    refused connection for about 100 s, printing every attempt, before it gives up."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from lit_nn.tracking.faults import describe_fault, shown_uri

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 5}, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as err:
        first = str(getattr(err, "orig", err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(describe_fault(err, uri) or f"cannot connect to the MLflow store at {shown_uri(uri)} "
                        f"({first}); check MLFLOW_TRACKING_URI") from None
    finally:
        engine.dispose()


@cache
def check_server(uri: str) -> None:
    """One short request to the tracking server's health page, so that an unreachable server
    fails in seconds instead of after MLflow's minutes of retries."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_CHECK_TIMEOUT_S):
            pass
    except urllib.error.HTTPError as err:
        if err.code >= 500:
            raise UserError(f"the MLflow tracking server at {uri} is not reachable (HTTP {err.code}); start it, or "
                            "point MLFLOW_TRACKING_URI at a running server (unset it for the local store mlruns/)") from None
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"the MLflow tracking server at {uri} is not reachable ({getattr(err, 'reason', err)}); "
                        "start it, or point MLFLOW_TRACKING_URI at a running server (unset it for the local store "
                        "mlruns/)") from None
    check_credentials(uri)


def check_credentials(uri: str) -> None:
    """One authenticated request, with the credentials MLflow will use (MLFLOW_TRACKING_USERNAME /
    PASSWORD or TOKEN): a server with authentication that refuses them is one sentence, not a
    traceback in the middle of a run."""
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    elif token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_CHECK_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        if err.code == 401:
            who = f"user {user!r}" if user else "no credentials (MLFLOW_TRACKING_USERNAME is not set)"
            raise UserError(f"the MLflow tracking server at {uri} refused {who}: set MLFLOW_TRACKING_USERNAME and "
                            "MLFLOW_TRACKING_PASSWORD to an account on it") from None
        if err.code == 403:
            raise UserError(f"the MLflow tracking server at {uri} does not let user {user!r} read experiments; "
                            "ask its admin for access") from None
        if err.code == 404:
            raise UserError(f"{uri} answers, but not as an MLflow tracking server (no MLflow API there); point "
                            "MLFLOW_TRACKING_URI at the server's address") from None
    except (urllib.error.URLError, OSError):
        pass  # it answered /health a moment ago: MLflow reports what comes next


def local_store_dir(uri: str | None = None) -> Path | None:
    """The folder holding a SQLite store (artifacts and checkpoints go beside it), else None."""
    uri = uri or resolve_tracking_uri()
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri[len(SQLITE_PREFIX) :].split("?", 1)[0]).parent


def prepare_store(uri: str | None = None) -> str:
    """Check the store before anything is recorded in it: a usable URI, a reachable server, a
    local folder that can be written and a database file that is one; return the URI."""
    uri = uri or resolve_tracking_uri()
    check_uri(uri)
    store = local_store_dir(uri)
    if store is not None:
        check_writable(store, "the MLflow store in", "make it writable or set MLFLOW_TRACKING_URI to another store",
                       create=True)
        db = Path(uri[len(SQLITE_PREFIX):].split("?", 1)[0])
        if db.is_file() and db.stat().st_size and db.read_bytes()[:16] != SQLITE_MAGIC:
            raise UserError(f"{db} is not an SQLite database, so it cannot be the MLflow store; move it away "
                            "or set MLFLOW_TRACKING_URI to another store")
        check_not_foreign(db)
        open_local_store(uri, db)
    return uri


MLFLOW_TABLES = ("alembic_version", "experiments", "runs")  # what every MLflow SQLite store has


def check_not_foreign(db: Path) -> None:
    """Refuse an SQLite file that holds tables but not MLflow's: opening it as a store would add
    MLflow's tables to someone else's database. It is read without being changed (read-only)."""
    import sqlite3

    if not db.is_file() or not db.stat().st_size:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=20)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        return  # locked or damaged: the store's own errors (lit_nn.tracking.faults) say what is wrong
    if tables and not set(MLFLOW_TABLES) <= tables:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise UserError(f"{db} is another application's SQLite database (tables {shown}), not an MLflow store; "
                        "lit-nn leaves it unchanged: set MLFLOW_TRACKING_URI to a store of its own "
                        "(unset it for mlruns/)")


_OPENED: set[str] = set()  # SQLite stores this process has opened under the lock (MLflow caches the store)


def open_local_store(uri: str, db: Path) -> None:
    """Open a local SQLite store for the first time in this process while holding an exclusive
    lock on ``<db>.lock`` beside it.

    Opening creates or migrates MLflow's tables, and MLflow does that without any lock of its own:
    two processes starting on a new store at once fail with "table _alembic_tmp_tags already
    exists". Under the lock the first one migrates and the others find the tables made. MLflow
    keeps the store object per URI for the life of the process, so later clients on ``uri`` reuse
    it: this runs once per process per URI.
    """
    if uri in _OPENED:
        return
    import fcntl

    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if MLflow raises
        _new_client(uri)  # builds MLflow's store for the URI: creates or upgrades the tables
    _OPENED.add(uri)


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
    return _new_client(prepare_store(uri))


def _new_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Get or create an experiment by name (with the local artifact location, typed as model
    training for the MLflow UI); return its id."""
    if not name.strip():
        raise UserError(f"the experiment name must not be empty, got {name!r}; e.g. --experiment mnist")
    uri = prepare_store(uri)
    client = tracking_client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        if Tag.EXPERIMENT_KIND not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, Tag.EXPERIMENT_KIND, MODEL_TRAINING)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(name, uri),
                                        tags={Tag.EXPERIMENT_KIND: MODEL_TRAINING})
    except Exception:  # noqa: BLE001 - another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _git(*args: str) -> str | None:
    """``git ARGS`` in the lit-nn source tree; None outside a checkout or without git."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@cache
def git_commit() -> str:
    """The commit of the lit-nn source tree, or 'unknown' outside a git checkout."""
    return _git("rev-parse", "HEAD") or "unknown"


@cache
def git_dirty() -> str:
    """'true' when the source tree has uncommitted changes (the commit alone does not say what ran)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def process_tags() -> dict[str, str]:
    """Who is writing the run: lets ``lit-nn runs --cleanup`` tell a dead RUNNING run from a live one."""
    return {Tag.HOST: socket.gethostname(), Tag.PID: str(os.getpid())}


def standard_tags() -> dict[str, str]:
    """The tags every lit-nn run starts with: the writing process and the source commit."""
    return {**process_tags(), Tag.GIT_COMMIT: git_commit(), Tag.GIT_DIRTY: git_dirty()}

