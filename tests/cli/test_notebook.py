"""``import lit_nn`` in a notebook: fit, sweep and report as functions, on the CLI's own path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lit_nn
from lit_nn.cli.notebook import as_options
from lit_nn.core.errors import UserError

TINY = {"model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1, "hidden": 16}},
        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
        "trainer": {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 1, "limit_test_batches": 1,
                    "enable_progress_bar": False},
        "log_checkpoint": False, "log_model": False}


def test_keywords_become_the_command_lines_options():
    assert as_options({"trainer__max_epochs": 2, "model.hidden": [128, 64], "log_model": False,
                       "register": None}) == ["--trainer.max_epochs=2", "--model.hidden=[128, 64]",
                                              "--log_model=false", "--register=null"]


def test_import_is_light_and_lists_the_api():
    code = "import sys, lit_nn; print(sorted(lit_nn.__all__), 'torch' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['fit', 'report', 'sweep'] False False"
    with pytest.raises(AttributeError):
        lit_nn.train  # noqa: B018 - not part of the API


def test_fit_returns_the_run_and_the_metrics_mlflow_holds(client):
    result = lit_nn.fit(TINY, model__optimizer="sgd", model__lr=0.05, experiment="notebook")
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["model.optimizer"] == "sgd"
    assert run.data.params["model.lr"] == "0.05"
    assert result.metrics["test_acc"] == pytest.approx(run.data.metrics["test_acc"])
    assert 0.0 <= result.metrics["test_acc"] <= 1.0


def test_a_mistake_raises_the_clis_sentence_instead_of_exiting():
    with pytest.raises(UserError, match="model: Option 'optimiser' is not accepted \\(did you mean 'optimizer'\\?\\)"):
        lit_nn.fit(TINY, model__optimiser="sgd")
    with pytest.raises(UserError, match="unknown optimizer 'adamm'"):
        lit_nn.fit(TINY, model__optimizer="adamm")


def test_sweep_runs_and_returns_the_report(tmp_path: Path, client):
    sweep_file = tmp_path / "nb.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "nb", "config": TINY, "grid": {"model.init_args.depth": [0, 1]},
                                          "seeds": [0]}))
    report = lit_nn.sweep(sweep_file, trainer__max_epochs=1, out=tmp_path / "out")
    assert report.markdown_path == tmp_path / "out" / "report.md"
    assert [row.group for row in report.rows] == ["0", "1"] and all(row.runs == 1 for row in report.rows)
    assert report.ui and "viewStateShareKey=lit-nn-nb" in report.ui
    again = lit_nn.report("nb", out=tmp_path / "again")
    assert [(r.group, r.runs) for r in again.rows] == [(r.group, r.runs) for r in report.rows]
