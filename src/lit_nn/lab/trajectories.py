"""Optimizer trajectories on 2-D surfaces: watch SGD, momentum, Adagrad, RMSprop, Adadelta,
Adam and AdamW (the real ``torch.optim`` classes) walk downhill on a round and a stretched bowl.

The round bowl ``x² + y²`` is easy for everyone; the stretched bowl ``x²/20 + y²`` has a
gradient 20× steeper in y than in x, which is where plain SGD zig-zags or crawls and the
adaptive methods (per-coordinate step sizes) and momentum pull ahead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lit_nn.core.errors import UserError, check_positive, unknown_choice
from lit_nn.lab.plotting import log_axis
from lit_nn.lab.recording import lab_run
from lit_nn.lab.tables import sci, table
from lit_nn.models.optimizers import build_optimizer
from lit_nn.tracking.figures import plt


@dataclass(frozen=True)
class Surface:
    title: str
    formula: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float] = (0.0, 0.0)


SURFACES: dict[str, Surface] = {
    "round": Surface("round bowl", "x² + y²", lambda x, y: x**2 + y**2, (1.0, 1.5)),
    "stretched": Surface("stretched bowl", "x²/20 + y²", lambda x, y: x**2 / 20 + y**2, (-7.0, 2.0)),
}
# optimizer label -> (lit_nn.models.optimizers name, extra settings); AdamW gets torch's default decay,
# otherwise it is exactly Adam here (build_optimizer passes weight_decay=0 by default).
OPTIMIZER_SETTINGS: dict[str, tuple[str, dict[str, float]]] = {
    "sgd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.9}),
    "adagrad": ("adagrad", {}),
    "rmsprop": ("rmsprop", {}),
    "adadelta": ("adadelta", {}),
    "adam": ("adam", {}),
    "adamw": ("adamw", {"weight_decay": 0.01}),
}
COLOURS = dict(zip(OPTIMIZER_SETTINGS, plt.get_cmap("tab10").colors, strict=False))
MARKERS = dict(zip(OPTIMIZER_SETTINGS, "osv^DPX", strict=True))  # overlapping paths stay tellable apart


def check_options(
    functions: Sequence[str], optimizers: Sequence[str], steps: int, lr: float, tol: float
) -> None:
    """Reject unknown names and non-positive numbers before any run is opened."""
    if not functions:
        raise UserError(f"choose at least one function; valid: {', '.join(SURFACES)}")
    if not optimizers:
        raise UserError(f"choose at least one optimizer; valid: {', '.join(OPTIMIZER_SETTINGS)}")
    for name in functions:
        if name not in SURFACES:
            raise unknown_choice("function", name, SURFACES)
    for name in optimizers:
        if name not in OPTIMIZER_SETTINGS:
            raise unknown_choice("optimizer", name, OPTIMIZER_SETTINGS)
    check_positive("steps", steps)
    check_positive("lr", lr)
    check_positive("tol", tol)
    if int(steps) != steps:
        raise UserError(f"steps must be a whole number, got {steps!r}")


def trajectory(
    function: str, optimizer: str, start: tuple[float, float], lr: float, steps: int
) -> np.ndarray:
    """The ``(steps + 1, 2)`` points visited by a torch optimizer minimizing ``function`` from ``start``."""
    surface = SURFACES[function]
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    name, settings = OPTIMIZER_SETTINGS[optimizer]
    opt = build_optimizer(name, [point], lr, **settings)
    path = [point.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        surface.fn(point[0], point[1]).backward()
        opt.step()
        path.append(point.detach().clone())
    return torch.stack(path).numpy()


def path_metrics(path: np.ndarray, minimum: tuple[float, float], tol: float) -> dict[str, float | int | None]:
    """Distance to the minimum at the start and the end, and the first step that came within ``tol``."""
    dist = np.linalg.norm(path - np.asarray(minimum), axis=1)
    within = np.flatnonzero(dist < tol)
    return {
        "start_distance": float(dist[0]),
        "final_distance": float(dist[-1]),
        "first_within": int(within[0]) if len(within) else None,
    }


def path_figure(function: str, paths: dict[str, np.ndarray], lr: float) -> plt.Figure:
    """Contour lines of the surface with each optimizer's path drawn as points."""
    surface = SURFACES[function]
    minimum = np.asarray(surface.minimum)
    # the view: the start, the minimum and what lies within 3x their distance; a path that diverges
    # (too large an lr) leaves it, and is drawn up to its edge and named so in the legend
    reach = 3 * max(float(np.linalg.norm(next(iter(paths.values()))[0] - minimum)), 1.0)
    shown = {name: np.where(np.isfinite(path), path, np.nan) for name, path in paths.items()}
    inside = {name: np.linalg.norm(path - minimum, axis=1) <= reach for name, path in shown.items()}
    points = np.concatenate([*(path[inside[name]] for name, path in shown.items()), [minimum]])
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = np.maximum((hi - lo) * 0.1, 0.5)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 300)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 300)
    grid_x, grid_y = np.meshgrid(xs, ys)
    z = surface.fn(torch.from_numpy(grid_x), torch.from_numpy(grid_y)).numpy()
    aspect = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    fig, ax = plt.subplots(figsize=(9, min(max(6.5 * aspect + 1.3, 3.5), 9)))  # fits the equal-aspect axes
    ax.contour(grid_x, grid_y, z, levels=np.quantile(z, np.linspace(0.002, 0.9, 14)), colors="0.7",
               linewidths=0.8)
    for name, path in shown.items():
        label = name if inside[name].all() else f"{name} (leaves the view)"
        ax.plot(path[:, 0], path[:, 1], "-", color=COLOURS[name], linewidth=0.6, alpha=0.6)
        ax.plot(path[:, 0], path[:, 1], MARKERS[name], color=COLOURS[name], markersize=3, label=label,
                markerfacecolor="none", markeredgewidth=0.8)
    ax.plot(*next(iter(paths.values()))[0], "ks", markersize=6)
    ax.plot(*surface.minimum, "k*", markersize=12)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("equal")  # true geometry: the stretched bowl really is 20x flatter in x
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    steps = len(next(iter(paths.values()))) - 1
    ax.set_title(f"{surface.title} {surface.formula}: {steps} steps, lr {lr:g} (■ start, ★ minimum)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, markerscale=2)
    fig.tight_layout()
    return fig


def distance_figure(distances: dict[str, dict[str, np.ndarray]], tol: float) -> plt.Figure:
    """Distance to the minimum per step, log scale, one panel per function."""
    fig, axes = plt.subplots(1, len(distances), figsize=(6 * len(distances), 4.5), squeeze=False)
    for ax, (function, per_opt) in zip(axes[0], distances.items(), strict=True):
        for name, dist in per_opt.items():
            ax.plot(np.maximum(dist, 1e-12), color=COLOURS[name], label=name)
        ax.axhline(tol, color="k", linestyle=":", linewidth=0.8)
        log_axis(ax)
        ax.set_title(f"{SURFACES[function].title} {SURFACES[function].formula}")
        ax.set_xlabel("step")
        ax.set_ylabel("distance to the minimum")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def summary(results: dict[str, dict[str, dict]], lr: float, tol: float) -> str:
    """The trajectories table: final distance and first step within ``tol`` per optimizer."""
    parts = []
    for function, per_opt in results.items():
        surface = SURFACES[function]
        rows = [
            [name, sci(m["start_distance"], 3), sci(m["final_distance"], 3),
             "never" if m["first_within"] is None else m["first_within"]]
            for name, m in per_opt.items()
        ]
        start = next(iter(per_opt.values()))["start"]
        parts.append(f"{surface.title} {surface.formula}, start {tuple(start)}, lr {lr:g}:\n"
                     + table(["optimizer", "start distance", "final distance", f"first step < {tol:g}"], rows))
    return "\n\n".join(parts)


def run(
    functions: Sequence[str] = tuple(SURFACES),
    optimizers: Sequence[str] = tuple(OPTIMIZER_SETTINGS),
    steps: int = 100,
    lr: float = 0.1,
    start: Sequence[float] | None = None,
    tol: float = 1e-3,
) -> dict:
    """Run every optimizer on every function; log paths, metrics and figures in one MLflow run.

    Args:
        functions: surfaces: round (x^2 + y^2, start 1.0 1.5) and/or stretched (x^2/20 + y^2, start -7 2).
        optimizers: torch.optim optimizers to compare (momentum is SGD with momentum 0.9).
        steps: optimizer steps.
        lr: learning rate, the same for every optimizer.
        start: start point X Y for every chosen function (default: each function's own); a list, so
            that a wrong count is named here (``--start 1``), not as a failed tuple type.
        tol: distance to the minimum that counts as arrived.

    Returns ``{"results": {function: {optimizer: metrics + "path"}}, "summary", "run_id"}``.
    """
    check_options(functions, optimizers, steps, lr, tol)
    if start is not None and (len(start) != 2 or not all(math.isfinite(v) for v in start)):
        raise UserError(f"--start takes two finite numbers X Y, got {list(start)}")
    params = {"functions": ",".join(functions), "optimizers": ",".join(optimizers), "steps": steps,
              "lr": lr, "start": "default" if start is None else f"{start[0]},{start[1]}", "tol": tol}
    with lab_run("trajectories", params) as rec:
        results: dict[str, dict[str, dict]] = {}
        distances: dict[str, dict[str, np.ndarray]] = {}
        for function in functions:
            surface = SURFACES[function]
            origin = tuple(start) if start is not None else surface.start
            results[function], distances[function], paths = {}, {}, {}
            for name in optimizers:
                path = trajectory(function, name, origin, lr, steps)
                metrics = path_metrics(path, surface.minimum, tol)
                paths[name] = path
                distances[function][name] = np.linalg.norm(path - np.asarray(surface.minimum), axis=1)
                results[function][name] = {**metrics, "start": origin, "path": path}
                final = {f"{function}.{name}.final_distance": metrics["final_distance"],
                         f"{function}.{name}.reached_tol": float(metrics["first_within"] is not None)}
                if metrics["first_within"] is not None:
                    final[f"{function}.{name}.first_within"] = metrics["first_within"]
                rec.log_metrics(final, step=steps)
            rec.log_history({f"{function}.{name}.distance": list(enumerate(dist.tolist()))
                             for name, dist in distances[function].items()})
            rec.log_figure(path_figure(function, paths, lr), f"trajectories_{function}.png")
        rec.log_figure(distance_figure(distances, tol), "distance_per_step.png")
        text = summary(results, lr, tol)
        rec.log_text(text, "summary.txt")
        return {"results": results, "summary": text, "run_id": rec.run_id}
