"""The progress bar feeds Lightning's Rich bar a few times a second, and still ends each loop exact."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_nn.cli import progress
from lit_nn.cli.progress import ProgressBar
from lit_nn.models import MLP


class StepClock:
    """The bar's clock, advanced 10 ms each time the bar reads it (once per batch): the test does
    not depend on how fast this machine trains."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.010
        return self.now


@pytest.fixture(autouse=True)
def step_clock(monkeypatch: pytest.MonkeyPatch) -> StepClock:
    clock = StepClock()
    monkeypatch.setattr(progress, "time", clock)
    return clock


def _fit_with_bar(bar: ProgressBar, steps: int) -> list[tuple[object, float]]:
    updates: list[tuple[object, float]] = []
    original = bar._update

    def record(task_id, current, *args, **kwargs):  # Lightning 2.6.1 added a `hard` argument
        updates.append((task_id, current))
        original(task_id, current, *args, **kwargs)

    bar._update = record
    x, y = torch.randn(steps * 4, 1, 28, 28), torch.randint(0, 10, (steps * 4,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[bar])
    torch.manual_seed(0)
    trainer.fit(MLP(depth=0), loader)
    return updates


def test_bar_is_fed_less_often_but_ends_every_epoch_at_the_total() -> None:
    with open(os.devnull, "w") as devnull:
        bar = ProgressBar(refresh_rate=20, console_kwargs={"force_terminal": True, "file": devnull})
        steps = 60
        updates = _fit_with_bar(bar, steps)
    train = [current for _, current in updates if current <= steps]
    ends = [i for i, current in enumerate(train) if current == steps]
    assert len(ends) == 2, train  # both epochs end at exactly 60/60
    # 10 ms a batch against a 50 ms interval: about every fifth of the 120 batches, and each epoch's last
    assert 2 * steps / 5 - 2 <= len(train) <= 2 * steps / 5 + 2, train


def test_zero_interval_feeds_every_batch() -> None:
    """With an interval shorter than a step every batch gets through: the throttle drops nothing else."""
    with open(os.devnull, "w") as devnull:
        bar = ProgressBar(refresh_rate=10_000, console_kwargs={"force_terminal": True, "file": devnull})
        updates = _fit_with_bar(bar, 20)
    assert [current for _, current in updates] == [*range(1, 21), *range(1, 21)]
