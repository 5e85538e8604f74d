"""Writable before working (issue 29 item 6): every folder a command will write is tried before it
trains or creates a run; a read-only one is one sentence, a non-zero exit, and no run at all.

Before: a sweep started in a read-only folder trained its points, then failed with
``OSError: Read-only file system: 'reports'`` (the work done, the report lost).

Root ignores mode bits, so a folder is made read-only by a read-only bind mount (as root; the
kernel refuses every write: "Read-only file system"), else ``chattr +i`` (root), else by its mode
(any other user); where none of them holds, the tests that need one are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lit_nn.core.writable import unwritable_reason

from helpers import REPO, assert_clean_error, run_main

MLP = ["fit", "-c", "experiments/mnist_mlp.yaml"]
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--log_model", "false"]


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _try(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], Path]]:
    """``read_only(folder)`` makes ``folder`` (created if missing) unwritable for this process and its
    children, as it was for the learner; undone at the end of the test."""
    undo: list[tuple[str, ...]] = []
    modes: list[Path] = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o555)
            modes.append(folder)
        elif _try("mount", "--bind", str(folder), str(folder)):
            undo.append(("umount", str(folder)))
            _try("mount", "-o", "remount,bind,ro", str(folder))
        elif _try("chattr", "+i", str(folder)):
            undo.append(("chattr", "-i", str(folder)))
        if _writable(folder):
            pytest.skip("cannot make a read-only folder here: as root this needs a bind mount (CAP_SYS_ADMIN) "
                        "or chattr +i (CAP_LINUX_IMMUTABLE on ext4/xfs), and neither worked")
        return folder

    yield make
    for command in reversed(undo):
        if not _try(*command) and command[0] == "umount":
            _try("umount", "--lazy", command[1])  # still in use (a process's cwd): detach it now, gone when free
    for folder in modes:
        folder.chmod(0o755)


def no_runs(tracking_store: str) -> None:
    """Nothing was recorded: no run in any experiment of the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_store)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs == [], [(r.info.run_name, r.info.status) for r in runs]


def test_the_probe_judges_a_folder_without_creating_it(tmp_path, read_only):
    assert unwritable_reason(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists(), "checking a folder must not create it"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert unwritable_reason(blocker / "reports") == f"{blocker} is not a folder"
    locked = read_only(tmp_path / "locked")
    assert unwritable_reason(locked / "reports") in ("Read-only file system", "Permission denied",
                                                     "Operation not permitted")
    assert unwritable_reason(locked / "store", create=True) is not None
    assert not list(tmp_path.glob("**/.write-test*")), "the probe leaves nothing behind"


def test_a_sweep_in_a_read_only_folder_stops_before_its_first_run(tmp_path, monkeypatch, capsys, read_only,
                                                                  tracking_store):
    """The issue's case: the sweep would have trained its points and lost the report."""
    sweep = str(REPO / "experiments" / "compare_depth.yaml")
    folder = read_only(tmp_path / "read-only-cwd")
    with monkeypatch.context() as patch:  # left before the folder is made writable again
        patch.chdir(folder)
        result = run_main(capsys, "sweep", sweep, *TINY)
        assert_clean_error(result, "cannot write the sweep's folder for its logs and report reports/compare_depth",
                           "--out FOLDER")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        result = run_main(capsys, "sweep", sweep, "--out", "reports-elsewhere", *TINY)
        assert_clean_error(result, "reports-elsewhere")
    no_runs(tracking_store)


def test_fit_with_a_read_only_checkpoint_folder_stops_before_its_run(tmp_path, capsys, read_only, tracking_store):
    read_only(Path(tracking_store.removeprefix("sqlite:///")).parent / "checkpoints")
    assert_clean_error(run_main(capsys, *MLP, *TINY), "cannot write the checkpoint folder", "MLFLOW_TRACKING_URI")
    no_runs(tracking_store)


def test_predict_with_a_read_only_output_stops_before_its_run(tmp_path, capsys, read_only, tracking_store):
    """predictions.csv goes to the run's artifacts: their folder is predict's output."""
    read_only(Path(tracking_store.removeprefix("sqlite:///")).parent / "artifacts")
    result = run_main(capsys, "predict", "-c", "experiments/mnist_mlp.yaml", "--experiment", "guess",
                      "--trainer.enable_progress_bar", "false")
    assert_clean_error(result, "cannot write the artifact folder of experiment 'guess'", "artifacts/guess")
    no_runs(tracking_store)


def test_a_lab_with_read_only_artifacts_stops_before_its_run(tmp_path, capsys, read_only, tracking_store):
    read_only(Path(tracking_store.removeprefix("sqlite:///")).parent / "artifacts")
    assert_clean_error(run_main(capsys, "lab", "gates", "--epochs", "5"),
                       "cannot write the artifact folder of experiment 'lab'")
    no_runs(tracking_store)


def test_compare_into_a_read_only_folder_stops_before_reading(tmp_path, capsys, read_only, client):
    from lit_nn.tracking.lifecycle import RunStatus, end_run

    experiment = client.create_experiment("opts")
    run = client.create_run(experiment, tags={"optimizer": "adam"}).info.run_id
    client.log_metric(run, "val_acc", 0.5, step=0)
    end_run(client, run, RunStatus.FINISHED)
    out = read_only(tmp_path / "locked") / "report"
    result = run_main(capsys, "compare", "--experiment", "opts", "--group_by", "optimizer", "--out", str(out))
    assert_clean_error(result, f"cannot write the report folder {out}", "--out FOLDER")
    assert not out.exists()


def test_a_read_only_store_folder_is_one_sentence(tmp_path, monkeypatch, capsys, read_only):
    store = read_only(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    assert_clean_error(run_main(capsys, "runs"), f"cannot write the MLflow store in {store}", "MLFLOW_TRACKING_URI")


@pytest.mark.slow
def test_the_console_script_refuses_before_training(tmp_path, read_only, tracking_store):
    """The real ``lit-nn fit`` process: the sentence, status 2, no traceback, no run."""
    read_only(Path(tracking_store.removeprefix("sqlite:///")).parent / "checkpoints")
    result = subprocess.run([sys.executable, "-m", "lit_nn", *MLP, *TINY], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert_clean_error(result, "error: cannot write the checkpoint folder")
    assert "Epoch" not in result.stdout + result.stderr, "it trained before refusing"
    no_runs(tracking_store)
