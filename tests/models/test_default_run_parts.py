"""The pieces the default run (experiments/mnist_cnn.yaml) is built from: the one-cycle schedule,
batch-level affine augmentation and the CNN's batch norm."""

from __future__ import annotations

import pytest
import torch

from lit_nn.core.errors import UserError
from lit_nn.data.images import ImageDataModule, elastic_field, random_affine
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


def test_cnn_label_smoothing_changes_the_training_loss_only() -> None:
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    plain, smooth = CNN(), CNN(label_smoothing=0.1)
    assert smooth.hparams.label_smoothing == 0.1
    assert plain.training_loss(logits, y) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    expected = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert smooth.training_loss(logits, y) == pytest.approx(float(expected))
    with pytest.raises(UserError, match="model.label_smoothing"):
        CNN(label_smoothing=1.0)


def test_cnn_ema_validates_and_saves_the_averaged_weights(tmp_path) -> None:
    """ema_decay adds Lightning's EMAWeightAveraging; best/last checkpoints hold the averaged weights and
    reload with the options, as ``lit-nn test --ckpt_path`` and ``predict`` load them."""
    import lightning as L
    from lightning.pytorch.callbacks import EMAWeightAveraging
    from torch.utils.data import DataLoader, TensorDataset

    assert CNN().configure_callbacks() == []
    with pytest.raises(UserError, match="model.ema_decay"):
        CNN(ema_decay=1.0)
    L.seed_everything(0, verbose=False)
    model = CNN(channels=(4, 8), fc=(16, 8), ema_decay=0.5, label_smoothing=0.1, dropout=0.25)
    assert [type(c) for c in model.configure_callbacks()] == [EMAWeightAveraging]
    data = TensorDataset(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(tmp_path, "last")])
    start = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    (callback,) = [c for c in trainer.callbacks if isinstance(c, EMAWeightAveraging)]
    averaged = callback._average_model.module  # the EMA, copied into the model when fit ends
    for p, a in zip(model.parameters(), averaged.parameters(), strict=True):
        assert torch.equal(p, a)
    assert any(not torch.equal(p, s) for p, s in zip(model.parameters(), start, strict=True))
    loaded = CNN.load_from_checkpoint(tmp_path / "last.ckpt", map_location="cpu")
    assert loaded.hparams.ema_decay == 0.5 and loaded.hparams.label_smoothing == 0.1
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(loaded.eval()(x), model.eval()(x), atol=1e-6)


def test_elastic_distortion_is_smooth_seeded_and_off_at_zero() -> None:
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(1)
    plain = random_affine(x, 2, 10.0, 0.1)
    torch.manual_seed(1)
    assert torch.equal(random_affine(x, 2, 10.0, 0.1, elastic=0.0), plain)
    torch.manual_seed(1)
    a = random_affine(x, 0, 0.0, 0.0, elastic=2.0)
    torch.manual_seed(1)
    assert torch.equal(random_affine(x, 0, 0.0, 0.0, elastic=2.0), a) and not torch.allclose(a, x, atol=1e-3)
    field = elastic_field(3, 28, 28, 2.0, 4, x) * 14  # in pixels
    assert field.shape == (3, 28, 28, 2) and 0.1 < field.abs().mean() < 2.5
    assert (field[:, 1:] - field[:, :-1]).abs().max() < 1.0  # neighbours move alike: smooth, not noise
    with pytest.raises(UserError, match="data.elastic"):
        ImageDataModule(elastic=-1.0)


def test_cnn_tta_averages_the_softmax_of_five_shifted_views_outside_training_only() -> None:
    torch.manual_seed(0)
    model = CNN(channels=(4, 8), fc=(16, 8), tta=True)
    plain = CNN(channels=(4, 8), fc=(16, 8))
    plain.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    model.train(), plain.train()
    assert torch.equal(model(x), plain(x))  # training sees one view
    model.eval(), plain.eval()
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    views = [x, padded[..., 0:28, 1:29], padded[..., 2:30, 1:29], padded[..., 1:29, 0:28], padded[..., 1:29, 2:30]]
    expected = torch.stack([plain(v).softmax(dim=1) for v in views]).mean(dim=0)
    assert torch.allclose(model(x).exp(), expected, atol=1e-6)
    assert not torch.allclose(expected, plain(x).softmax(dim=1), atol=1e-4)  # the shifts change the answer
