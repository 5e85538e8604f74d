"""A real team server for tests: ``lit-nn server`` (PostgreSQL + ``mlflow server``) on loopback ports."""

from __future__ import annotations

import os
import shlex
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
                open_temp_folders: bool = True) -> Iterator[str]:
    """``lit-nn server`` until the block ends (then Ctrl-C, as a user would); yields its URL.

    ``port``: where the tracking server listens (default: a free one); the same folder and port
    again is the same server restarted, as a client holding its URL sees it. What it printed on
    starting is kept in :data:`PRINTED` (see :func:`tune_storage`). ``open_temp_folders``: as root,
    first let the postgres user through pytest's temporary folders (:func:`reachable_by_postgres`)."""
    port = port or free_port()
    if open_temp_folders:
        reachable_by_postgres(folder)
    proc = subprocess.Popen([sys.executable, "-m", "lit_nn", "server", "--folder", str(folder), "--port", str(port),
                             *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:  # the server says when it is ready; no sleeping
            lines.append(line)
            if line.startswith("use it with:"):
                break
        assert proc.poll() is None, "".join(lines)
        PRINTED[folder.resolve()] = list(lines)
        yield f"http://127.0.0.1:{port}"
    finally:
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


def reachable_by_postgres(folder: Path) -> None:
    """As root lit-nn runs PostgreSQL as the postgres user, which pytest's own temporary folders
    (/tmp/pytest-of-root is 0700) stop; lit-nn opens no folder unasked, so the tests open theirs,
    as a user would give --folder a folder that user can reach (test_server_access checks that
    lit-nn itself changes no mode)."""
    if os.geteuid() != 0:
        return
    from lit_nn.tracking.server import blocking_folders

    temp = Path(tempfile.gettempdir()).resolve()
    for path, bit in blocking_folders(folder.resolve()):
        assert temp in path.parents, f"{path} stops the postgres user and is not a test's temporary folder"
        path.chmod(path.stat().st_mode | bit)


def postgres_running(pgdata: Path) -> bool:
    """``pg_ctl status``: 0 while the cluster's server runs, 3 when it is stopped."""
    from lit_nn.tracking.server import as_db_owner, postgres_bin

    status = subprocess.run(as_db_owner([postgres_bin("pg_ctl"), "status", "-D", str(pgdata)]), capture_output=True)
    assert status.returncode in (0, 3), status
    return status.returncode == 0


TINY = ["--model", "lit_nn.models.MLP", "--model.init_args.hidden", "16", "--data", "lit_nn.data.ImageDataModule",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--experiment", "team"]
