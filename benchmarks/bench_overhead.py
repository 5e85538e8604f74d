"""Where the Trainer's time over a plain loop goes: lit-nn's training path taken apart.

Each variant trains the same network through the same Trainer (no logger, no checkpoints),
changing one thing:

* ``litnn_bar`` — what ``make train`` runs: lit-nn's model and its ``ProgressBar`` (Rich,
  fed at most 5 times a second);
* ``litnn`` — the same without a progress bar;
* ``rich_bar`` — Lightning's own ``RichProgressBar(leave=False)``, updated after every batch:
  the difference to ``litnn_bar`` is what feeding the bar less often saves;
* ``nocheck`` — without the per-step finite-loss check, to price it;
* ``unfused`` / ``plain_unfused`` — the optimizer built with ``fused=False``: torch's
  Python loop over the parameter tensors instead of the fused kernel lit-nn uses
  (``lit_nn.models.optimizers``), to price that choice in both loops;
* ``bare`` — a ``training_step`` with no metrics and no checks: Lightning's loop alone, the
  floor for any LightningModule;
* ``plain`` — the hand-written loop of :mod:`benchmarks.bench_training`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from benchmarks.bench_training import (
    Bench,
    Variant,
    _restore_console,
    plain_fit,
    terminal_console,
    trainer_fit,
)
from benchmarks.common import (
    FitResult,
    Timing,
    fmt_s,
    interleave,
    log,
    markdown_table,
    paired_ratio,
    quiet_lightning,
)


class NoFiniteCheck:
    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        pass


class UnfusedOptimizer:
    """lit-nn's optimizer rebuilt with ``fused=False``: torch's loop over the parameter tensors."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return unfused(super().configure_optimizers())


