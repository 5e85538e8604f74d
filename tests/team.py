"""A real team server for tests: ``lit-nn server`` (PostgreSQL + ``mlflow server``) on loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
def team_server(folder: Path, *args: str, env: dict | None = None, port: int | None = None) -> Iterator[str]:
    """``lit-nn server`` until the block ends (then Ctrl-C, as a user would); yields its URL.

    ``port``: where the tracking server listens (default: a free one); the same folder and port
    again is the same server restarted, as a client holding its URL sees it."""
    port = port or free_port()
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
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        lines.append(out)
    assert proc.returncode == 0, "".join(lines)[-3000:]
    assert "team server: stopping" in "".join(lines)


def postgres_running(pgdata: Path) -> bool:
    """``pg_ctl status``: 0 while the cluster's server runs, 3 when it is stopped."""
    from lit_nn.tracking.server import as_db_owner, postgres_bin

    status = subprocess.run(as_db_owner([postgres_bin("pg_ctl"), "status", "-D", str(pgdata)]), capture_output=True)
    assert status.returncode in (0, 3), status
    return status.returncode == 0


TINY = ["--model", "lit_nn.models.MLP", "--model.init_args.hidden", "16", "--data", "lit_nn.data.ImageDataModule",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--experiment", "team"]
