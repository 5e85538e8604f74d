"""Device-resident data and the deferred finite check: what the GPU path relies on, checked on
the CPU (tests/gpu runs the real thing where CUDA is)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_nn.data.images import ImageDataModule
from lit_nn.models import MLP
from lit_nn.models.base import DivergedError


def test_cpu_splits_are_used_as_they_are():
    dm = ImageDataModule(batch_size=32)
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    assert dm.resident(x, y)[0] is x  # no trainer: nothing to move
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert all(a is b for a, b in zip(dm.resident(x, y), (x, y), strict=True))


def test_device_copies_are_made_once_and_reused():
    dm = ImageDataModule(batch_size=32)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    x = torch.zeros(4, 1, 28, 28)
    (first,) = dm.resident(x)
    (again,) = dm.resident(x)
    assert first.device.type == "meta" and first is again


def diverging_model(every_step: bool) -> MLP:
    model = MLP(depth=0)
    model.check_finite_every_step = every_step
    return model


def test_the_deferred_check_fails_at_the_interval_with_the_steps_between():
    model = diverging_model(every_step=False)
    model._trainer = SimpleNamespace(log_every_n_steps=4, current_epoch=0, global_step=0)
    finite, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    model.check_finite(finite, 0)
    model.check_finite(nan, 1)  # no sync yet: nothing raised
    model.check_finite(finite, 2)
    with pytest.raises(DivergedError, match="NaN or infinite at epoch 0, between steps 0 and 0"):
        model.check_finite(finite, 3)
    model.check_finite(finite, 0)
    model.raise_if_diverged()  # a clean interval passes


def test_the_per_step_check_names_the_value():
    with pytest.raises(DivergedError, match="loss is nan"):
        diverging_model(every_step=True).check_finite(torch.tensor(float("nan")), 0)
