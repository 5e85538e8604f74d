"""Reliability: kill-and-resume, reproducibility, safe checkpoint loading, concurrent writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lit_nn.core.errors import UserError
from lit_nn.models import CNN, MLP
from lit_nn.tracking.checkpoints import check_checkpoint_matches, load_checkpoint

from conftest import runs_of
from helpers import REPO, as_foreground_job, run_cli, run_main

QUIET = ["--trainer.enable_progress_bar", "false"]


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_same_seed_same_per_epoch_metrics(client, capsys):
    args = ["fit", "-c", "experiments/mnist_mlp.yaml", "--trainer.max_epochs", "2", "--model.init_args.dropout",
            "0.2", "--trainer.limit_train_batches", "8", *QUIET]
    for name in ("a", "b"):
        assert run_main(capsys, *args, "--experiment", name).returncode == 0
    (a,), (b,) = runs_of(client, "a"), runs_of(client, "b")
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert _history(client, a.info.run_id, key) == _history(client, b.info.run_id, key), key
    assert a.data.metrics["test_acc"] == b.data.metrics["test_acc"]
    assert a.data.params["seed_everything"] == "0"
    # and a different seed really changes the run
    assert run_main(capsys, *args, "--experiment", "c", "--seed_everything", "1").returncode == 0
    (c,) = runs_of(client, "c")
    assert _history(client, c.info.run_id, "train_loss") != _history(client, a.info.run_id, "train_loss")


def test_last_checkpoint_is_the_last_epoch_even_when_it_was_not_the_best(client, capsys):
    """Resuming reads last.ckpt: it must be the latest epoch, not the latest improvement (Lightning
    2.6 rewrites it only when best.ckpt improves). With lr ~0 the val_acc never improves after epoch 0."""
    args = ["fit", "-c", "experiments/mnist_mlp.yaml", "--trainer.max_epochs", "3", "--model.init_args.lr", "1e-12",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
            "--log_model", "false", "--experiment", "last", *QUIET]
    assert run_main(capsys, *args).returncode == 0
    (run,) = runs_of(client, "last")
    folder = Path(run.data.tags["checkpoint_dir"])
    best, last = (torch.load(folder / name, map_location="cpu", weights_only=True) for name in ("best.ckpt", "last.ckpt"))
    assert best["epoch"] == 0, "the setup did not keep the best at epoch 0"
    assert last["epoch"] == 2 and last["global_step"] == 6


def test_a_fit_whose_validation_never_ran_writes_last_ckpt_at_its_end(client, capsys):
    """No epoch validated (every 3rd epoch, of 2), so no checkpoint was due: last.ckpt is written once,
    at the end, for resuming; best.ckpt, which needs the monitor, is not."""
    args = ["fit", "-c", "experiments/mnist_mlp.yaml", "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch",
            "3", "--trainer.limit_train_batches", "2", "--test_after_fit", "false", "--log_model", "false",
            "--experiment", "noval", *QUIET]
    assert run_main(capsys, *args).returncode == 0
    (run,) = runs_of(client, "noval")
    folder = Path(run.data.tags["checkpoint_dir"])
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 4


def test_on_a_tracking_server_the_logger_uploads_each_last_ckpt(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Lightning tells the logger of every checkpoint written; on a server last.ckpt goes to the run
    (resuming from any machine), best.ckpt waits for the end of the fit; a local store keeps both here."""
    from lightning.pytorch.loggers import MLFlowLogger

    from lit_nn.tracking.callbacks import LastCheckpoint, RunCheckpoint
    from lit_nn.tracking.logger import MLflowTracker

    monkeypatch.setattr(MLFlowLogger, "experiment", property(lambda self: None))  # the run exists: no request
    uploads = []
    best, last = RunCheckpoint(MLP()), LastCheckpoint()
    best.dirpath = last.dirpath = str(tmp_path)
    for uri in ("http://127.0.0.1:5000", f"sqlite:///{tmp_path}/mlflow.db"):
        tracker = MLflowTracker("up", run_id="abc123", tracking_uri=uri)
        monkeypatch.setattr(tracker, "log_artifact", lambda path, where=None, uri=uri: uploads.append((uri, Path(path), where)))
        tracker.after_save_checkpoint(last)  # not written: nothing to upload
        (tmp_path / "best.ckpt").write_bytes(b"best")
        (tmp_path / "last.ckpt").write_bytes(b"last")
        tracker.after_save_checkpoint(best)
        tracker.after_save_checkpoint(last)
        (tmp_path / "last.ckpt").unlink()
    assert uploads == [("http://127.0.0.1:5000", tmp_path / "last.ckpt", "checkpoints")]


