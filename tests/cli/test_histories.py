"""The same seeds give bit-identical per-epoch metrics to the lit-nn that wrote
tests/fixtures/legacy/histories.json (before the consolidation), on CPU.

Compared with ==, no tolerance: every op here is deterministic on a CPU with a fixed thread count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, metric_history, run_cli

NEW = {"best_val_acc", "best_val_loss", "best_epoch"}  # metrics added since the fixture was written
HISTORIES = json.loads((REPO / "tests" / "fixtures" / "legacy" / "histories.json").read_text())


def fit(tracking_store: str, experiment: str, *args: str) -> dict[str, list[list[float]]]:
    result = run_cli("fit", *args, "--experiment", experiment, "--trainer.enable_progress_bar", "false",
                     env={"PYTHONHASHSEED": "0"}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return metric_history(Path(tracking_store.removeprefix("sqlite:///")), experiment)


# the recorded default run predates the one-cycle schedule and affine augmentation (2026-11-30):
# these options make today's mnist_cnn.yaml the recorded run again
RECORDED_DEFAULT = ["-c", "experiments/mnist_cnn.yaml", "--model.init_args.lr", "0.002",
                    "--model.init_args.lr_schedule", "constant", "--data.init_args.rotate", "0",
                    "--data.init_args.scale", "0", "--trainer.max_epochs", "15"]


def test_default_run_first_epochs_are_bit_identical(tracking_store: str):
    got = fit(tracking_store, "default", *RECORDED_DEFAULT, "--trainer.max_epochs", "2", "--test_after_fit", "false")
    want = HISTORIES["default_make_train"]
    assert set(got) == {"train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "best_epoch"}
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert got[key] == want[key][:2], key


@pytest.mark.slow
def test_default_run_is_bit_identical(tracking_store: str):
    got = fit(tracking_store, "default", *RECORDED_DEFAULT)
    assert {k: v for k, v in got.items() if k not in NEW} == HISTORIES["default_make_train"]


def test_short_char_rnn_run_is_bit_identical(tracking_store: str):
    recorded = HISTORIES["char_rnn_short"]
    got = fit(tracking_store, "char", "-c", "experiments/char_rnn.yaml", *recorded["args"])
    assert {k: v for k, v in got.items() if k not in NEW} == recorded["metrics"]
    best = min(got["val_loss"], key=lambda row: row[1])
    assert got["best_val_loss"] == [[best[0], best[1]]] and got["best_epoch"] == [[best[0], best[0]]]
