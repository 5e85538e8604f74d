"""The MLflow UI, checked as a person would: a real ``mlflow ui`` over a store holding a finished
sweep, opened in headless Chromium. The URL ``lit-nn sweep`` prints must open on a chart of
val_acc with one line per point (read from the page's own Plotly charts through Selenium), and
the report must be listed on the parent run's artifacts page and be downloadable over HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import free_port, run_cli

pytestmark = pytest.mark.slow
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SWEEP = {
    "name": "uisweep",
    "config": {
        "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1, "hidden": 16}},
        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
        "trainer": {"devices": 1, "max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 1,
                    "limit_test_batches": 1},
    },
    "grid": {"model.optimizer": ["adam", "sgd"]},
    "seeds": [0, 1],
}
POINT_NAMES = ["optimizer=adam-s0", "optimizer=adam-s1", "optimizer=sgd-s0", "optimizer=sgd-s1"]


def http_get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--window-size=1400,900", f"--user-data-dir={profile}", *args],
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


def browser(profile: Path, window: str = "1600,1000"):
    """Headless Chromium driven by Selenium through Debian's chromedriver, on a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--window-size={window}", f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


CHART_SERIES = """
const cards = [...document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')];
const card = cards.find(c => c.querySelector('h4') && c.querySelector('h4').textContent.trim() === arguments[0]);
const plot = card && card.querySelector('.js-plotly-plot');
if (!plot || !plot.data) return null;
const lines = {};  // Plotly draws a run as a line trace plus a marker trace of the same name
for (const t of plot.data.filter(t => t.x && t.x.length)) {
  const color = (t.line && t.line.color) || (t.marker && t.marker.color) || null;
  const old = lines[t.name] || [t.name, 0, null];
  lines[t.name] = [t.name, Math.max(old[1], t.x.length), old[2] || color];
}
return Object.values(lines);
"""


def chart_series(driver, metric: str, expected: int, timeout: float = 180) -> list:
    """The (name, points, color) of each line of the ``metric`` chart, once it has ``expected`` lines."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.5).until(
        lambda d: len(d.execute_script(CHART_SERIES, metric) or []) >= expected)
    return driver.execute_script(CHART_SERIES, metric)


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs Chromium and chromedriver (apt-get install chromium chromium-driver); CI installs them")
def test_the_printed_url_opens_on_curves_of_every_point(tmp_path: Path, client, tracking_store: str):
    sweep_file = tmp_path / "uisweep.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "reports"
    result = run_cli("sweep", str(sweep_file), "--out", str(out), "--log_checkpoint", "false", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("compare in the MLflow UI: start `mlflow ui --backend-store-uri"), last
    printed = last.split("then open ", 1)[1]

    exp = client.get_experiment_by_name("uisweep")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    points = {r.info.run_name: r for r in runs if r.data.tags.get("sweep_role") == "point"}
    assert sorted(points) == POINT_NAMES

    with mlflow_ui(tmp_path, tracking_store) as base:
        url = printed.replace("http://127.0.0.1:5000", base)  # the printed URL, on this test's port
        driver = browser(tmp_path / "chrome")
        try:
            driver.get(url)
            series = chart_series(driver, "val_acc", expected=len(POINT_NAMES))
            driver.save_screenshot(str(tmp_path / "mlflow-ui-comparison.png"))
            body = driver.find_element("tag name", "body").text
            losses = chart_series(driver, "train_loss", expected=len(POINT_NAMES))
        finally:
            driver.quit()
    # one val_acc line per point, over every epoch, colored by optimizer as the report's figure
    assert sorted(name.split(" (")[0] for name, _, _ in series) == POINT_NAMES, series
    assert all(n == SWEEP["config"]["trainer"]["max_epochs"] for _, n, _ in series), series
    color = {name.split(" (")[0]: c for name, _, c in series}
    assert color["optimizer=adam-s0"] == color["optimizer=adam-s1"] != color["optimizer=sgd-s0"] == color["optimizer=sgd-s1"]
    assert len(losses) == len(POINT_NAMES)
    # the page lists every point (flat, not folded under the parent) and opened as a training experiment
    for name in POINT_NAMES:
        assert name in body, f"run {name} not listed"
    assert f"{len(POINT_NAMES)} matching runs" in body  # the points only: the parent is not listed
    assert "Overview" not in body.splitlines(), "opened as a GenAI experiment (Overview page)"
    shot = tmp_path / "mlflow-ui-comparison.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium); CI installs it")
def test_mlflow_ui_serves_the_sweep_report(tmp_path: Path, client, tracking_store: str):
    sweep_file = tmp_path / "uisweep.yaml"
    sweep_file.write_text(yaml.safe_dump({**SWEEP, "seeds": [0]}))
    out = tmp_path / "reports"
    result = run_cli("sweep", str(sweep_file), "--out", str(out), "--log_checkpoint", "false", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exp = client.get_experiment_by_name("uisweep")
    (parent,) = client.search_runs([exp.experiment_id], "tags.sweep_role = 'parent'")

    with mlflow_ui(tmp_path, tracking_store) as base:
        # the parent run's artifacts page lists the report, and the image downloads over HTTP
        artifacts_page = f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts"
        dom = rendered_page(tmp_path / "chrome", artifacts_page, ["curves.png", "report.md"])
        assert "curves.png" in dom and "report.md" in dom
        status, png = http_get(f"{base}/get-artifact?path=curves.png&run_uuid={parent.info.run_id}")
        assert status == 200 and png == (out / "curves.png").read_bytes()
        status, md = http_get(f"{base}/get-artifact?path=report.md&run_uuid={parent.info.run_id}")
        assert status == 200 and b"| optimizer | runs | best val_acc |" in md