def unfused(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer class and settings, rebuilt without the fused kernel."""
    defaults = {k: v for k, v in opt.defaults.items() if k != "foreach"}
    params = [p for group in opt.param_groups for p in group["params"]]
    return type(opt)(params, **{**defaults, "fused": None})


class Bare:
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)


MIXINS: dict[str, tuple[type, ...]] = {
    "litnn": (),
    "nocheck": (NoFiniteCheck,),
    "unfused": (UnfusedOptimizer,),
    "bare": (Bare,),
}


def with_mixins(model: L.LightningModule, mixins: tuple[type, ...]) -> L.LightningModule:
    """The same instance (same weights) with its class swapped for a subclass using ``mixins``."""
    if mixins:
        model.__class__ = type(f"{type(model).__name__}_{'_'.join(m.__name__ for m in mixins)}",
                               (*mixins, type(model)), {})
    return model


def bar_callback(kind: str) -> L.Callback | None:
    from lightning.pytorch.callbacks import RichProgressBar

    from lit_nn.cli.progress import ProgressBar

    if kind == "litnn":
        return ProgressBar(console_kwargs=terminal_console())
    if kind == "rich":
        return RichProgressBar(refresh_rate=5, leave=False, console_kwargs=terminal_console())
    return None


def run(quick: bool = False, rounds: int | None = None, epochs: int | None = None,
        models: tuple[str, ...] = ("mlp", "cnn")) -> dict[str, Any]:
    """Time the ablations interleaved; return timings and the cost of each piece per epoch."""
    quiet_lightning()
    rounds = rounds or (2 if quick else 3)
    epochs = epochs or (2 if quick else 3)
    plan: dict[str, tuple[str, str, str]] = {}  # name -> (model, step variant, bar)
    for m in models:
        plan[f"{m}_litnn_bar"] = (m, "litnn", "litnn")  # exactly `make train`, minus the logger
        plan[f"{m}_litnn"] = (m, "litnn", "none")
        plan[f"{m}_rich_bar"] = (m, "litnn", "rich")
        for step in ("nocheck", "unfused", "bare"):
            plan[f"{m}_{step}"] = (m, step, "none")
        plan[f"{m}_plain"] = (m, "plain", "none")
        plan[f"{m}_plain_unfused"] = (m, "plain_unfused", "none")
    with tempfile.TemporaryDirectory(prefix="lit-nn-bench-") as tmp:
        bench = Bench(Path(tmp), n_train=256 if quick else None, n_val=128 if quick else None,
                      tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        batch = {"cnn": bench.experiments["cnn"].data_args().get("batch_size", 64),
                 "mlp": bench.experiments["mlp"].data_args().get("batch_size", 128)}

        def fit(name: str, n_epochs: int) -> FitResult:
            m, step, bar = plan[name]
            v = Variant(name, m, batch[m], "plain" if step.startswith("plain") else "trainer", name)
            if step == "plain":
                return bench.fit(v, n_epochs)
            if step == "plain_unfused":
                model = bench.model(v)
                x, y = bench.splits["train"]
                return plain_fit(model, unfused(model.configure_optimizers()), x, y, v.batch_size, n_epochs)
            model = with_mixins(bench.model(v), MIXINS[step])
            return trainer_fit(model, bench.datamodule(v), n_epochs, progress_bar=bar_callback(bar) or False)

        fits: dict[str, Callable[[], FitResult]] = {n: (lambda n=n: fit(n, epochs)) for n in plan}
        log(f"overhead: {len(plan)} variants × {rounds} rounds × {epochs} epochs on {bench.n_train} images")
        started = time.perf_counter()
        timings = interleave(fits, dict.fromkeys(plan, bench.n_train), rounds, warmup=lambda n: fit(n, 1))
        elapsed = time.perf_counter() - started
        _restore_console()
    return {"n_train": bench.n_train, "rounds": rounds, "epochs_per_fit": epochs, "elapsed_s": elapsed,
            "models": list(models), "batch": batch, "_timings": timings,
            "variants": {n: t.as_dict() for n, t in timings.items()}}


def report(result: dict[str, Any]) -> str:
    """Markdown: per model, each variant's epoch time and its cost against the plain loop."""
    t: dict[str, Timing] = result["_timings"]
    lines = ["## Where the Trainer's overhead goes (diagnosis)", "",
             f"{result['rounds']} interleaved rounds × {result['epochs_per_fit']} epochs on "
             f"{result['n_train']:,} images; Trainer without logger/checkpoints; one change per variant "
             "(see the module docstring of `benchmarks/bench_overhead.py`).", ""]
    for m in result["models"]:
        plain = t[f"{m}_plain"]
        rows = []
        for name, timing in t.items():
            if not name.startswith(f"{m}_"):
                continue
            med, lo, hi = paired_ratio(timing, plain)
            per_step = (timing.epoch_s - plain.epoch_s) / -(-result["n_train"] // result["batch"][m])
            rows.append([f"`{name}`", fmt_s(timing.epoch_s), f"{timing.samples_per_s:,.0f}",
                         f"{timing.epoch_s / plain.epoch_s:.3f}× ({lo:.2f}–{hi:.2f})", fmt_s(per_step)])
        lines += [f"### {m.upper()} (batch {result['batch'][m]})", "",
                  markdown_table(["variant", "epoch", "samples/s", "vs plain (per-round range)",
                                  "extra per step"], rows), ""]
        now, bare, rich = t[f"{m}_litnn_bar"], t[f"{m}_bare"], t[f"{m}_rich_bar"]
        quiet, loop = t[f"{m}_litnn"], t[f"{m}_unfused"]
        lines += [f"`make train`'s path is {now.epoch_s / plain.epoch_s:.3f}× the plain loop; Lightning's loop "
                  f"alone (`bare`: no metrics, no checks, no bar) is {bare.epoch_s / plain.epoch_s:.3f}×, the floor "
                  "for any LightningModule here. Feeding the bar at most 5 times a second saves "
                  f"{100 * (rich.epoch_s / now.epoch_s - 1):+.1f} % of an epoch against Lightning's per-batch "
                  f"updates; the fused optimizer kernel {100 * (loop.epoch_s / quiet.epoch_s - 1):+.1f} %.",
                  ""]
    return "\n".join(lines)
