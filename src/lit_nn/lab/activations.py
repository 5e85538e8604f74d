"""Activation functions: what each one outputs, how its gradient behaves, and what that does
to the signal passing through a deep stack of layers.

Part 1 draws sigmoid, tanh, ReLU, Leaky ReLU, SELU and GELU (torch's own functions) with
their derivatives (hand-written formulas, checked against autograd in the tests) and
tabulates the output range, the slope at 0 and whether the gradient vanishes for large
|x| — the reason deep sigmoid networks stopped learning and ReLU took over.

Part 2 is the classic experiment: push 1000 random inputs through 5 layers of 100 units
and look at the histogram of each layer's activations, for sigmoid, tanh and ReLU under
three weight initializations. Too-small weights (std 0.01) collapse the signal; Xavier
keeps sigmoid/tanh alive; ReLU needs He's larger variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lit_nn.core.errors import check_positive
from lit_nn.lab.plotting import log_axis
from lit_nn.lab.recording import lab_run
from lit_nn.lab.tables import table
from lit_nn.tracking.figures import plt

Fn = Callable[[torch.Tensor], torch.Tensor]
LEAKY_SLOPE = 0.01  # torch's default negative_slope
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _d_gelu(x: torch.Tensor) -> torch.Tensor:
    """d/dx x·Φ(x) = Φ(x) + x·φ(x) (exact GELU, torch's default)."""
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


# name -> (the function, torch's implementation; its derivative, written by hand).
# At x = 0 the kinks take torch's convention: ReLU' = 0, Leaky ReLU' = slope, SELU' = scale·alpha.
ACTIVATION_FUNCTIONS: dict[str, tuple[Fn, Fn]] = {
    "sigmoid": (torch.sigmoid, lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))),
    "tanh": (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
    "relu": (F.relu, lambda x: (x > 0).to(x.dtype)),
    "leaky_relu": (F.leaky_relu, lambda x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, LEAKY_SLOPE))),
    "selu": (F.selu, lambda x: SELU_SCALE * torch.where(x > 0, torch.ones_like(x), SELU_ALPHA * torch.exp(x))),
    "gelu": (F.gelu, _d_gelu),
}
HISTOGRAM_ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("std 0.01", "xavier", "he")


def derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    """The hand-written derivative of activation ``name`` at ``x``."""
    return ACTIVATION_FUNCTIONS[name][1](x)


def _bound(fn: Fn, side: int) -> str:
    """The lower (side=-1) or upper (side=+1) end of the output range, written as an interval end:
    ``[v`` / ``v]`` when some finite x reaches it, ``(v`` / ``v)`` when only approached, ``∞`` when unbounded."""
    x = torch.cat([torch.linspace(-10, 10, 20001, dtype=torch.float64),
                   torch.tensor([-1e3, -1e2, 1e2, 1e3], dtype=torch.float64)])
    y = fn(x)
    edge, far, farther = fn(side * torch.tensor([10.0, 1e2, 1e3], dtype=torch.float64)).tolist()
    if side * (farther - far) > 1:  # still growing 1000 units out
        return "(-∞" if side < 0 else "∞)"
    value = (y.min() if side < 0 else y.max()).item()
    # reached at a finite x: an interior extremum (GELU's minimum) or a flat tail (ReLU's 0)
    attained = farther == edge or not math.isclose(value, farther, abs_tol=1e-12)
    text = f"{value:.3g}" if abs(value) > 1e-12 else "0"
    if side < 0:
        return ("[" if attained else "(") + text
    return text + ("]" if attained else ")")


def properties(name: str) -> dict[str, object]:
    """Output range, derivative at 0, and where the gradient vanishes (|f'| < 1e-3 at |x| = 10)."""
    fn, _ = ACTIVATION_FUNCTIONS[name]
    lo, hi = _bound(fn, -1), _bound(fn, +1)
    at = torch.tensor([-10.0, 0.0, 10.0], dtype=torch.float64)
    d_neg, d0, d_pos = derivative(name, at).tolist()
    small_neg, small_pos = abs(d_neg) < 1e-3, abs(d_pos) < 1e-3
    vanishes = ("yes, both sides" if small_neg and small_pos else "for x → -∞" if small_neg
                else "for x → +∞" if small_pos else "no")
    return {"range": f"{lo}, {hi}", "derivative_at_0": d0, "vanishes": vanishes,
            "derivative_at_-10": d_neg, "derivative_at_10": d_pos}


def functions_figure(span: float = 5.0) -> plt.Figure:
    """Each activation (solid) and its derivative (dashed), one panel each."""
    x = torch.linspace(-span, span, 801, dtype=torch.float64)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for ax, (name, (fn, _)) in zip(axes.ravel(), ACTIVATION_FUNCTIONS.items(), strict=True):
        ax.plot(x, fn(x), label="f(x)", color="tab:blue")
        ax.plot(x, derivative(name, x), "--", label="f'(x)", color="tab:orange")
        ax.axhline(0, color="0.8", linewidth=0.8)
        ax.axvline(0, color="0.8", linewidth=0.8)
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("activation functions and their derivatives")
    fig.tight_layout()
    return fig


