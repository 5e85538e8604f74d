"""``lit-nn server``: a real PostgreSQL cluster behind a real ``mlflow server`` on loopback ports;
``lit-nn fit`` against it by ``MLFLOW_TRACKING_URI`` alone; the state survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from team import TINY, needs_postgres, postgres_running, team_server

from helpers import REPO, run_cli

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")


@needs_postgres
def test_fit_against_the_team_server_and_its_state_survives_a_restart(tmp_path: Path):
    from mlflow import MlflowClient

    folder = tmp_path / "srv"
    with team_server(folder) as url:
        fit = run_cli("fit", *TINY, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": url})  # ./checkpoints goes there
        assert fit.returncode == 0, fit.stdout[-2000:] + fit.stderr[-2000:]
        last = (fit.stdout + fit.stderr).strip().splitlines()[-1]
        assert last.startswith("mlflow: run ") and f"open it at {url}/#/experiments/" in last, last
        assert "View run" not in fit.stdout + fit.stderr  # MLflow's own link lines are not repeated
        run_id = last.split()[2]
        run = MlflowClient(url).get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params["model.hidden"] == "16"
        assert [m.step for m in MlflowClient(url).get_metric_history(run_id, "val_acc")] == [0, 1]
        names = {a.path for a in MlflowClient(url).list_artifacts(run_id)}
        assert {"config.yaml", "checkpoints", "confusion_matrix.png"} <= names, names
    # artifacts were uploaded through the server (proxied) into its folder; PostgreSQL stopped
    assert list((folder / "artifacts").rglob("config.yaml"))
    assert not postgres_running(folder / "pgdata")

    with team_server(folder) as url:  # the same folder: the same database
        assert MlflowClient(url).get_run(run_id).info.status == "FINISHED"


@needs_postgres
def test_with_auth_a_wrong_password_is_one_sentence_and_no_run(tmp_path: Path):
    from mlflow import MlflowClient

    from helpers import assert_clean_error

    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "s3cret-Passw0rd"}
    with team_server(tmp_path / "srv", "--auth", env={"LIT_NN_ADMIN_PASSWORD": admin["MLFLOW_TRACKING_PASSWORD"]}) as url:
        wrong = run_cli("fit", *TINY, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin",
                                           "MLFLOW_TRACKING_PASSWORD": "wrong"})
        assert_clean_error(wrong, f"the MLflow tracking server at {url} refused user 'admin'",
                           "MLFLOW_TRACKING_PASSWORD")
        assert len([line for line in wrong.stderr.splitlines() if line.startswith("error:")]) == 1
        right = run_cli("fit", *TINY, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": url, **admin})
        assert right.returncode == 0, right.stderr[-2000:]
        os.environ.update(admin)
        try:
            client = MlflowClient(url)
            runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
        finally:
            for key in admin:
                os.environ.pop(key)
        assert [r.info.status for r in runs] == ["FINISHED"]  # the refused fit created nothing


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


@needs_postgres
def test_killed_fit_resumes_from_the_server_alone_in_an_empty_folder(tmp_path: Path):
    """kill -9 mid-epoch on one "machine" (folder), `fit --resume RUN_ID` on another that holds
    nothing but the tracking URI: the last checkpoint and the config come from the run; the metrics
    equal an uninterrupted run's bit for bit (CPU, fixed seed). Then predict from the run id there."""
    from mlflow import MlflowClient

    config = str(REPO / "experiments" / "mnist_mlp.yaml")
    args = ["fit", "-c", config, "--trainer.max_epochs", "5", "--data.init_args.batch_size", "16",
            "--model.init_args.dropout", "0.2", "--trainer.enable_progress_bar", "false", "--log_model", "false"]
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for folder in (first, second, third):
        folder.mkdir()
    with team_server(tmp_path / "srv") as url:
        client, env = MlflowClient(url), {**os.environ, "MLFLOW_TRACKING_URI": url}
        proc = subprocess.Popen([sys.executable, "-m", "lit_nn", *args, "--experiment", "killed"], cwd=first, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

        def two_epochs_done():  # epoch 1's train_loss row: the last thing an epoch writes
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            exp = client.get_experiment_by_name("killed")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            return runs[0] if runs and len(client.get_metric_history(runs[0].info.run_id, "train_loss")) >= 2 else None

        deadline = time.monotonic() + 600
        while not (killed := two_epochs_done()):
            assert time.monotonic() < deadline, "fit too slow to finish two epochs"
            time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        run_id = killed.info.run_id
        assert client.get_run(run_id).info.status == "RUNNING"
        assert "checkpoints/last.ckpt" in {a.path for a in client.list_artifacts(run_id, "checkpoints")}

        resumed = run_cli("fit", "--resume", run_id, cwd=second, env={"MLFLOW_TRACKING_URI": url}, timeout=900)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
        assert f"fetched the last checkpoint of run {run_id}" in resumed.stdout + resumed.stderr
        reference = run_cli(*args, "--experiment", "reference", cwd=first, env={"MLFLOW_TRACKING_URI": url},
                            timeout=900)
        assert reference.returncode == 0, reference.stderr[-3000:]
        (ref,) = client.search_runs([client.get_experiment_by_name("reference").experiment_id])
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        for key in ("train_loss", "val_loss", "val_acc"):
            expected = _history(client, ref.info.run_id, key)
            assert sorted(expected) == [0, 1, 2, 3, 4], key
            assert _history(client, run_id, key) == expected, key
        assert run.data.metrics["test_acc"] == ref.data.metrics["test_acc"]

        predicted = run_cli("predict", "--ckpt_path", run_id, cwd=third, env={"MLFLOW_TRACKING_URI": url})
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert "accuracy" in predicted.stdout.lower() or "correct" in predicted.stdout.lower(), predicted.stdout[-1500:]
