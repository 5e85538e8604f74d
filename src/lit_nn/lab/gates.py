"""Logic gates: where neural networks start.

A single perceptron — one linear unit ``w·x + b`` with a sigmoid output, trained by plain
gradient descent on the binary cross-entropy of the four truth-table rows — learns AND, OR
and NAND, because each is separated by one straight line. XOR is not: no line puts (0,1)
and (1,0) on one side and (0,0), (1,1) on the other, so the perceptron gets at most 3 of 4
rows right. One hidden layer bends the boundary and XOR is learned.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lit_nn.core.errors import check_positive
from lit_nn.lab.recording import lab_run
from lit_nn.lab.tables import table
from lit_nn.tracking.figures import plt

INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
GATES: dict[str, tuple[int, int, int, int]] = {
    "AND": (0, 0, 0, 1),
    "OR": (0, 1, 1, 1),
    "NAND": (1, 1, 1, 0),
    "XOR": (0, 1, 1, 0),
}


def perceptron() -> nn.Module:
    """One linear unit: two weights and a bias (the sigmoid lives in the loss)."""
    return nn.Linear(2, 1)


def two_layer(hidden: int) -> nn.Module:
    """One hidden layer of ``hidden`` tanh units, then one output unit."""
    return nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def train_gate(model: nn.Module, targets: tuple[int, ...], epochs: int, lr: float) -> list[float]:
    """Full-batch gradient descent on the 4 truth-table rows; returns the loss per epoch."""
    y = torch.tensor(targets, dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(INPUTS).squeeze(1), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def truth_table(model: nn.Module) -> list[int]:
    """The gate the model computes: step function of the logit (sigmoid > 0.5) per input row."""
    return (model(INPUTS).squeeze(1) > 0).int().tolist()


def accuracy(outputs: list[int], targets: tuple[int, ...]) -> float:
    return float(np.mean(np.asarray(outputs) == np.asarray(targets)))


def boundary_figure(models: dict[str, tuple[nn.Module, tuple[int, ...], float]]) -> plt.Figure:
    """Predicted probability over the unit square with the 0.5 decision boundary, one panel per model."""
    grid = np.linspace(-0.25, 1.25, 151)
    gx, gy = np.meshgrid(grid, grid)
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float32)
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.8), squeeze=False)
    for ax, (title, (model, targets, acc)) in zip(axes[0], models.items(), strict=True):
        with torch.no_grad():
            prob = torch.sigmoid(model(points)).reshape(gx.shape).numpy()
        ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.55)
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.5)
        for (x1, x2), t in zip(INPUTS.tolist(), targets, strict=True):
            ax.scatter(x1, x2, s=120, c="tab:red" if t else "tab:blue", marker="o" if t else "s",
                       edgecolors="k", zorder=3)
        ax.set_title(f"{title}: accuracy {acc:.0%}", fontsize=10)
        ax.set_xlim(-0.25, 1.25)
        ax.set_ylim(-0.25, 1.25)
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.suptitle("decision boundaries (black line: output 0.5; red circle = 1, blue square = 0)")
    fig.tight_layout()
    return fig


def summary(results: dict) -> str:
    """Truth tables of every trained model, the perceptron's weights, and the XOR verdict."""
    cols = list(results["models"])
    rows = []
    for i, (x1, x2) in enumerate(INPUTS.int().tolist()):
        row: list[object] = [x1, x2]
        for name in cols:
            m = results["models"][name]
            row.append(f"{m['outputs'][i]} ({m['targets'][i]})")
        rows.append(row)
    lines = ["truth tables — computed output (target):",
             table(["x1", "x2", *cols], rows), "",
             table(["model", "accuracy", "final loss", "weights w1, w2, bias"],
                   [[name, f"{m['accuracy']:.0%}", f"{m['final_loss']:.4f}", m.get("weights", "—")]
                    for name, m in results["models"].items()])]
    xor_p = results["models"]["XOR perceptron"]
    xor_2 = results["models"]["XOR two-layer"]["accuracy"]
    verdict = "fails" if xor_p["accuracy"] < 1 else "unexpectedly succeeds"
    probs = ", ".join(f"{p:.2f}" for p in xor_p["probabilities"])
    lines += ["", f"XOR: the single perceptron {verdict} (accuracy {xor_p['accuracy']:.0%}; a line separates "
              f"at most 3 of the 4 rows, and its outputs {probs} sit on the fence);",
              f"the two-layer net with {results['hidden']} hidden tanh units reaches {xor_2:.0%}."]
    return "\n".join(lines)


def run(epochs: int = 500, lr: float = 1.0, hidden: int = 4, seed: int = 0) -> dict:
    """Train a perceptron on AND, OR, NAND, XOR and a two-layer net on XOR; one MLflow run.

    Args:
        epochs: full-batch gradient-descent steps per gate.
        lr: learning rate of the gradient descent.
        hidden: hidden tanh units of the two-layer XOR net.
        seed: seeds the initial weights.

    Returns ``{"models": {name: {"outputs", "targets", "accuracy", "final_loss"}}, "summary", "run_id"}``.
    """
    check_positive("epochs", epochs)
    check_positive("lr", lr)
    check_positive("hidden", hidden)
    params = {"epochs": epochs, "lr": lr, "hidden": hidden, "seed": seed, "optimizer": "sgd (full batch)",
              "loss": "binary cross-entropy on a sigmoid output"}
    with lab_run("gates", params) as rec:
        torch.manual_seed(seed)
        models: dict[str, tuple[nn.Module, tuple[int, ...]]] = {
            gate: (perceptron(), GATES[gate]) for gate in ("AND", "OR", "NAND")
        }
        models["XOR perceptron"] = (perceptron(), GATES["XOR"])
        models["XOR two-layer"] = (two_layer(hidden), GATES["XOR"])
        results: dict = {"models": {}, "hidden": hidden}
        for name, (model, targets) in models.items():
            losses = train_gate(model, targets, epochs, lr)
            outputs = truth_table(model)
            with torch.no_grad():
                probs = torch.sigmoid(model(INPUTS)).squeeze(1).tolist()
            entry = {"outputs": outputs, "targets": list(targets), "accuracy": accuracy(outputs, targets),
                     "final_loss": losses[-1], "probabilities": probs}
            if isinstance(model, nn.Linear):
                w = model.weight.detach().squeeze(0).tolist()
                entry["weights"] = f"{w[0]:+.2f}, {w[1]:+.2f}, {model.bias.item():+.2f}"
            results["models"][name] = entry
            key = name.lower().replace(" ", "_")
            rec.log_metrics({f"{key}.accuracy": entry["accuracy"], f"{key}.final_loss": losses[-1]}, step=epochs)
            stride = max(1, epochs // 100)
            rec.log_history({f"{key}.loss": [(i + 1, v) for i, v in enumerate(losses)][::stride]})
        rec.log_figure(boundary_figure({n: (m, t, results["models"][n]["accuracy"])
                                        for n, (m, t) in models.items()}), "decision_boundaries.png")
        text = summary(results)
        rec.log_text(text, "summary.txt")
        return {**results, "summary": text, "run_id": rec.run_id}
