"""First contact: commands start fast, end with their result and nothing after it, and every
tracking-store or budget mistake is one sentence with no run left behind."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, assert_clean_error, run_cli, run_main

TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false"]
NOISE = ("nanobind", "leaked", "Tip:", "TPU available", "GPU available", "Creating initial MLflow database")


def test_a_run_ends_with_its_result_and_nothing_else(tracking_store):
    fit = run_cli("fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "quiet", *TINY)
    assert fit.returncode == 0, fit.stderr[-3000:]
    runs = run_cli("runs")
    assert runs.returncode == 0, runs.stderr
    for result in (fit, runs):
        for line in (result.stdout + result.stderr).splitlines():
            assert not any(word in line for word in NOISE), line
    last = (fit.stdout + fit.stderr).strip().splitlines()[-1]
    assert last.startswith("mlflow: run ") and "mlflow ui --backend-store-uri" in last  # not the default store
    assert "quiet" in runs.stdout


def test_the_cli_entry_imports_no_training_or_tracking_library():
    code = ("import sys, lit_nn.cli, lit_nn.cli.commands; "
            "print(sorted(m for m in ('lightning', 'torchmetrics', 'mlflow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_closing_line_points_at_a_tracking_server():
    from lit_nn.tracking.views import where_to_open

    assert where_to_open("http://team:5000/", "3", "abc") == "open it at http://team:5000/#/experiments/3/runs/abc"
    assert "make ui" in where_to_open(f"sqlite:///{Path('mlruns').resolve()}/mlflow.db", "3", "abc")


# -- tracking-store mistakes ---------------------------------------------------------------
def no_run_left(db: Path) -> None:
    if db.is_file():
        with sqlite3.connect(db) as con:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0


@pytest.mark.parametrize(("uri", "fragments"), [
    ("garbage://x", ["unknown scheme 'garbage'", "sqlite://", "postgresql://", "http://"]),
    ("http://127.0.0.1:9", ["tracking server at http://127.0.0.1:9 is not reachable", "Connection refused"]),
])
def test_a_store_that_cannot_be_used_is_one_sentence(uri, fragments, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for argv in (["runs"], ["fit", "-c", "experiments/mnist_mlp.yaml", *TINY]):
        result = run_cli(*argv, timeout=60)  # a guard against hanging, not a speed check
        assert_clean_error(result, *fragments)
        assert len(result.stderr.strip().splitlines()[-1:]) == 1


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@127.0.0.1:1/mlflow")
    result = run_main(capsys, "runs")
    assert_clean_error(result, "needs the PostgreSQL driver psycopg", "pip install 'lit-nn[postgres]'")


def test_postgresql_uris_mean_psycopg_3(monkeypatch):
    from lit_nn.tracking.store import resolve_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u:p@db/mlflow")
    assert resolve_tracking_uri() == "postgresql+psycopg://u:p@db/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://u:p@db/mlflow")
    assert resolve_tracking_uri() == "postgresql+psycopg://u:p@db/mlflow"


def test_a_store_folder_under_a_file_and_a_non_database_file(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlruns/mlflow.db")
    assert_clean_error(run_main(capsys, "runs"), f"cannot write the MLflow store in {blocker}/mlruns")
    garbage = tmp_path / "store" / "mlflow.db"
    garbage.parent.mkdir()
    garbage.write_text("these are my notes, not a database")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{garbage}")
    for argv in (["runs"], ["fit", "-c", "experiments/mnist_mlp.yaml", *TINY]):
        assert_clean_error(run_main(capsys, *argv), f"{garbage} is not an SQLite database")
    assert garbage.read_text() == "these are my notes, not a database"


def test_an_empty_experiment_name_is_refused(tracking_store, capsys):
    result = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", " ", *TINY)
    assert_clean_error(result, "the experiment name must not be empty")
    no_run_left(Path(tracking_store.removeprefix("sqlite:///")))


# -- budgets and sizes ---------------------------------------------------------------------
@pytest.mark.parametrize(("args", "fragments"), [
    (["--trainer.max_epochs", "0"], ["--trainer.max_epochs 0 trains nothing", "at least 1"]),
    (["--trainer.max_steps", "0"], ["--trainer.max_steps 0 trains nothing"]),
    (["--trainer.limit_train_batches", "0"], ["--trainer.limit_train_batches 0 trains nothing"]),
    (["--data.init_args.val_size", "5000"], ["data.val_size=5000 leaves no training images", "4,500",
                                             "at most 4,499"]),
    (["--trainer.precision", "17"], ["trainer.precision must be one of", "bf16-mixed", "32-true", "got '17'"]),
])
def test_a_budget_that_cannot_be_honoured_is_refused(args, fragments, tracking_store, capsys):
    result = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "budget", *args)
    assert_clean_error(result, *fragments)
    db = Path(tracking_store.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as con:  # nothing left RUNNING (a run refused at setup is FAILED with its reason)
        assert con.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0] == 0


def test_a_val_size_that_fits_the_embedded_sample_is_honoured():
    from lit_nn.data.images import ImageDataModule

    dm = ImageDataModule("mnist", val_size=900)
    dm.setup("fit")
    assert len(dm.splits["val"][1]) == 900 and len(dm.splits["train"][1]) == 3600


# -- small conventions ---------------------------------------------------------------------
def test_make_help_lists_the_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for target in ("train", "test", "test-slow", "ui", "bench", "compare-optimizers", "lab", "clean"):
        assert f"  {target} " in out, target


def test_the_license_matches_the_package_metadata():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    license_name = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert license_name == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
