"""``lit-nn sweep`` end to end: real training runs in worker processes against one SQLite store.

One tiny sweep (a diverging point, then two healthy ones, two workers) runs once for the
module; the tests read what it left in MLflow. Means and spreads over several seeds are
checked on hand-made runs in test_compare.py. The kill tests are slow-marked.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lit_nn.tracking.liveness import process_alive

from helpers import REPO, Result, as_foreground_job

TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--log_checkpoint", "false"]
SWEEP = {
    "name": "tiny",
    "config": {
        "seed_everything": 0,
        "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1, "hidden": 16}},
        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
        "trainer": {"devices": 1, "log_every_n_steps": 1},
    },
    # the diverging point comes first: the sweep must go on after it
    "points": [{"name": "boom", "model.optimizer": "sgd", "model.lr": 1.0e30},
               {"name": "adam", "model.optimizer": "adam", "model.lr": 0.01},
               {"name": "sgd", "model.optimizer": "sgd", "model.lr": 0.1}],
    "seeds": [0],
    "group_by": "sweep_point",
}


class Store:
    """A tracking store of its own (the module's sweep outlives the per-test store)."""

    def __init__(self, root: Path) -> None:
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
        self.root, self.db = root, root / "mlruns" / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)

    def runs(self, experiment: str) -> list:
        client = self.client()
        exp = client.get_experiment_by_name(experiment)
        return sorted(client.search_runs([exp.experiment_id], max_results=1000), key=lambda r: r.info.start_time)

    def sweep(self, *args: str) -> Result:
        """``lit-nn sweep ARGS`` with the coordinator in this process (it saves a Python start-up;
        the points still run in worker processes)."""
        from lit_nn.cli import main

        out, err = io.StringIO(), io.StringIO()
        for logger in [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                              if isinstance(lg, logging.Logger))]:
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:
                    handler.stream = err
        code = 0
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            mp.setenv("MLFLOW_TRACKING_URI", self.uri)
            try:
                main(["sweep", *args])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Run the tiny sweep once with two workers, as if on a machine with two GPUs (each worker
    pinned to one; without CUDA the points still train on the CPU); snapshot the store right after."""
    from lit_nn.sweeps import driver

    root = tmp_path_factory.mktemp("tiny-sweep")
    store = Store(root)
    sweep_file = root / "tiny.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(driver, "visible_gpus", lambda: ("0", "1"))
        result = store.sweep(str(sweep_file), "--workers", "2", "--out", str(root / "reports"), *TINY)
    return {"store": store, "file": sweep_file, "result": result, "runs": store.runs("tiny"),
            "out": root / "reports"}


def point_runs(runs):
    return [r for r in runs if r.data.tags.get("sweep_role") == "point"]


def test_diverging_point_fails_with_its_reason_and_the_sweep_goes_on(tiny):
    result = tiny["result"]
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    failed = [line for line in result.stderr.splitlines() if "points failed" in line]
    assert len(failed) == 1 and failed[0].startswith("1 of 3 points failed: training diverged"), result.stderr
    assert failed[0].endswith("(boom-s0)")
    runs = point_runs(tiny["runs"])
    status = {r.info.run_name: r.info.status for r in runs}
    assert status == {"boom-s0": "FAILED", "adam-s0": "FINISHED", "sgd-s0": "FINISHED"}
    for run in runs:
        if run.info.status == "FAILED":
            assert "training diverged: loss is" in run.data.tags["failure_reason"]
            assert "lr=1e+30" in run.data.tags["failure_reason"]
    assert "database is locked" not in result.stdout + result.stderr


def test_points_are_nested_under_one_parent_with_their_values_as_tags_and_params(tiny):
    runs = tiny["runs"]
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert parent.info.run_name == "tiny" and parent.info.status == "FAILED"  # some points failed
    assert parent.data.tags["group_by"] == "sweep_point"
    points = point_runs(runs)
    assert len(points) == 3
    for run in points:
        tags, params = run.data.tags, run.data.params
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["sweep"] == "tiny" and run.info.run_name == f"{tags['sweep_point']}-s{tags['seed']}"
        want = {"boom": ("sgd", "1e+30"), "adam": ("adam", "0.01"), "sgd": ("sgd", "0.1")}[tags["sweep_point"]]
        assert (tags["optimizer"], tags["lr"]) == want  # varied values as tags ...
        if run.info.status == "FINISHED":
            assert (params["model.optimizer"], float(params["model.lr"])) == (want[0], float(want[1]))  # ... and params
            assert params["seed_everything"] == tags["seed"]
            assert params["trainer.max_epochs"] == "2"  # the extra command-line args reached every point
    assert len({r.data.tags["config_hash"] for r in points}) == 3
    client = tiny["store"].client()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"curves.png", "report.md", "sweep.yaml"} <= artifacts
    point_artifacts = {a.path for a in client.list_artifacts(points[0].info.run_id)}
    assert any(p.endswith(".log") for p in point_artifacts), "each point's output log is kept with its run"


def test_two_workers_on_one_sqlite_store_lose_no_runs_or_metrics(tiny):
    runs = point_runs(tiny["runs"])
    assert len({r.data.tags["pid"] for r in runs}) == 2, "the points ran in two worker processes"
    client = tiny["store"].client()
    db = sqlite3.connect(tiny["store"].db)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    row_counts = set()
    for run in finished:
        keys = ("train_loss", "train_acc", "val_loss", "val_acc")
        for key in keys:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1], (run.info.run_name, key)
        assert {"test_acc", "test_loss"} <= set(run.data.metrics)
        api_rows = sum(len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics)
        (db_rows,) = db.execute("select count(*) from metrics where run_uuid = ?", (run.info.run_id,)).fetchone()
        assert db_rows == api_rows >= 4 * 2 + 2
        row_counts.add(db_rows)
    assert len(row_counts) == 1, f"every finished point logged the same number of metric rows: {row_counts}"


def test_each_worker_has_its_own_gpu_and_its_points_record_where_they_ran(tiny):
    import torch

    assert "GPUs (CUDA_VISIBLE_DEVICES): worker 0 → 0, worker 1 → 1" in tiny["result"].stdout
    runs = point_runs(tiny["runs"])
    pinned: dict[str, set[str]] = {}
    for run in runs:
        pinned.setdefault(run.data.tags["pid"], set()).add(run.data.tags["cuda_visible_devices"])
        if not torch.cuda.is_available():
            assert run.data.tags["device"] == "cpu"
    assert sorted(pinned.values(), key=sorted) == [{"0"}, {"1"}], "one GPU per worker, the same for all its points"


def test_report_from_the_sweep_matches_the_runs(tiny):
    client = tiny["store"].client()
    finished = [r for r in point_runs(tiny["runs"]) if r.info.status == "FINISHED"]
    table = (tiny["out"] / "report.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (\w+) \| (.+) \|$", table, re.M)}
    assert set(rows) >= {"adam", "sgd"} and "boom" not in rows, table
    for group in ("adam", "sgd"):
        members = [r for r in finished if r.data.tags["sweep_point"] == group]
        best = [max(m.value for m in client.get_metric_history(r.info.run_id, "val_acc")) for r in members]
        test = [r.data.metrics["test_acc"] for r in members]
        cells = [c.strip() for c in rows[group].split("|")]
        assert cells[0] == "1"
        assert cells[1] == _fmt(best) and cells[2] == _fmt(test), (cells, best, test)
        assert cells[5] == f"{int(members[0].data.params['num_parameters']):,}"
    assert "boom-s0 | FAILED | training diverged" in table

    from lit_nn.sweeps.compare import report_sweep
    from lit_nn.sweeps.sweep import Sweep

    exp = client.get_experiment_by_name("tiny")
    report = report_sweep(client, Sweep("tiny", exp.experiment_id), "sweep_point", ["boom", "adam", "sgd"],
                          tiny["out"] / "again")
    for ax in report.figure.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["adam", "sgd"], "one line per group that finished"
        assert ax.get_xlabel() == "epoch"


def _fmt(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if min(values) == max(values):
        return f"{mean:.4f}"
    return f"{mean:.4f} [{min(values):.4f}, {max(values):.4f}]"


def test_resume_plan_skips_finished_points_and_reruns_failed_ones(tiny):
    store = tiny["store"]
    dry = store.sweep(str(tiny["file"]), "--dry-run", *TINY)
    assert dry.returncode == 0 and "1 of 3 point(s) would run" in dry.stdout
    plan = {line.split()[1]: line.split()[0] for line in dry.stdout.splitlines() if line.startswith("  ")}
    assert plan == {"boom-s0": "run", "adam-s0": "skip", "sgd-s0": "skip"}
    assert "previous: FAILED" in dry.stdout
    forced = store.sweep(str(tiny["file"]), "--dry-run", "--force", *TINY)
    assert "3 of 3 point(s) would run" in forced.stdout
    other_budget = store.sweep(str(tiny["file"]), "--dry-run", *TINY, "--trainer.max_epochs=3")
    assert "3 of 3 point(s) would run" in other_budget.stdout, "other extra args make other points"


@pytest.mark.slow
def test_rerun_skips_finished_points_and_reruns_failed_ones(tiny):
    store, before = tiny["store"], point_runs(tiny["runs"])
    result = store.sweep(str(tiny["file"]), "--out", str(tiny["out"]), *TINY)
    assert result.returncode == 1 and "1 to run, 2 already FINISHED" in result.stdout
    after = point_runs(store.runs("tiny"))
    finished_before = {r.info.run_id for r in before if r.info.status == "FINISHED"}
    assert {r.info.run_id for r in after if r.info.status == "FINISHED"} == finished_before, "nothing re-trained"
    new = [r for r in after if r.info.run_id not in {b.info.run_id for b in before}]
    assert [r.info.run_name for r in new] == ["boom-s0"]
    assert all(r.info.status == "FAILED" for r in new)
    parents = [r for r in store.runs("tiny") if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1 and all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in new)


# -- slow: killing things --------------------------------------------------------------------
KILL_SWEEP = {
    "name": "killme",
    "config": {**SWEEP["config"], "trainer": {"devices": 1, "max_epochs": 4}},
    "grid": {"model.hidden": [8, 16, 24, 32]},
    "seeds": [0],
}


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_sweep(store: Store, sweep_file: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    return subprocess.Popen([sys.executable, "-m", "lit_nn", "sweep", str(sweep_file), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _runs_or_empty(store: Store, name: str) -> list:
    try:
        return point_runs(store.runs(name))
    except Exception:  # noqa: BLE001 - the experiment may not exist yet
        return []


@pytest.mark.slow
def test_kill_9_of_the_sweep_then_rerun_finishes_only_the_remaining_points(tmp_path):
    store = Store(tmp_path)
    sweep_file = tmp_path / "killme.yaml"
    sweep_file.write_text(yaml.safe_dump(KILL_SWEEP))
    out = tmp_path / "reports"
    proc = _start_sweep(store, sweep_file, "--out", str(out), "--log_checkpoint", "false")
    try:
        def one_done_one_running():
            runs = _runs_or_empty(store, "killme")
            done = [r for r in runs if r.info.status == "FINISHED"]
            running = [r for r in runs if r.info.status == "RUNNING"]
            return (done, running) if done and running else None

        done, (running,) = _wait_for(one_done_one_running, 400, "a finished point and a running one")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # the worker gets SIGINT when the sweep dies: it stops the point like a Ctrl-C, records KILLED, exits
    worker_pid = int(running.data.tags["pid"])
    _wait_for(lambda: not process_alive(worker_pid), 120, "the orphaned worker to exit")
    killed = store.client().get_run(running.info.run_id)
    assert killed.info.status == "KILLED", killed.info.status
    assert killed.data.tags["failure_reason"].startswith("interrupted: the sweep was stopped")

    finished_before = {r.info.run_id for r in _runs_or_empty(store, "killme") if r.info.status == "FINISHED"}
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    rerun = subprocess.run([sys.executable, "-m", "lit_nn", "sweep", str(sweep_file), "--out", str(out),
                            "--log_checkpoint", "false"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{4 - len(finished_before)} to run, {len(finished_before)} already FINISHED" in rerun.stdout
    runs = _runs_or_empty(store, "killme")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.info.run_name for r in finished) == [f"hidden={h}-s0" for h in (16, 24, 32, 8)]
    assert finished_before <= {r.info.run_id for r in finished}, "points finished before the kill were kept"
    assert len(runs) == 5 and not [r for r in runs if r.info.status == "RUNNING"]
    assert (out / "report.md").is_file() and (out / "curves.png").is_file()


@pytest.mark.slow
def test_a_worker_killed_mid_point_fails_only_that_point(tmp_path):
    store = Store(tmp_path)
    sweep_file = tmp_path / "killme.yaml"
    sweep_file.write_text(yaml.safe_dump(KILL_SWEEP))
    proc = _start_sweep(store, sweep_file, "--out", str(tmp_path / "reports"), "--log_checkpoint", "false")
    try:
        (running,) = _wait_for(lambda: [r for r in _runs_or_empty(store, "killme") if r.info.status == "RUNNING"],
                               400, "a running point")
        os.kill(int(running.data.tags["pid"]), signal.SIGKILL)  # like an OOM kill of the training process
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output[-3000:]
    assert "1 of 4 points failed" in output and "worker process died (killed by signal 9)" in output
    runs = _runs_or_empty(store, "killme")
    status = {r.info.run_id: r.info.status for r in runs}
    assert status[running.info.run_id] == "FAILED"
    assert sum(s == "FINISHED" for s in status.values()) == 3, "a fresh worker ran the remaining points"
    reason = store.client().get_run(running.info.run_id).data.tags["failure_reason"]
    assert "worker process died" in reason


@pytest.mark.slow
def test_ctrl_c_stops_the_running_point_as_killed_and_a_rerun_finishes(tmp_path):
    store = Store(tmp_path)
    sweep_file = tmp_path / "killme.yaml"
    sweep_file.write_text(yaml.safe_dump(KILL_SWEEP))
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    args = [sys.executable, "-m", "lit_nn", "sweep", str(sweep_file), "--out", str(tmp_path / "r"),
            "--log_checkpoint", "false"]
    # its own process group, like a terminal's foreground job: Ctrl-C reaches the sweep and its workers
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=as_foreground_job)
    try:
        (running,) = _wait_for(lambda: [r for r in _runs_or_empty(store, "killme") if r.info.status == "RUNNING"],
                               400, "a running point")
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "run the same command again to finish them" in output
    killed = store.client().get_run(running.info.run_id)
    assert killed.info.status == "KILLED" and "interrupted" in killed.data.tags["failure_reason"]
    assert not process_alive(int(running.data.tags["pid"])), "the worker exited with the sweep"
    parent = [r for r in store.runs("killme") if r.data.tags.get("sweep_role") == "parent"][0]
    assert parent.info.status == "KILLED"

    rerun = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    finished = [r for r in _runs_or_empty(store, "killme") if r.info.status == "FINISHED"]
    assert len(finished) == 4 and len({r.data.tags["config_hash"] for r in finished}) == 4


@pytest.mark.slow
def test_trainer_flags_reach_every_point_even_multi_process_ddp(tmp_path):
    """``--trainer.devices 2`` makes each point a real ``lit-nn fit`` process (DDP re-launches it)."""
    store = Store(tmp_path)
    sweep_file = tmp_path / "ddp.yaml"
    sweep_file.write_text(yaml.safe_dump({**SWEEP, "name": "ddp", "points": SWEEP["points"][:2]}))
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    result = subprocess.run(
        [sys.executable, "-m", "lit_nn", "sweep", str(sweep_file), "--out", str(tmp_path / "r"), *TINY,
         "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "a fresh process per point" in result.stdout
    runs = {r.info.run_name: r for r in point_runs(store.runs("ddp"))}
    assert set(runs) == {"boom-s0", "adam-s0"}, "one MLflow run per point, not one per rank"
    assert runs["boom-s0"].info.status == "FAILED"
    assert "training diverged" in runs["boom-s0"].data.tags["failure_reason"]
    adam = runs["adam-s0"]
    assert adam.info.status == "FINISHED"
    assert adam.data.params["trainer.devices"] == "2" and adam.data.params["trainer.strategy"] == "ddp"
    assert [m.step for m in store.client().get_metric_history(adam.info.run_id, "val_acc")] == [0, 1]
