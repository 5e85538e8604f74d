"""Multi-layer perceptron: the model for optimizer, depth and activation comparisons."""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_nn.core.errors import check_fraction, check_positive, unknown_choice
from lit_nn.models.base import Classifier

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name; an unknown name lists the valid ones."""
    if name not in ACTIVATIONS:
        raise unknown_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


class MLP(Classifier):
    """Flatten → ``depth`` × (Linear → activation [→ Dropout]) → Linear.

    Args:
        depth: number of hidden layers; 0 is softmax regression (one linear layer).
        hidden: width of every hidden layer.
        activation: sigmoid, tanh, relu, leaky_relu, selu or gelu.
        dropout: dropout probability after each hidden activation (0 disables it).
        input_size: flattened input size (28*28 for MNIST).
        num_classes: number of output classes.
        **optim_args: optimizer, lr, weight_decay, momentum, nesterov (see :class:`LitModel`).
    """

    kind = "mlp"
    tag_keys = ("optimizer", "depth", "activation", "hidden")

    def __init__(
        self,
        depth: int = 2,
        hidden: int = 128,
        activation: str = "relu",
        dropout: float = 0.0,
        input_size: int = 784,
        num_classes: int = 10,
        **optim_args: Any,
    ) -> None:
        super().__init__(num_classes, **optim_args)
        check_positive("model.depth", depth, allow_zero=True)
        check_positive("model.hidden", hidden)
        check_fraction("model.dropout", dropout)
        act = make_activation(activation)  # validate before building layers
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), type(act)()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
