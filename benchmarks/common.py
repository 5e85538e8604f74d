"""Shared pieces of the benchmarks: machine facts, interleaved repetitions, medians, tables.

Timings on a shared machine drift (another process wakes up, the CPU clocks down), so every
comparison runs its variants interleaved — A, B, C, A, B, C, … — with the order rotated each
round, and reports medians: a noisy neighbour then hits every variant alike.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]

# (epoch durations in seconds, wall time of the whole fit in seconds)
FitResult = tuple[list[float], float]


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and the warnings that do not concern a benchmark,
    and set the process up as ``lit-nn`` does (every variant, plain loops included, runs under it)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (".*does not have many workers.*", ".*isinstance.treespec, LeafSpec.*",
                    ".*number of training batches.*", ".*LightningModule.*checkpoint.*",
                    ".*You defined a `validation_step` but have no `val_dataloader`.*",
                    ".*Total length of .* across ranks is zero.*", ".*limit_val_batches=0.*"):
        warnings.filterwarnings("ignore", message=message)


def set_threads(threads: int | None) -> int:
    """Use the same number of intra-op threads for every variant; returns the number in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without it."""
    import lightning
    import mlflow
    import torchvision

    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": threads,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torchvision": torchvision.__version__,
        "mlflow": mlflow.__version__,
        "platform": platform.platform(terse=True),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Timing:
    """Every epoch and fit duration one variant produced, across all rounds."""

    name: str
    samples: int  # training samples in one epoch
    epochs: list[list[float]] = field(default_factory=list)  # per round: each epoch's seconds
    fits: list[float] = field(default_factory=list)  # per round: the whole fit's seconds

    @property
    def steady(self) -> list[float]:
        """Epochs after the first of each fit: the per-epoch cost of a long run."""
        out = [e for round_ in self.epochs for e in (round_[1:] if len(round_) > 1 else round_)]
        return out

    @property
    def epoch_s(self) -> float:
        return statistics.median(self.steady)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.epoch_s

    @property
    def fit_overhead_s(self) -> float:
        """Median time a fit spends outside its epochs (set-up, sanity check, teardown)."""
        return statistics.median(f - sum(e) for f, e in zip(self.fits, self.epochs, strict=True))

    @property
    def first_epoch_extra_s(self) -> float:
        """How much longer the first epoch of a fit takes than a steady one."""
        return statistics.median(r[0] for r in self.epochs) - self.epoch_s

    def round_medians(self) -> list[float]:
        return [statistics.median(r[1:] if len(r) > 1 else r) for r in self.epochs]

    def spread(self) -> tuple[float, float]:
        """(min, max) of the per-round median epoch: how much the machine wandered."""
        rm = self.round_medians()
        return min(rm), max(rm)

    def as_dict(self) -> dict[str, Any]:
        return {"epoch_s": self.epoch_s, "samples_per_s": self.samples_per_s, "samples": self.samples,
                "fit_overhead_s": self.fit_overhead_s, "first_epoch_extra_s": self.first_epoch_extra_s,
                "epochs": self.epochs, "fits": self.fits}


def paired_ratio(a: Timing, b: Timing) -> tuple[float, float, float]:
    """Median, min and max over rounds of (a's round median / b's round median).

    Rounds are interleaved, so each round's pair saw the same machine state.
    """
    ratios = [x / y for x, y in zip(a.round_medians(), b.round_medians(), strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def interleave(
    variants: dict[str, Callable[[], FitResult]],
    samples: dict[str, int],
    rounds: int,
    warmup: Callable[[str], FitResult] | None = None,
) -> dict[str, Timing]:
    """Run every variant once per round, rotating the order each round; collect the timings.

    ``warmup(name)`` (if given) runs once per variant first and is discarded: it pays for
    one-time costs (oneDNN kernel selection, lazy imports) that would otherwise land on
    whichever variant happens to go first.
    """
    names = list(variants)
    results = {name: Timing(name, samples[name]) for name in names}
    if warmup is not None:
        for name in names:
            log(f"warm-up {name}")
            warmup(name)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            epochs, fit = variants[name]()
            results[name].epochs.append(epochs)
            results[name].fits.append(fit)
            log(f"round {r + 1}/{rounds} {name}: epochs {', '.join(f'{e:.3f}' for e in epochs)} s")
    return results


class EpochTimer(L.Callback):
    """Marks the start of each training epoch and the end of training.

    An epoch runs from one ``on_train_epoch_start`` to the next (the last one to
    ``on_train_end``), so it includes everything Lightning does per epoch: the batches, the
    validation loop when enabled, the epoch-end metric computation and the logger calls.
    ``clock``: wall time by default; ``time.process_time`` measures the CPU time the process spent,
    which a busy neighbour disturbs far less (with one torch thread, no OpenMP spin-waits in it).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.starts: list[float] = []
        self.end: float | None = None
        self.clock = clock

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.starts.append(self.clock())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = self.clock()

    def epoch_times(self) -> list[float]:
        if self.end is None:
            raise RuntimeError("training did not finish")
        marks = [*self.starts, self.end]
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (reads fine as plain text on stdout too)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def fmt_s(seconds: float) -> str:
    """Seconds with a precision that suits their size."""
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


@dataclass(frozen=True)
class Experiment:
    """A run configuration from ``experiments/<name>.yaml``: the benchmarks train what users train."""

    name: str
    config: dict[str, Any]

    @classmethod
    def load(cls, name: str) -> Experiment:
        import yaml

        path = REPO / "experiments" / f"{name}.yaml"
        return cls(name, yaml.safe_load(path.read_text()))

    def _build(self, section: str, **overrides: Any) -> Any:
        import importlib

        spec = self.config[section]
        module, _, cls_name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), cls_name)
        return cls(**{**spec.get("init_args", {}), **overrides})

    def model(self, **overrides: Any) -> L.LightningModule:
        return self._build("model", **overrides)

    def datamodule(self, **overrides: Any) -> L.LightningDataModule:
        return self._build("data", **overrides)

    def data_args(self) -> dict[str, Any]:
        return dict(self.config["data"].get("init_args", {}))

    def trainer_args(self) -> dict[str, Any]:
        return dict(self.config.get("trainer", {}))
