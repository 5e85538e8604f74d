"""Faults of the tracking store, each as one sentence: which store, what went wrong, what to do.

Every command reaches the store through MLflow, and a store that fails under it surfaces as a
traceback of SQLAlchemy, sqlite3, psycopg, requests or MLflow errors, whichever layer noticed
first. :func:`store_fault` is the one place that recognizes them (walking the chain of causes) and
words them; the command line (:mod:`lit_nn.cli.main`) and a fit (:mod:`lit_nn.cli.train`) print
its sentence instead of the traceback. What it does not recognize stays a traceback: an error
lit-nn cannot explain is a bug to report, not something to paper over.

Checks that can be made before anything is recorded (an unknown scheme, a store folder that cannot
be written, a file that is not a database, someone else's database, a server that does not answer
or refuses the credentials) are made up front by :func:`lit_nn.tracking.store.prepare_store`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lit_nn.core.errors import UserError
from lit_nn.tracking.outage import server_down

SQLITE_BUSY_S = 20  # MLflow's own `PRAGMA busy_timeout = 20000` on every SQLite session


class StoreFault(UserError):
    """The tracking store failed under a command. Exit status 1, not a user's mistake's 2: the same
    command works once the store does."""

    exit_code = 1


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = error
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def shown_uri(uri: str) -> str:
    """The store's URI as it may be printed: a database URL without its password."""
    if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        from sqlalchemy.engine import make_url

        try:
            return make_url(uri).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: hide everything before the host
            scheme, rest = uri.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


# (text in the error, what went wrong, what to do) for SQLite; {store} is the database file
_SQLITE = (
    ("attempt to write a readonly database", "the MLflow store {store} is read-only (the database file itself)",
     "make the file writable, or set MLFLOW_TRACKING_URI to another store"),
    ("database is locked", f"the MLflow store {{store}} stayed locked by another process for {SQLITE_BUSY_S} s",
     "let that process finish (or stop it), then run the command again"),
    ("database or disk is full", "the disk holding the MLflow store {store} is full",
     "free space there, then run the command again"),
    ("disk I/O error", "the MLflow store {store} could not be read or written (disk I/O error)",
     "check the disk it is on"),
    ("unable to open database file", "the MLflow store {store} cannot be opened",
     "check that its folder exists and can be read and written"),
    ("file is not a database", "the MLflow store {store} is damaged (not a database)",
     "move it away (a new store is made in its place) or set MLFLOW_TRACKING_URI to another store"),
    ("database disk image is malformed", "the MLflow store {store} is damaged (malformed)",
     "move it away (a new store is made in its place) or set MLFLOW_TRACKING_URI to another store"),
)
# the same for PostgreSQL (psycopg's messages); {store} is the URL without its password
_POSTGRES = (
    ("Connection refused", "the MLflow store at {store} is not reachable (connection refused)",
     "start the database, or point MLFLOW_TRACKING_URI at a running one"),
    ("password authentication failed", "the MLflow store at {store} refused the user and password in "
     "MLFLOW_TRACKING_URI", "correct them"),
    ("no password supplied", "the MLflow store at {store} needs a password", "add it to MLFLOW_TRACKING_URI"),
    ("does not exist", "the MLflow store at {store} has no such database or role",
     "create it, or correct MLFLOW_TRACKING_URI"),
    ("timeout expired", "the MLflow store at {store} did not answer (timeout)",
     "check that the database is running and reachable"),
    ("could not translate host name", "the MLflow store at {store} names an unknown host",
     "correct MLFLOW_TRACKING_URI"),
    ("No space left on device", "the disk of the database at {store} is full", "free space on it"),
)


def describe_fault(error: BaseException, uri: str) -> str | None:
    """What went wrong with the store at ``uri`` and what to do, in one sentence; None when
    ``error`` is not a store fault lit-nn recognizes."""
    texts = [str(e) for e in _chain(error)]
    store = uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else shown_uri(uri)
    table = _SQLITE if uri.startswith("sqlite") else _POSTGRES if uri.startswith("postgresql") else ()
    for needle, what, todo in table:
        if any(needle in text for text in texts):
            return f"{what.format(store=store)}; {todo}"
    if uri.startswith(("http://", "https://")):
        for text in texts:
            if "failed with error code 404" in text or "Expecting value" in text:
                return (f"{uri} answers, but not as an MLflow tracking server (its API is missing); point "
                        "MLFLOW_TRACKING_URI at the server's address")
    return None


def store_fault(error: BaseException, uri: str, run_id: str | None = None,
                last_checkpoint: Path | None = None) -> UserError | None:
    """The one sentence for a command that ``error`` ended because the store at ``uri`` failed
    (None for any other error). A tracking server that stopped answering is
    :func:`lit_nn.tracking.outage.server_down`'s sentence (with how to resume a fit)."""
    down = server_down(error, uri, run_id, last_checkpoint)
    if down is not None:
        return down
    sentence = describe_fault(error, uri)
    if sentence is None:
        return None
    if run_id is not None and last_checkpoint is not None and last_checkpoint.is_file():
        sentence += f"; then `lit-nn fit --resume {run_id}` continues the run from {last_checkpoint}"
    return StoreFault(sentence)
