"""Helpers for tests that run the real ``lit-nn`` command."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from lit_nn.tracking.server import free_port  # noqa: F401 - the tests' free port is the server's

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run ``lit-nn ARGS`` in a subprocess (the console script's real path); return the result."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lit_nn", *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def as_foreground_job() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT, as a terminal's Ctrl-C would.

    A shell starts background jobs (``make test &``, ``nohup``, some CI runners) with SIGINT
    ignored, children inherit that, and Python then keeps ignoring it instead of raising
    KeyboardInterrupt. A terminal's foreground job has the default disposition: restore it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_clean_error(result, *fragments: str) -> None:
    """Non-zero exit, an ``error:`` line naming the fragments, and no Python traceback."""
    assert result.returncode != 0, f"expected failure, got 0; stdout={result.stdout[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lowered = result.stderr.lower()
    for fragment in fragments:
        assert fragment.lower() in lowered, f"{fragment!r} not in stderr:\n{result.stderr[-3000:]}"


class Result:
    """What a CLI call produced, the same shape as ``subprocess.CompletedProcess``."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(capsys, *args: str) -> Result:
    """Run ``lit-nn ARGS`` inside the test process: no interpreter start-up or re-import, so
    it is several seconds faster than :func:`run_cli`; use ``run_cli`` where the real console
    entry point or process isolation matters."""
    import logging

    from lit_nn.cli import main

    capsys.readouterr()
    # library loggers' handlers keep the (now closed) stream of the test that first imported them
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stderr  # not setStream(): it flushes the closed one
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def metric_history(db: Path, experiment: str) -> dict[str, list[list[float]]]:
    """{metric: [[epoch, value], ...]} of an experiment's runs, read from the SQLite store exactly as stored."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select m.key, m.step, m.value from metrics m join runs r on m.run_uuid = r.run_uuid "
            "join experiments e on r.experiment_id = e.experiment_id where e.name = ? "
            "order by m.key, m.step, m.timestamp", (experiment,)).fetchall()
    out: dict[str, list[list[float]]] = {}
    for key, step, value in rows:
        out.setdefault(key, []).append([step, value])
    return out


