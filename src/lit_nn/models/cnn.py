"""The classic two-convolution CNN for 28×28 images."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from lit_nn.core.errors import UserError, check_fraction, check_positive
from lit_nn.models.base import Classifier, attached_trainer


class CNN(Classifier):
    """Conv(1→c1, 3×3) → ReLU → MaxPool 2 → Conv(c1→c2, 3×3) → ReLU → MaxPool 2
    → Linear(c2·5·5→fc1) → ReLU → Linear(fc1→fc2) → ReLU → Linear(fc2→classes).

    Args:
        channels: output channels of the two convolutions (default 16, 32).
        fc: widths of the two hidden fully connected layers (default 128, 64).
        dropout: dropout before the first fully connected layer (0 disables it).
        batch_norm: batch normalization after each convolution, before its ReLU.
        label_smoothing: the training loss's label smoothing (``nn.CrossEntropyLoss``'s; 0 disables it).
        ema_decay: keep an exponential moving average of the weights, updated every step with this decay
            (Lightning's ``EMAWeightAveraging``); validation, checkpoints and the model after fit use the
            averaged weights (0 disables it).
        tta: test-time augmentation: outside training, predict from the mean of the softmax over the
            image and its four 1-pixel shifts (5 forward passes per image in validation, test and predict).
        num_classes: number of output classes.
        **optim_args: optimizer, lr, weight_decay, momentum, nesterov (see :class:`LitModel`).
    """

    kind = "cnn"

    def __init__(
        self,
        channels: tuple[int, int] = (16, 32),
        fc: tuple[int, int] = (128, 64),
        dropout: float = 0.0,
        batch_norm: bool = False,
        label_smoothing: float = 0.0,
        ema_decay: float = 0.0,
        tta: bool = False,
        num_classes: int = 10,
        **optim_args: Any,
    ) -> None:
        super().__init__(num_classes, **optim_args)
        for name, value in (("model.channels", channels), ("model.fc", fc)):
            if len(value) != 2:
                raise UserError(f"{name} takes two sizes, got {list(value)}")
            for v in value:
                check_positive(name, v)
        check_fraction("model.dropout", dropout)
        check_fraction("model.label_smoothing", label_smoothing)
        if not 0 <= ema_decay < 1:
            raise UserError(f"model.ema_decay takes a decay in [0, 1) (0.99: the last ~100 steps weigh most), "
                            f"got {ema_decay}")
        c1, c2 = channels

        def norm(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batch_norm else []

        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, bias=not batch_norm), *norm(c1), nn.ReLU(), nn.MaxPool2d(2),   # 28 → 26 → 13
            nn.Conv2d(c1, c2, 3, bias=not batch_norm), *norm(c2), nn.ReLU(), nn.MaxPool2d(2),  # 13 → 11 → 5
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * 5 * 5, fc[0]), nn.ReLU(),
            nn.Linear(fc[0], fc[1]), nn.ReLU(),
            nn.Linear(fc[1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; with ``tta`` outside training, the log of the softmax averaged over the shifted views
        (so ``softmax``, ``argmax`` and the cross-entropy of the output read that average)."""
        if self.training or not self.hparams.tta:
            return self.net(x)
        height, width = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # the border repeats: background stays background
        views = [padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
                 for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))]
        # one pass over the five views stacked as one batch (outside training every layer is per-image)
        log_probs = self.net(torch.cat(views)).log_softmax(dim=1).unflatten(0, (len(views), x.shape[0]))
        return log_probs.logsumexp(dim=0) - math.log(len(views))

    def training_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    def configure_callbacks(self) -> list[Callback]:
        """The weight averaging when ``ema_decay`` is set (Lightning adds a model's callbacks to the Trainer's),
        in fit only: a checkpoint already holds the averaged weights for test and predict."""
        trainer = attached_trainer(self)
        fitting = trainer is None or trainer.state.fn == TrainerFn.FITTING
        if not self.hparams.ema_decay or not fitting:
            return []
        return [EMAWeightAveraging(decay=self.hparams.ema_decay)]
