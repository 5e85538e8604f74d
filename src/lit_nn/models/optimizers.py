"""Optimizers and learning-rate schedules by name, so configs and sweeps say ``optimizer: adam``
and ``lr_schedule: cosine`` instead of class paths.

Where torch has a fused kernel for the optimizer (sgd, adagrad, adam, adamw on CPU and CUDA)
it is used: the same update rule in one kernel per step instead of a Python loop over the
parameter tensors, 10-20 % of an MLP epoch on a CPU (``make bench``, ``mlp_fused``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable

import torch

from lit_nn.core.errors import check_positive, unknown_choice

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
SCHEDULES = ("constant", "cosine", "onecycle")


def check_optimizer_args(name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
                         lr_schedule: str = "constant", warmup_steps: int = 0) -> None:
    """Validate optimizer settings early (at model construction), before any run is created."""
    if name not in OPTIMIZERS:
        raise unknown_choice("optimizer", name, OPTIMIZERS)
    check_positive("lr", lr)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    check_positive("momentum", momentum, allow_zero=True)
    if lr_schedule not in SCHEDULES:
        raise unknown_choice("lr_schedule", lr_schedule, SCHEDULES)
    check_positive("model.warmup_steps", warmup_steps, allow_zero=True)


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Create a ``torch.optim`` optimizer; ``momentum``/``nesterov`` apply to sgd and rmsprop only."""
    check_optimizer_args(name, lr, weight_decay, momentum)
    params = list(params)
    kwargs: dict[str, object] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs.update(momentum=momentum, nesterov=nesterov and momentum > 0)
    elif name == "rmsprop":
        kwargs.update(momentum=momentum)
    if can_fuse(OPTIMIZERS[name], params):
        kwargs.update(fused=True)
    return OPTIMIZERS[name](params, **kwargs)


def can_fuse(cls: type[torch.optim.Optimizer], params: list[torch.nn.Parameter]) -> bool:
    """Whether ``cls`` has a fused kernel for these parameters (floating point, on CPU or CUDA)."""
    if "fused" not in inspect.signature(cls).parameters:
        return False
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def lr_factor(schedule: str, warmup_steps: int, total_steps: float) -> Callable[[int], float]:
    """The learning-rate multiplier per step: linear warm-up, then constant or cosine to 0.1; or
    ``onecycle``: a linear ramp from 0.04 to 1 over ``warmup_steps`` (default: the first 25 % of the
    run), then cosine annealing to 0 (Smith's one-cycle policy, as ``torch.optim.lr_scheduler.OneCycleLR``
    with ``anneal_strategy="cos"`` but linear on the way up)."""
    if schedule == "onecycle":
        rise = warmup_steps or max(1, round(0.25 * total_steps))

        def one_cycle(step: int) -> float:
            if step < rise:
                return 0.04 + 0.96 * step / rise
            progress = min(1.0, (step - rise) / max(1.0, total_steps - rise))
            return 0.5 * (1 + math.cos(math.pi * progress))

        return one_cycle

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1.0, total_steps - warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
