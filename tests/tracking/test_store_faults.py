"""Faults of the tracking store reach the user as one sentence, and leave no run RUNNING.

Each kind of fault is produced for real where the machine allows it (another application's SQLite
file, a web server that is not MLflow, a PostgreSQL port nobody listens on, an immutable database
file, a database another process holds locked) and injected at MLflow's client where it does not
(a disk that fills after the run was created).
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lit_nn.core.errors import UserError

from helpers import assert_clean_error, free_port, run_cli, run_main

QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false"]
MLP = ["fit", "-c", "experiments/mnist_mlp.yaml", "--model.init_args.hidden", "16", *QUICK]


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_another_applications_sqlite_file_is_refused_and_left_byte_identical(tmp_path, monkeypatch, capsys):
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    for argv in (["runs"], MLP):
        result = run_main(capsys, *argv)
        assert_clean_error(result, f"{db} is another application's SQLite database (tables notes)",
                           "leaves it unchanged")
        assert one_error_line(result)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_an_empty_file_and_a_store_of_mlflow_are_both_welcome(tmp_path, monkeypatch, capsys, tracking_store):
    empty = tmp_path / "new.db"
    empty.touch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty}")
    assert run_main(capsys, "runs").returncode == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_store)
    assert run_main(capsys, "runs").returncode == 0


def test_a_web_server_that_is_not_mlflow_is_one_sentence(monkeypatch, capsys):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        result = run_main(capsys, "runs")
    finally:
        server.shutdown()
    assert_clean_error(result, f"{uri} answers, but not as an MLflow tracking server")


def test_a_postgresql_store_nobody_listens_on_fails_at_once_without_its_password(monkeypatch):
    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    port = free_port()
    uri = f"postgresql://lab:s3cret@127.0.0.1:{port}/mlflow"
    result = run_cli("runs", env={"MLFLOW_TRACKING_URI": uri}, timeout=60)  # MLflow alone retries ~100 s
    assert_clean_error(result, f"127.0.0.1:{port}/mlflow is not reachable (connection refused)")
    assert "s3cret" not in result.stderr and "***" in result.stderr
    assert "retried" not in result.stderr  # MLflow's own retry notices are not shown


def test_a_postgresql_store_without_its_driver_is_named_without_its_password(monkeypatch):
    from lit_nn.tracking import store

    monkeypatch.setattr(store.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError) as error:
        store.check_uri("postgresql+psycopg://lab:s3cret@127.0.0.1:5/mlflow")
    assert "s3cret" not in str(error.value) and "lab:***@127.0.0.1:5/mlflow" in str(error.value)
    assert "pip install 'lit-nn[postgres]'" in str(error.value)


def _immutable(path: Path) -> bool:
    done = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    return bool(done) and done.returncode == 0


def test_a_read_only_database_file_in_a_writable_folder_is_one_sentence(tracking_store, capsys):
    db = Path(tracking_store.removeprefix("sqlite:///"))
    if not _immutable(db):
        pytest.skip("chattr +i is not available here (root ignores mode bits; an immutable file is read-only)")
    try:
        result = run_main(capsys, *MLP)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert_clean_error(result, f"the MLflow store {db} is read-only (the database file itself)",
                       "make the file writable")
    assert result.returncode == 1


def _full_disk_after_the_run_exists(monkeypatch) -> list[str]:
    """Every MLflow write but the run's own bookkeeping fails as SQLite does on a full disk."""
    import sqlalchemy.exc
    from mlflow.tracking import MlflowClient

    calls: list[str] = []

    def full(name: str):
        def write(self, *args, **kwargs):
            calls.append(name)
            raise sqlalchemy.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
        return write

    for name in ("log_batch", "log_metric", "log_param", "log_text", "log_dict", "log_artifact", "log_figure",
                 "log_inputs"):
        monkeypatch.setattr(MlflowClient, name, full(name))
    return calls


def test_a_store_that_fills_during_a_fit_ends_it_failed_with_the_sentence(monkeypatch, capsys, client):
    calls = _full_disk_after_the_run_exists(monkeypatch)
    result = run_main(capsys, *MLP, "--experiment", "full")
    assert calls, "the fault was never reached"
    line = one_error_line(result)
    assert "the disk holding the MLflow store" in line and "is full; free space there" in line
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (run,) = client.search_runs([client.get_experiment_by_name("full").experiment_id])
    assert run.info.status == "FAILED"
    assert "is full" in run.data.tags["failure_reason"]


def test_a_store_that_fills_during_a_lab_ends_its_run_failed(monkeypatch, capsys, client):
    calls = _full_disk_after_the_run_exists(monkeypatch)
    result = run_main(capsys, "lab", "gates")
    assert calls
    assert_clean_error(result, "is full; free space there")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and {r.info.status for r in runs} == {"FAILED"}


def test_an_error_after_a_resumed_run_is_reopened_does_not_leave_it_running(capsys, client, tracking_store):
    first = run_main(capsys, *MLP, "--experiment", "resumed")
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    last = Path(run.data.tags["last_checkpoint"])
    last.write_bytes(last.read_bytes()[:100])  # truncated, as a crash in the middle of a copy leaves it
    client.set_terminated(run.info.run_id, "KILLED")
    result = run_main(capsys, *MLP, "--experiment", "resumed", "--resume", run.info.run_id)
    assert_clean_error(result, "not a readable checkpoint")
    assert client.get_run(run.info.run_id).info.status != "RUNNING"


@pytest.mark.slow
def test_a_store_locked_by_another_process_past_sqlites_wait_is_one_sentence(tracking_store):
    """SQLite's busy timeout (MLflow sets 20 s on every session) is the bounded wait; a lock held
    past it is one sentence naming the store."""
    db = tracking_store.removeprefix("sqlite:///")
    holder = ("import sqlite3, sys\n"
              f"conn = sqlite3.connect({db!r}, isolation_level=None)\n"
              "conn.execute('BEGIN EXCLUSIVE')\n"
              "print('locked', flush=True)\n"
              "sys.stdin.readline()\n")
    lock = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert lock.stdout.readline().strip() == "locked"
        result = run_cli("runs", timeout=120)
    finally:
        lock.kill()
        lock.wait()
    assert_clean_error(result, f"the MLflow store {db} stayed locked by another process for 20 s")
    assert result.returncode == 1


def test_evaluating_a_checkpoint_into_a_full_store_leaves_no_run_running(monkeypatch, capsys, client):
    """validate, test and predict create a run of their own, then log into it: each ends FAILED."""
    first = run_main(capsys, *MLP, "--experiment", "trained")
    assert first.returncode == 0, first.stderr[-2000:]
    (trained,) = client.search_runs([client.get_experiment_by_name("trained").experiment_id])
    ckpt = trained.data.tags["last_checkpoint"]
    calls = _full_disk_after_the_run_exists(monkeypatch)
    for command in ("validate", "test", "predict"):
        result = run_main(capsys, command, "-c", "experiments/mnist_mlp.yaml", "--ckpt_path", ckpt,
                          "--experiment", command, *QUICK[2:])
        assert_clean_error(result, "is full; free space there")
        experiment = client.get_experiment_by_name(command)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        assert runs and {r.info.status for r in runs} == {"FAILED"}, (command, [r.info.status for r in runs])
    assert calls
