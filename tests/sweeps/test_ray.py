"""Sweeps on a real Ray cluster (``--launcher ray``): a local head bound to 127.0.0.1, one Ray
task per point. Killing a Ray worker mid-point must leave that point FAILED/KILLED (never
RUNNING) while the sweep goes on; a re-run finishes it, and the results equal the local launcher's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from helpers import REPO
from ray_cluster import ray_head  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="needs Ray: pip install 'lit-nn[ray]' (CI installs it)")
SWEEP = {
    "name": "raysweep",
    "config": {
        "model": {"class_path": "lit_nn.models.MLP", "init_args": {"hidden": 16}},
        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 32}},
        "trainer": {"devices": 1, "max_epochs": 3, "limit_train_batches": 60, "limit_val_batches": 2, "limit_test_batches": 2},
        "log_checkpoint": False,
    },
    "grid": {"model.init_args.depth": [0, 1]},
    "seeds": [0, 1],
}
NAMES = ["depth=0-s0", "depth=0-s1", "depth=1-s0", "depth=1-s1"]


def sweep_cmd(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lit_nn", "sweep", str(path), "--out", str(path.parent / "out"), *args]


def ray_worker_of(pid: int) -> int:
    """The Ray worker process (``ray::...``) that ``pid`` runs under."""
    for _ in range(4):
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
    raise AssertionError(f"no Ray worker above process {pid}")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def point_runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.sweep_role = 'point'", max_results=100)


def test_a_sweep_on_ray_survives_a_killed_worker_and_equals_the_local_launcher(tmp_path: Path, client, ray_head):  # noqa: F811 - the imported fixture
    path = tmp_path / "raysweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    sweep = subprocess.Popen(sweep_cmd(path, "--launcher", "ray", "--address", ray_head), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def a_point_mid_training():
        for run in point_runs(client, "raysweep"):
            if run.info.status == "RUNNING" and client.get_metric_history(run.info.run_id, "val_acc"):
                return run
        return None

    victim = wait_for(a_point_mid_training, 600, "a point to finish its first epoch on Ray")
    os.kill(ray_worker_of(int(victim.data.tags["pid"])), signal.SIGKILL)  # the point's process runs on
    out, _ = sweep.communicate(timeout=900)
    assert sweep.returncode == 1, out[-3000:]  # one point failed; the others ran
    first = {r.info.run_id: r for r in point_runs(client, "raysweep")}
    assert first[victim.info.run_id].info.status in ("FAILED", "KILLED"), out[-3000:]
    assert not [r for r in first.values() if r.info.status == "RUNNING"]
    assert sum(r.info.status == "FINISHED" for r in first.values()) == 3, out[-3000:]

    again = subprocess.run(sweep_cmd(path, "--launcher", "ray", "--address", ray_head), cwd=REPO,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 to run, 3 already FINISHED" in again.stdout
    runs = point_runs(client, "raysweep")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert Counter(r.info.run_name for r in finished) == Counter(NAMES), "every point FINISHED exactly once"
    assert not [r for r in runs if r.info.status == "RUNNING"]

    local = tmp_path / "local" / "raysweep_local.yaml"
    local.parent.mkdir()
    local.write_text(yaml.safe_dump({**SWEEP, "name": "raysweep_local"}))
    here = subprocess.run(sweep_cmd(local, "--workers", "2"), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert here.returncode == 0, here.stdout[-3000:] + here.stderr[-3000:]
    on_ray = {r.info.run_name: r.data.metrics for r in finished}
    locally = {r.info.run_name: r.data.metrics for r in point_runs(client, "raysweep_local")}
    for name in NAMES:
        for metric in ("val_acc", "val_loss", "test_acc", "train_loss"):
            assert on_ray[name][metric] == pytest.approx(locally[name][metric], abs=1e-6), (name, metric)