def init_weights(weight: torch.Tensor, init: str, generator: torch.Generator) -> None:
    """Fill a (out, in) weight matrix: N(0, 0.01²), Xavier (std √(2/(in+out))) or He (std √(2/in))."""
    if init == "std 0.01":
        nn.init.normal_(weight, std=0.01, generator=generator)
    elif init == "xavier":
        nn.init.xavier_normal_(weight, generator=generator)
    else:
        nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)


@torch.no_grad()
def layer_activations(activation: str, init: str, samples: int = 1000, units: int = 100, layers: int = 5,
                      seed: int = 0) -> list[torch.Tensor]:
    """Activations of each of ``layers`` fully connected layers (no bias) on standard-normal inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, units, generator=gen)  # weights continue the same stream (no reuse of x)
    fn = ACTIVATION_FUNCTIONS[activation][0]
    outputs = []
    for _ in range(layers):
        weight = torch.empty(units, units)
        init_weights(weight, init, gen)
        x = fn(x @ weight.T)
        outputs.append(x)
    return outputs


def histogram_figure(stacks: dict[tuple[str, str], list[torch.Tensor]]) -> plt.Figure:
    """One panel per (activation, init): the histogram of every layer's activations, overlaid."""
    fig, axes = plt.subplots(len(HISTOGRAM_ACTIVATIONS), len(INITS), figsize=(13, 10))
    colours = plt.get_cmap("viridis")
    for (activation, init), outputs in stacks.items():
        ax = axes[HISTOGRAM_ACTIVATIONS.index(activation), INITS.index(init)]
        lo = {"sigmoid": 0.0, "tanh": -1.0, "relu": 0.0}[activation]
        hi = 1.0 if activation != "relu" else max(float(outputs[0].max()), 1e-6)
        for k, out in enumerate(outputs):
            counts, edges = np.histogram(out.ravel().numpy(), bins=40, range=(lo, hi))
            ax.stairs(np.maximum(counts, 0.5), edges, baseline=0.5, linewidth=1.3,
                      color=colours(k / max(len(outputs) - 1, 1)), label=f"layer {k + 1}")
        ax.set_title(f"{activation}, weights {init}: last-layer std {float(outputs[-1].std()):.2g}", fontsize=10)
        log_axis(ax)
        ax.set_ylim(bottom=0.8)  # hide the floor that empty bins are drawn at
        ax.set_xlabel("activation value")
        ax.set_ylabel("count")
    axes[0, -1].legend(fontsize=8)
    fig.suptitle("activations through the layers: sigmoid/tanh/ReLU × weight initialization")
    fig.tight_layout()
    return fig


def summary(table_rows: dict[str, dict], stds: dict[tuple[str, str], list[float]]) -> str:
    """The properties table and the per-layer standard deviation of the histogram experiment."""
    part1 = table(["activation", "output range", "f'(0)", "gradient vanishes for large |x|"],
                  [[n, p["range"], f"{p['derivative_at_0']:.4g}", p["vanishes"]] for n, p in table_rows.items()])
    layers = len(next(iter(stds.values())))
    part2 = table(["activation", "weights", *[f"std L{k + 1}" for k in range(layers)]],
                  [[a, i, *[f"{s:.2g}" for s in v]] for (a, i), v in stds.items()])
    return f"{part1}\n\nstandard deviation of the activations per layer:\n{part2}"


def run(samples: int = 1000, units: int = 100, layers: int = 5, seed: int = 0) -> dict:
    """Tabulate and draw the activations, then run the layer-histogram experiment; one MLflow run.

    Args:
        samples: random inputs pushed through the layers.
        units: units per layer.
        layers: layers whose activations are histogrammed.
        seed: seeds the inputs and weights.

    Returns ``{"properties": {name: {...}}, "stds": {(activation, init): [std per layer]}, "summary", "run_id"}``.
    """
    for name, value in (("samples", samples), ("units", units), ("layers", layers)):
        check_positive(name, value)
    with lab_run("activations", {"samples": samples, "units": units, "layers": layers, "seed": seed}) as rec:
        props = {name: properties(name) for name in ACTIVATION_FUNCTIONS}
        for name, p in props.items():
            rec.log_metrics({f"{name}.derivative_at_0": p["derivative_at_0"],
                             f"{name}.derivative_at_-10": p["derivative_at_-10"],
                             f"{name}.derivative_at_10": p["derivative_at_10"]})
        rec.log_figure(functions_figure(), "activations.png")
        stacks = {(a, i): layer_activations(a, i, samples, units, layers, seed)
                  for a in HISTOGRAM_ACTIVATIONS for i in INITS}
        stds = {key: [float(out.std()) for out in outputs] for key, outputs in stacks.items()}
        rec.log_history({f"{a}.{i.replace(' ', '_')}.std": list(enumerate(v, start=1))
                         for (a, i), v in stds.items()})
        rec.log_figure(histogram_figure(stacks), "layer_histograms.png")
        text = summary(props, stds)
        rec.log_text(text, "summary.txt")
        return {"properties": props, "stds": stds, "summary": text, "run_id": rec.run_id}
