"""A loss that explodes without ever becoming NaN has diverged too (issue 28, cause 10)."""

from __future__ import annotations

import math

import pytest
import torch

from lit_nn.models import MLP, CharRNN, DivergedError
from lit_nn.models.base import EXPLODED


def test_a_classifiers_loss_far_above_chance_is_divergence_and_near_chance_is_not():
    model = MLP(depth=1, hidden=8, num_classes=10, lr=1e6)
    chance = math.log(10)
    assert model.chance_loss() == pytest.approx(chance)
    model.raise_if_exploded(torch.tensor(3.0 * chance))  # a bad epoch, not a diverged one
    with pytest.raises(DivergedError, match=r"mean training loss of epoch 0 is 5\.8e\+22, over 100 × chance .*"
                                            r"smaller learning rate \(lr=1000000\.0\)"):
        model.raise_if_exploded(torch.tensor(5.8e22))
    model.raise_if_exploded(torch.tensor(EXPLODED * chance * 0.99))


def test_a_language_models_chance_is_its_vocabulary():
    assert CharRNN(vocab="abcd").chance_loss() == pytest.approx(math.log(4))
    assert CharRNN().chance_loss() is None  # no vocabulary yet: nothing to compare with
