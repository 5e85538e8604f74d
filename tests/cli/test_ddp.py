"""Multi-process DDP on CPU (gloo): sharding, one MLflow run, synchronized test metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import runs_of
from helpers import REPO, run_cli

pytestmark = pytest.mark.slow
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
       "--trainer.enable_progress_bar", "false"]


def test_rank_shards_are_disjoint_complete_and_reshuffled(tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, str(REPO / "tests/scripts/ddp_shards.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {(r, e): json.loads((tmp_path / f"rank{r}_epoch{e}.json").read_text()) for r in (0, 1) for e in (0, 1)}
    for epoch in (0, 1):
        a, b = seen[(0, epoch)], seen[(1, epoch)]
        assert len(a) == len(b) == 10
        assert set(a).isdisjoint(b) and set(a) | set(b) == set(range(20))
    assert seen[(0, 0)] != seen[(0, 1)]  # the seeded shuffle moves on with the epoch


def _single_process_test_acc(ckpt: Path, config: str, *extra: str) -> float:
    result = run_cli("test", "-c", config, "--ckpt_path", str(ckpt), "--experiment", "check",
                     "--trainer.enable_progress_bar", "false", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in (result.stdout + result.stderr).splitlines() if line.startswith("result:"))
    return float(line.split("test_acc=")[1].split(",")[0])


def test_ddp_fit_mlp_one_run_no_duplicates_and_synced_test(client):
    result = run_cli("fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "ddp",
                     "--trainer.max_epochs", "2", *DDP, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(client, "ddp")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [0, 1]
    params = client.get_run(run.info.run_id).data.params
    assert params["trainer.devices"] == "2" and params["trainer.strategy"] == "ddp"

    last = Path(run.data.tags["last_checkpoint"])
    assert last.is_file()
    single = _single_process_test_acc(last, "experiments/mnist_mlp.yaml")
    assert run.data.metrics["test_acc"] == pytest.approx(single, abs=1e-6)


def _result_value(result, key: str) -> float:
    line = next(line for line in (result.stdout + result.stderr).splitlines() if line.startswith("result:"))
    return float(line.split(f"{key}=")[1].split(",")[0])


def test_ddp_fit_char_rnn_one_run_and_synced_validation(client):
    small = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--model.init_args.hidden", "64"]
    result = run_cli("fit", "-c", "experiments/char_rnn.yaml", "--experiment", "ddp_rnn", *small, *DDP, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(client, "ddp_rnn")
    assert run.info.status == "FINISHED"
    for key in ("train_loss", "val_loss", "val_bpc"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0], key
    # the val metrics, averaged over two ranks' shards, equal one process evaluating the same weights
    single = run_cli("validate", "-c", "experiments/char_rnn.yaml", "--ckpt_path", run.data.tags["last_checkpoint"],
                     "--experiment", "check", "--model.init_args.hidden", "64",
                     "--trainer.enable_progress_bar", "false")
    assert single.returncode == 0, single.stderr[-3000:]
    assert run.data.metrics["val_loss"] == pytest.approx(_result_value(single, "val_loss"), abs=1e-4)
