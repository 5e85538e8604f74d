"""Several processes that write first to a new, empty store all succeed (issue 24 item 3, issue 29 item 2).

Before: two processes unlinked each other's write probe ("cannot write the MLflow store in <dir>
(No such file or directory)"), and MLflow's schema migration raced itself
("table _alembic_tmp_tags already exists").
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO

WRITERS = 4


def test_processes_writing_first_to_a_new_store_all_succeed(tmp_path):
    from mlflow.tracking import MlflowClient

    db = tmp_path / "new-store" / "mlflow.db"  # not even its folder exists yet
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    script = REPO / "tests" / "scripts" / "first_write.py"
    procs = [subprocess.Popen([sys.executable, str(script), "first", f"w{i}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
             for i in range(WRITERS)]
    try:
        for proc in procs:  # the barrier: every writer has imported MLflow and waits for "go"
            assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=60)[1][-3000:]
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    failures = [err[-2000:] for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode]
    assert not failures, f"{len(failures)} of {WRITERS} first writers failed:\n" + "\n---\n".join(failures)
    client = MlflowClient(f"sqlite:///{db}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "first"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"w{i}" for i in range(WRITERS)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not list(db.parent.glob(".write-test*")), "no write probe is left behind"


@pytest.mark.slow
def test_two_fits_at_once_on_a_new_store_both_finish(tmp_path):
    from mlflow.tracking import MlflowClient

    db = tmp_path / "new-store" / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    args = ["-c", str(REPO / "experiments" / "mnist_mlp.yaml"), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
            "--log_checkpoint", "false", "--experiment", "two"]
    procs = [subprocess.Popen([sys.executable, "-m", "lit_nn", "fit", *args, "--run_name", f"fit{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
             for i in range(2)]
    try:
        results = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    client = MlflowClient(f"sqlite:///{db}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "two"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["fit0", "fit1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
