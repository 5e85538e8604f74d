"""The lab harness: MLflow run lifecycle (lab_run) and the ``lit-nn lab`` command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from lit_nn import cli
from lit_nn.cli.lab_command import lab_parser
from lit_nn.cli.lab_command import run_lab_command as lab_main
from lit_nn.compat.jsonargparse import parser_actions, subcommand_parsers
from lit_nn.core.errors import UserError
from lit_nn.lab import LABS
from lit_nn.lab.recording import lab_run, limited_threads
from lit_nn.tracking.figures import plt

from conftest import runs_of
from helpers import assert_clean_error, run_cli


def test_lab_run_statuses_params_metrics_figure_and_text(client, tmp_path):
    """One store for the three endings (a fresh MLflow store costs seconds): FINISHED, FAILED, KILLED."""
    with lab_run("demo", {"steps": 3, "start": None}) as rec:
        rec.log_metrics({"a": 1.5}, step=2)
        rec.log_history({"curve": [(0, 3.0), (1, 2.0), (2, 1.0)]})
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        rec.log_figure(fig, "plot.png")
        rec.log_text("hello", "summary.txt")
    assert not plt.get_fignums(), "log_figure must close the figure"
    with pytest.raises(ZeroDivisionError), lab_run("boom"):
        1 / 0  # noqa: B018
    with pytest.raises(KeyboardInterrupt), lab_run("stopped"):
        raise KeyboardInterrupt

    done, failed, killed = runs_of(client, "lab")
    assert done.info.run_name == "demo" and done.info.status == "FINISHED"
    assert done.data.params == {"steps": "3", "start": "none"}
    assert done.data.metrics == {"a": 1.5, "curve": 1.0}
    assert [m.value for m in client.get_metric_history(done.info.run_id, "curve")] == [3.0, 2.0, 1.0]
    assert done.data.tags["lab"] == "demo" and done.data.tags["pid"]
    png = client.download_artifacts(done.info.run_id, "plot.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert open(client.download_artifacts(done.info.run_id, "summary.txt", str(tmp_path))).read() == "hello"

    assert failed.info.run_name == "boom" and failed.info.status == "FAILED"
    assert "ZeroDivisionError" in failed.data.tags["failure_reason"]
    assert killed.info.run_name == "stopped" and killed.info.status == "KILLED"
    assert "interrupted" in killed.data.tags["failure_reason"]


def test_limited_threads_restores_torch_threads():
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_every_lab_option_is_documented():
    subparsers = subcommand_parsers(lab_parser())
    assert set(subparsers) == {*LABS, "all"}
    for name in LABS:
        sub = subparsers[name]
        options = [a for a in parser_actions(sub) if a.option_strings and a.dest != "help"]
        assert options, name
        help_text = sub.format_help()
        for action in options:
            assert action.help, f"{name} {action.option_strings} has no help"
            assert action.option_strings[0] in help_text


def lab_experiment_exists(uri: str) -> bool:
    """Read the SQLite store directly: asking MLflow would first build a whole new store."""
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return False
    with sqlite3.connect(path) as db:
        return bool(db.execute("SELECT 1 FROM experiments WHERE name = 'lab'").fetchall())


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["gatez"], ["unknown lab 'gatez'", "did you mean 'gates'", "trajectories", "scratch", "all"]),
        (["trajectories", "--steps", "0"], ["steps must be > 0, got 0"]),
        (["trajectories", "--lr", "-0.1"], ["lr must be > 0, got -0.1"]),
        (["trajectories", "--optimizers", "adamm"], ["unknown optimizer 'adamm'", "adadelta"]),
        (["trajectories", "--functions", "saddle"], ["unknown function 'saddle'", "round, stretched"]),
        (["trajectories", "--steps", "many"], ["lit-nn lab trajectories: steps: Expected int. Got value: many"]),
        (["gates", "--epochs", "-5"], ["epochs must be > 0, got -5"]),
        (["activations", "--layers", "0"], ["layers must be > 0"]),
        (["losses", "--optimizer", "lbfgs"], ["unknown optimizer 'lbfgs'", "adamw"]),
        (["scratch", "--test-fraction", "1.5"], ["test_fraction must be in [0, 1), got 1.5"]),
        (["scratch", "--bogus"], ["unknown option '--bogus' for lit-nn lab scratch", "--help"]),
        (["scratch", "--epoch", "3"], ["unknown option '--epoch'", "did you mean '--epochs'"]),
    ],
)
def test_bad_input_is_one_clear_error_and_no_run(argv, fragments, tracking_store, capsys):
    with pytest.raises(UserError):
        lab_main(argv)
    with pytest.raises(SystemExit) as exit_info:  # the real dispatch: lit-nn lab ...
        cli.main(["lab", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    assert not lab_experiment_exists(tracking_store), "bad input must not create a run"


def test_no_lab_prints_the_list(capsys):
    lab_main([])
    out = capsys.readouterr().out
    assert all(name in out for name in [*LABS, "all"])


@pytest.mark.slow
def test_cli_subprocess_runs_a_lab_and_reports_errors(client):
    ok = run_cli("lab", "trajectories", "--steps", "5", "--functions", "round", "--optimizers", "sgd", "adam")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "final distance" in ok.stdout and "MLflow run" in ok.stdout
    (run,) = runs_of(client, "lab")
    assert run.info.status == "FINISHED" and run.info.run_name == "trajectories"
    assert_clean_error(run_cli("lab", "trajectorys"), "unknown lab", "did you mean 'trajectories'")


@pytest.mark.slow
def test_lab_all_runs_every_lab_with_its_figures(client):
    result = run_cli("lab", "all", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(client, "lab")
    assert [r.info.run_name for r in runs] == list(LABS)
    for run in runs:
        assert run.info.status == "FINISHED"
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert any(path.endswith(".png") for path in artifacts), (run.info.run_name, artifacts)
        assert "summary.txt" in artifacts
