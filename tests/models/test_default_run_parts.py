"""The pieces the default run (experiments/mnist_cnn.yaml) is built from: the one-cycle schedule,
batch-level affine augmentation and the CNN's batch norm."""

from __future__ import annotations

import pytest
import torch

from lit_nn.core.errors import UserError
from lit_nn.data.images import ImageDataModule, random_affine
from lit_nn.models.cnn import CNN
from lit_nn.models.optimizers import lr_factor


def test_onecycle_rises_over_a_quarter_then_anneals_to_zero() -> None:
    f = lr_factor("onecycle", warmup_steps=0, total_steps=100)
    assert f(0) == pytest.approx(0.04)
    assert f(25) == pytest.approx(1.0)
    assert f(12) < f(20) < f(25)
    assert f(25) > f(60) > f(90) > f(100) == pytest.approx(0.0)
    assert lr_factor("onecycle", warmup_steps=10, total_steps=100)(10) == pytest.approx(1.0)


def test_random_affine_is_the_identity_at_zero_and_seeded_otherwise() -> None:
    x = torch.randn(6, 1, 28, 28)
    assert torch.allclose(random_affine(x, 0, 0.0, 0.0), x, atol=1e-4)
    torch.manual_seed(3)
    a = random_affine(x, 2, 10.0, 0.1)
    torch.manual_seed(3)
    b = random_affine(x, 2, 10.0, 0.1)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    background = torch.full((1, 1, 28, 28), -0.5)
    background[..., 10:18, 10:18] = 2.0
    moved = random_affine(background, 2, 15.0, 0.1)
    assert moved.amin() >= -0.5 - 1e-5  # uncovered pixels get the background, not zero


def test_image_data_checks_the_augmentation_settings() -> None:
    with pytest.raises(UserError, match="data.scale"):
        ImageDataModule(scale=1.5)
    with pytest.raises(UserError, match="data.rotate"):
        ImageDataModule(rotate=-1.0)


def test_cnn_batch_norm_after_each_convolution() -> None:
    model = CNN(batch_norm=True)
    norms = [m for m in model.net if isinstance(m, torch.nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [16, 32]
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in CNN().net)
