"""Multi-layer perceptron: the model for optimizer, depth and activation comparisons."""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_nn.core.errors import UserError, check_fraction, check_positive, unknown_choice
from lit_nn.models.base import Classifier

# The one list of the MLP's activations (--model.init_args.activation NAME); the docstring below,
# the configs' comments and the README name the same ones (tests/models/test_models.py checks).
# identity is no activation at all: the hidden layers stay linear, so the whole network is one
# linear map however deep it is (the learning path's linear-network step shows what that costs).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name; an unknown name lists the valid ones."""
    if name not in ACTIVATIONS:
        raise unknown_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def layer_widths(depth: int | None, hidden: int | list[int]) -> list[int]:
    """The width of each hidden layer, from a depth and one width, or from one width per layer."""
    if depth is not None:
        check_positive("model.depth", depth, allow_zero=True)
    if isinstance(hidden, int):
        check_positive("model.hidden", hidden)
        return [hidden] * (2 if depth is None else depth)
    widths = list(hidden)
    for width in widths:
        check_positive("model.hidden", width)
    if depth is not None and depth != len(widths):
        raise UserError(f"model.depth={depth} but model.hidden lists {len(widths)} width(s) {widths}; give "
                        f"depth {len(widths)}, or leave depth out, or one width for every layer")
    return widths


class MLP(Classifier):
    """Flatten → ``depth`` × (Linear → activation [→ Dropout]) → Linear.

    Args:
        depth: number of hidden layers; 0 is softmax regression (one linear layer). Default: 2 with
            one width, the number of widths with a list.
        hidden: width of every hidden layer, or one width per layer (``[128, 64]``: 784 → 128 → 64 → 10).
        activation: sigmoid, tanh, relu, leaky_relu, selu, gelu, or identity (none: the network
            stays one linear map, no more expressive than depth 0 however deep).
        dropout: dropout probability after each hidden activation (0 disables it).
        input_size: flattened input size (28*28 for MNIST).
        num_classes: number of output classes.
        **optim_args: optimizer, lr, weight_decay, momentum, nesterov (see :class:`LitModel`).
    """

    kind = "mlp"
    tag_keys = ("optimizer", "depth", "activation", "hidden")

    def __init__(
        self,
        depth: int | None = None,
        hidden: int | list[int] = 128,
        activation: str = "relu",
        dropout: float = 0.0,
        input_size: int = 784,
        num_classes: int = 10,
        **optim_args: Any,
    ) -> None:
        super().__init__(num_classes, **optim_args)
        widths = layer_widths(depth, hidden)
        self.hparams.depth = len(widths)  # what was built, for the tags and the run name
        check_fraction("model.dropout", dropout)
        act = make_activation(activation)  # validate before building layers
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for out in widths:
            layers += [nn.Linear(width, out), type(act)()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = out
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
