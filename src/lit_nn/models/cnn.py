"""The classic two-convolution CNN for 28×28 images."""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_nn.core.errors import UserError, check_fraction, check_positive
from lit_nn.models.base import Classifier


class CNN(Classifier):
    """Conv(1→c1, 3×3) → ReLU → MaxPool 2 → Conv(c1→c2, 3×3) → ReLU → MaxPool 2
    → Linear(c2·5·5→fc1) → ReLU → Linear(fc1→fc2) → ReLU → Linear(fc2→classes).

    Args:
        channels: output channels of the two convolutions (default 16, 32).
        fc: widths of the two hidden fully connected layers (default 128, 64).
        dropout: dropout before the first fully connected layer (0 disables it).
        batch_norm: batch normalization after each convolution, before its ReLU.
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
