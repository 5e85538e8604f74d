"""The MLflow UI, checked as a person would: a real ``mlflow ui`` over a store holding a finished
sweep, opened in headless Chromium. The runs must be listed on the experiment's page, the
report must be listed on the parent run's artifacts page and be downloadable over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import run_cli

pytestmark = pytest.mark.slow
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900"]
SWEEP = {
    "name": "uisweep",
    "config": {
        "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1, "hidden": 16}},
        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
        "trainer": {"devices": 1, "max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 1,
                    "limit_test_batches": 1},
    },
    "grid": {"model.optimizer": ["adam", "sgd"]},
    "seeds": [0],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def rendered_page(profile: Path, url: str, must_contain: list[str], tries: int = 3) -> str:
    """The DOM of ``url`` after the React app had time to render; retried on a slow machine."""
    dom = ""
    for attempt in range(tries):
        budget = 20000 * (attempt + 1)
        dom = chromium(profile, f"--virtual-time-budget={budget}", "--dump-dom", url).stdout
        if all(text in dom for text in must_contain):
            return dom
    return dom


@contextlib.contextmanager
def mlflow_ui(tmp_path: Path, tracking_store: str) -> Iterator[str]:
    """``mlflow ui`` on a free loopback port over the store, in its own process group; yields its URL."""
    port = free_port()
    log = open(tmp_path / "mlflow-ui.log", "w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job consumers
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen([mlflow, "ui", "--backend-store-uri", tracking_store, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while http_get(base + "/health", timeout=5)[0] != 200:
            assert server.poll() is None, (tmp_path / "mlflow-ui.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow ui did not answer /health within 180 s"
            time.sleep(1)
        yield base
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(server.pid, sig)
                server.wait(timeout=15)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium); CI installs it")
def test_mlflow_ui_shows_the_sweep_runs_and_serves_its_report(tmp_path: Path, client, tracking_store: str):
    sweep_file = tmp_path / "uisweep.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "reports"
    result = run_cli("sweep", str(sweep_file), "--out", str(out), "--log_checkpoint", "false", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    exp = client.get_experiment_by_name("uisweep")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    names = sorted(r.info.run_name for r in runs if r.data.tags.get("sweep_role") == "point")
    assert names == ["optimizer=adam-s0", "optimizer=sgd-s0"]

    with mlflow_ui(tmp_path, tracking_store) as base:
        # the REST API the page uses sees the same runs
        found = api(base, "/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [exp.experiment_id]})
        assert sorted(r["info"]["run_name"] for r in found["runs"]) == sorted([*names, "uisweep"])

        # the experiment page renders every point (flat list: filtered by sweep, sorted by name)
        query = urllib.parse.urlencode({"searchFilter": "tags.sweep = 'uisweep'",
                                        "orderByKey": "attributes.run_name", "orderByAsc": "true"},
                                       quote_via=urllib.parse.quote)
        page = f"{base}/#/experiments/{exp.experiment_id}/runs?{query}"
        dom = rendered_page(tmp_path / "chrome", page, names)
        for name in names:
            assert name in dom, f"run {name} not rendered on {page}"
        shot = tmp_path / "mlflow-ui-runs.png"
        chromium(tmp_path / "chrome", "--virtual-time-budget=30000", f"--screenshot={shot}", page)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # the parent run's artifacts page lists the report, and the image downloads over HTTP
        artifacts_page = f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts"
        dom = rendered_page(tmp_path / "chrome", artifacts_page, ["curves.png", "report.md"])
        assert "curves.png" in dom and "report.md" in dom
        chromium(tmp_path / "chrome", "--virtual-time-budget=30000", f"--screenshot={tmp_path / 'mlflow-ui-artifacts.png'}",
                 artifacts_page)
        status, png = http_get(f"{base}/get-artifact?path=curves.png&run_uuid={parent.info.run_id}")
        assert status == 200 and png == (out / "curves.png").read_bytes()
        status, md = http_get(f"{base}/get-artifact?path=report.md&run_uuid={parent.info.run_id}")
        assert status == 200 and b"| optimizer | runs | best val_acc |" in md
    print(f"screenshots: {tmp_path / 'mlflow-ui-runs.png'} and {tmp_path / 'mlflow-ui-artifacts.png'}")

