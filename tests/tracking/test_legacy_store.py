"""A store written by lit-nn before the consolidation (tests/fixtures/legacy/store) still lists,
reports, resumes its killed run and skips its finished sweep points."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers import REPO, run_main

LEGACY = REPO / "tests" / "fixtures" / "legacy"
PLACEHOLDER = "/LEGACY_STORE"
KILLED = "2d2dbe400d624f6086fe08482c31e15f"
TINY_MLP = ["-c", "experiments/mnist_mlp.yaml", "--experiment", "legacy", "--model.init_args.hidden", "16",
            "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2",
            "--log_checkpoint", "false", "--trainer.enable_progress_bar", "false"]


@pytest.fixture
def legacy_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The legacy store copied to a temporary folder, its artifact locations pointed there.

    The dump is at the schema of the MLflow that wrote it (3.17, revision dc11669786a5); an older
    MLflow (``make test-oldest``, at the floor in pyproject.toml) refuses any store from a newer
    release ("out-of-date database schema"), so there these tests skip, saying so."""
    import mlflow
    import mlflow.store.db_migrations as migrations

    dump = (LEGACY / "store" / "mlflow.sql").read_text()
    revision = re.search(r"""INSERT INTO "alembic_version" VALUES\('(\w+)'\)""", dump).group(1)
    if not any((Path(migrations.__file__).parent / "versions").glob(f"{revision}_*.py")):
        pytest.skip(f"the legacy store's schema ({revision}) is newer than MLflow {mlflow.__version__} knows")
    store = tmp_path / "legacy-mlruns"
    shutil.copytree(LEGACY / "store", store, ignore=shutil.ignore_patterns("mlflow.sql"))
    with sqlite3.connect(store / "mlflow.db") as db:  # the database, rebuilt from its SQL dump
        db.executescript(dump)
        db.execute("update experiments set artifact_location = replace(artifact_location, ?, ?)",
                   (PLACEHOLDER, str(store)))
        db.execute("update runs set artifact_uri = replace(artifact_uri, ?, ?)", (PLACEHOLDER, str(store)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    return store


def test_the_legacy_store_lists(legacy_store: Path, capsys):
    result = run_main(capsys, "runs", "--experiment", "legacy")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 5
    by_name = {line.split()[2]: line for line in lines[1:]}
    assert set(by_name) == {"finished", "killed", "tiny_sweep", "depth=0-s0", "depth=1-s0"}
    assert "KILLED" in by_name["killed"] and "FINISHED" in by_name["finished"]
    assert "sweep parent of 'tiny_sweep'" in by_name["tiny_sweep"]


def test_the_legacy_sweep_reports_and_its_finished_points_are_skipped(legacy_store: Path, tmp_path: Path, capsys):
    sweep = str(LEGACY / "tiny_sweep.yaml")
    report = run_main(capsys, "compare", sweep, "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    rows = [line for line in report.stdout.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2 and (tmp_path / "report" / "curves.png").is_file()
    dry = run_main(capsys, "sweep", sweep, "--dry_run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("skip") == 2 and "0 of 2 point(s) would run" in dry.stdout
    again = run_main(capsys, "sweep", sweep, "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert "ran 0 point(s)" in again.stdout and "skipped 2 finished" in again.stdout


def test_checkpoints_file_the_best_checkpoints_state_where_the_legacy_ones_did():
    """Lightning files a callback's state (best score, best path) under a key made of its class name
    and settings; a resumed run finds its best only if RunCheckpoint's key has not changed."""
    import torch

    from lit_nn.models import MLP
    from lit_nn.tracking.callbacks import RunCheckpoint

    legacy = torch.load(LEGACY / "store" / "checkpoints" / KILLED / "last.ckpt", map_location="cpu", weights_only=True)
    assert RunCheckpoint(MLP()).state_key in legacy["callbacks"]


def test_the_legacy_killed_run_resumes_to_the_end(legacy_store: Path, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{legacy_store}/mlflow.db")
    assert client.get_run(KILLED).info.status == "KILLED"
    result = run_main(capsys, "fit", *TINY_MLP, "--trainer.max_epochs", "45", "--resume", KILLED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming run {KILLED}" in result.stdout + result.stderr
    run = client.get_run(KILLED)
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    steps = sorted({m.step for m in client.get_metric_history(KILLED, "val_acc")})
    assert steps == list(range(45))  # the old epochs 0-41 (checkpoint at 33) and the resumed 34-44, no gap
    assert 0.0 < run.data.metrics["test_acc"] <= 1.0
