"""Helpers for tests that run the real ``lit-nn`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run ``lit-nn ARGS`` in a subprocess (the console script's real path); return the result."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lit_nn", *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def assert_clean_error(result, *fragments: str) -> None:
    """Non-zero exit, an ``error:`` line naming the fragments, and no Python traceback."""
    assert result.returncode != 0, f"expected failure, got 0; stdout={result.stdout[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lowered = result.stderr.lower()
    for fragment in fragments:
        assert fragment.lower() in lowered, f"{fragment!r} not in stderr:\n{result.stderr[-3000:]}"
