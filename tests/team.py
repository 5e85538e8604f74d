"""A real team server for tests: ``lit-nn server`` (PostgreSQL + ``mlflow server``) on loopback ports."""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import REPO, free_port


def _postgres_available() -> bool:
    from lit_nn.core.errors import UserError
    from lit_nn.tracking.server import postgres_bin

    try:
        postgres_bin("initdb")
        return True
    except UserError:
        return False


needs_postgres = pytest.mark.skipif(not _postgres_available(), reason="needs PostgreSQL's server binaries "
                                    "(apt-get install postgresql); CI installs them")


@contextmanager
def team_server(folder: Path, *args: str, env: dict | None = None, port: int | None = None,
                relocate: bool = True) -> Iterator[str]:
    """``lit-nn server`` until the block ends (then Ctrl-C, as a user would); yields its URL.

    ``port``: where the tracking server listens (default: a free one); the same folder and port
    again is the same server restarted, as a client holding its URL sees it. What it printed on
    starting is kept in :data:`PRINTED` (see :func:`tune_storage`). ``relocate``: as root, a new
    folder the postgres user cannot reach is first made a link to one it can (:func:`reachable_by_postgres`)."""
    port = port or free_port()
    if relocate:
        reachable_by_postgres(folder)
    proc = subprocess.Popen([sys.executable, "-m", "lit_nn", "server", "--folder", str(folder), "--port", str(port),
                             *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    lines, ready = [], False
    try:
        for line in proc.stdout:  # the server says when it is ready; no sleeping
            lines.append(line)
            if line.startswith("use it with:"):
                ready = True
                break
        assert ready and proc.poll() is None, "".join(lines)  # not ready: its stdout ended, exiting
        PRINTED[folder.resolve()] = list(lines)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:  # one that failed to start has said why: keep that, not a ProcessLookupError
            os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        lines.append(out)
    assert proc.returncode == 0, "".join(lines)[-3000:]
    assert "team server: stopping" in "".join(lines)


PRINTED: dict[Path, list[str]] = {}  # server folder -> the lines its latest start printed


def tune_storage(folder: Path) -> str:
    """The ``--tune.storage`` URL that the team server running in ``folder`` printed, as a user
    copies it (quoted for the shell: it holds ``&``)."""
    (line,) = [line for line in PRINTED[folder.resolve()] if line.startswith("tuned sweeps on it:")]
    words = shlex.split(line)
    return words[words.index("--tune.storage") + 1]


def postgres_reachable() -> Path:
    """A new empty folder that the postgres user reaches: in the system's temporary folder, 0711,
    removed when the tests end."""
    path = Path(tempfile.mkdtemp(prefix="lit-nn-team-"))
    path.chmod(0o711)
    atexit.register(shutil.rmtree, path, True)
    return path


def reachable_by_postgres(folder: Path) -> None:
    """As root lit-nn runs PostgreSQL as the postgres user, which cannot pass through pytest's
    temporary folders (/tmp/pytest-of-root is 0700, and every pytest session that starts on the
    machine makes it so again), and lit-nn opens no folder unasked; so there a new server folder
    becomes a link to one that user reaches (:func:`postgres_reachable`), as a user gives --folder
    such a folder. Paths handed to PostgreSQL's own commands must then be resolved."""
    from lit_nn.tracking.server import blocking_folders

    if os.geteuid() != 0 or folder.exists() or folder.is_symlink() or not blocking_folders(folder.resolve()):
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(postgres_reachable(), target_is_directory=True)


def postgres_running(pgdata: Path) -> bool:
    """``pg_ctl status``: 0 while the cluster's server runs, 3 when it is stopped."""
    from lit_nn.tracking.server import as_db_owner, postgres_bin

    status = subprocess.run(as_db_owner([postgres_bin("pg_ctl"), "status", "-D", str(pgdata.resolve())]),
                            capture_output=True)
    assert status.returncode in (0, 3), status
    return status.returncode == 0


TINY = ["--model", "lit_nn.models.MLP", "--model.init_args.hidden", "16", "--data", "lit_nn.data.ImageDataModule",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--experiment", "team"]
