"""Where the Trainer's time over a plain loop goes, and what a fix in lit-nn would save.

Each variant trains the same network through the same Trainer (no logger, no checkpoints),
changing one thing in how lit-nn uses Lightning:

* ``current_bar`` — ``make train`` today: the step below and lit-nn's progress bar;
* ``current`` — lit-nn's ``Classifier.training_step`` as it is: ``self.log("train_loss",
  on_epoch=True)`` and ``self.log("train_acc", <torchmetrics Metric>)`` every step (each
  ``self.log`` moves Lightning's stored result to the device, and calling the Metric runs
  its ``forward``: a batch accuracy *and* the accumulation), plus ``check_finite``;
* ``epoch_log`` — the proposed change: the step only accumulates (``train_acc.update`` and a
  loss-sum tensor) and ``on_train_epoch_end`` logs both once; same per-epoch values;
* ``epoch_log_nocheck`` — the same without the per-step finite-loss check, to price it;
* ``epoch_log_fused`` / ``plain_fused`` — the optimizer built with ``fused=True`` (one
  kernel per step on CPU and CUDA instead of a Python loop over the parameters);
* ``bare`` — no metrics, no logging: what Lightning's loop alone costs;
* progress bars on the proposed step: lit-nn's ``RichProgressBar(refresh_rate=5, leave=True)``
  and the same with ``leave=False`` (with ``leave=True`` Lightning stops and restarts the
  bar at every epoch start, joining its refresh thread, which sleeps in 1/refresh_rate steps);
* ``proposed_bar`` — every proposed change together (epoch-end logging, fused optimizer,
  ``leave=False``);
* ``plain`` — the hand-written loop of :mod:`benchmarks.bench_training`, and ``plain_fused``
  the same with the fused optimizer.
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


class EpochEndLogging:
    """Mixin with the proposed ``training_step``: accumulate per step, log once per epoch."""

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.check_finite(loss, batch_idx)
        self.train_acc.update(logits.detach(), y)
        self._loss_sum += loss.detach() * len(y)
        self._seen += len(y)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train_loss", self._loss_sum / max(self._seen, 1), prog_bar=True, sync_dist=True)
        self.log("train_acc", self.train_acc)  # Lightning computes, syncs and resets it


class NoFiniteCheck:
    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        pass


class FusedOptimizer:
    """lit-nn's optimizer with ``fused=True``: one kernel per step instead of a loop over tensors."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return fused(super().configure_optimizers())


def fused(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer class and settings, rebuilt with ``fused=True`` (Adam, AdamW, SGD, Adagrad)."""
    defaults = {k: v for k, v in opt.defaults.items() if k != "foreach"}
    params = [p for group in opt.param_groups for p in group["params"]]
    return type(opt)(params, **{**defaults, "fused": True})


class Bare:
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)


MIXINS: dict[str, tuple[type, ...]] = {
    "current": (),
    "epoch_log": (EpochEndLogging,),
    "epoch_log_nocheck": (NoFiniteCheck, EpochEndLogging),
    "epoch_log_fused": (FusedOptimizer, EpochEndLogging),
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

    if kind == "rich_leave":
        return RichProgressBar(refresh_rate=5, leave=True, console_kwargs=terminal_console())
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
        plan[f"{m}_current_bar"] = (m, "current", "rich_leave")  # exactly `make train` today, minus logger
        for step in MIXINS:
            plan[f"{m}_{step}"] = (m, step, "none")
        for bar in ("rich_leave", "rich"):
            plan[f"{m}_epoch_log_{bar}"] = (m, "epoch_log", bar)
        plan[f"{m}_proposed_bar"] = (m, "epoch_log_fused", "rich")  # every proposed change together
        plan[f"{m}_plain"] = (m, "plain", "none")
        plan[f"{m}_plain_fused"] = (m, "plain_fused", "none")
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
            if step == "plain_fused":
                model = bench.model(v)
                x, y = bench.splits["train"]
                return plain_fit(model, fused(model.configure_optimizers()), x, y, v.batch_size, n_epochs)
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
             f"{result['n_train']:,} images; Trainer without logger/checkpoints; `epoch_log` is the proposed "
             "`training_step` (accumulate per step, `self.log` once per epoch; see the module docstring of "
             "`benchmarks/bench_overhead.py`).", ""]
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
        now, proposed, fused_plain = t[f"{m}_current_bar"], t[f"{m}_proposed_bar"], t[f"{m}_plain_fused"]
        lines += [f"As `make train` trains today: {now.epoch_s / plain.epoch_s:.3f}× the plain loop. With every "
                  f"proposed change (epoch-end logging, fused optimizer, `leave=False`): "
                  f"{proposed.epoch_s / fused_plain.epoch_s:.3f}× the plain loop with the same fused optimizer, "
                  f"{proposed.epoch_s / plain.epoch_s:.3f}× the plain loop with today's optimizer; "
                  f"{now.epoch_s / proposed.epoch_s:.2f}× faster than today.", ""]
    return "\n".join(lines)
