"""A real Ray cluster for tests: ``ray start --head`` on loopback (the ``ray_head`` fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import free_port

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def ray_head() -> Iterator[str]:
    """(Skipped without Ray.) ``ray start --head`` on 127.0.0.1 (2 CPUs, no dashboard); its address; ``ray stop`` after."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'lit-nn[ray]' (CI installs it)")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
                              "--disable-usage-stats", "--temp-dir", temp],
                             capture_output=True, text=True, env=env, timeout=300)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