def _checkpoint(tmp_path: Path, model: torch.nn.Module) -> Path:
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_loads_weights_only_and_names_its_model(tmp_path):
    path = _checkpoint(tmp_path, MLP(depth=1))
    checkpoint = load_checkpoint(path)  # weights_only=True succeeds on what lit-nn stores
    assert checkpoint["lit_nn"]["model_class"].endswith("MLP") and "rng_state" in checkpoint
    check_checkpoint_matches(path, MLP(depth=1))
    with pytest.raises(UserError, match=r"holds a MLP model .* but the config builds a CNN"):
        check_checkpoint_matches(path, CNN())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
        (lambda p: p.write_text("model: {}\n"), "not a readable checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(2)}, p), r"not a lit-nn \(Lightning\) checkpoint \(no state_dict\)"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "does not exist"),
    ],
)
def test_bad_checkpoint_files(tmp_path, make, message):
    path = tmp_path / "x.ckpt"
    make(path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = _checkpoint(tmp_path, MLP(depth=1))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UserError, match="truncated"):
        load_checkpoint(path)


def _rows(db: Path, key: str = "val_acc") -> int:
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("select count(*) from metrics where key = ?", (key,)).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(client, tracking_store, tmp_path):
    """Kill a 5-epoch fit with SIGKILL once two epochs are complete; `--ckpt_path last` finishes the
    same run with exactly the metrics of an uninterrupted run (CPU, fixed seed: bit-identical).

    The kill waits on an event, never on a clock: epoch 1's train_loss row, the last thing an epoch
    writes (after its validation row and its last.ckpt), so the kill lands in epoch 2 or later at any
    machine speed. What is asserted holds wherever it lands: the resumed run re-trains from its last
    checkpoint, so an epoch it repeats is recorded again with the same values. (A kill in the
    milliseconds between an epoch's checkpoint and its train_loss row would lose that one row:
    Lightning writes epoch metrics after the callbacks' epoch-end hooks.)"""
    args = ["fit", "-c", "experiments/mnist_cnn.yaml", "--trainer.max_epochs", "5", "--data.init_args.batch_size",
            "16", "--model.init_args.dropout", "0.2", *QUIET]
    db = Path(tracking_store.removeprefix("sqlite:///"))
    proc = subprocess.Popen([sys.executable, "-m", "lit_nn", *args, "--experiment", "killed"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600
    while _rows(db, "train_loss") < 2:  # epochs 0 and 1 are complete
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "fit too slow to reach epoch 3"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (killed,) = runs_of(client, "killed")
    assert killed.info.status == "RUNNING"  # SIGKILL gives the run no chance to mark itself
    assert 2 <= len(client.get_metric_history(killed.info.run_id, "val_acc")) < 5

    resumed = run_cli(*args, "--experiment", "killed", "--ckpt_path", "last", timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming run {killed.info.run_id}" in resumed.stdout + resumed.stderr
    reference = run_cli(*args, "--experiment", "reference", timeout=900)
    assert reference.returncode == 0, reference.stderr[-3000:]

    (run,), (ref,) = runs_of(client, "killed"), runs_of(client, "reference")
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    for key in ("train_loss", "val_loss", "val_acc"):
        expected = dict(_history(client, ref.info.run_id, key))
        assert sorted(expected) == [0, 1, 2, 3, 4], key
        history = _history(client, run.info.run_id, key)
        assert {step for step, _ in history} == set(expected), key
        for step, value in history:  # a repeated epoch repeats its value exactly
            assert value == expected[step], (key, step)
    assert run.data.metrics["test_acc"] == ref.data.metrics["test_acc"]


@pytest.mark.slow
def test_four_concurrent_fits_on_one_sqlite_store(client):
    """Four processes start at once against a fresh store: all runs and metric rows land."""
    args = ["-m", "lit_nn", "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "together",
            "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "5", *QUIET]
    procs = [subprocess.Popen([sys.executable, *args, "--run_name", f"p{i}"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    runs = runs_of(client, "together")
    assert sorted(r.info.run_name for r in runs) == ["p0", "p1", "p2", "p3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in ("train_loss", "val_acc"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1, 2], key
        assert "test_acc" in run.data.metrics


@pytest.mark.slow
def test_ctrl_c_marks_the_run_killed(client, tracking_store):
    db = Path(tracking_store.removeprefix("sqlite:///"))
    proc = subprocess.Popen([sys.executable, "-m", "lit_nn", "fit", "-c", "experiments/mnist_mlp.yaml",
                             "--experiment", "interrupted", "--trainer.max_epochs", "50", *QUIET],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_foreground_job)
    deadline = time.time() + 300
    while _rows(db) < 1:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:] if proc.poll() else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    (run,) = runs_of(client, "interrupted")
    assert run.info.status == "KILLED", err[-2000:]
    assert run.data.tags["failure_reason"] == "interrupted (Ctrl-C)"  # never KILLED without a reason
