"""What the per-layer dynamics (``lit_nn.tracking.dynamics``, on by default in ``lit-nn fit``) cost.

The default MLP and CNN (``experiments/mnist_mlp.yaml``, ``mnist_cnn.yaml``, constant learning
rate) train through the Trainer as ``lit-nn fit`` builds it, with validation every epoch and
lit-nn's MLflowTracker on a SQLite store in every variant, interleaved:

* ``<model>_off`` — ``--dynamics false``;
* ``<model>_on`` — ``LayerDynamics`` at the default interval (``DEFAULT_EVERY`` optimizer steps),
  histograms included: what every fit now pays;
* ``<model>_every<N>`` — other intervals (``every=1`` prices one recording per step).

The target: an epoch with dynamics on at the default interval takes ≤ 1.03× an epoch without.
The callback writes its values to MLflow at most every 30 s (and at the end of the fit, after the
last timed epoch), so the time of those writes is measured apart and added to the epochs, spread
over the fit's epochs: each fit's single write then counts whole, a short fit's share of its fixed
cost (one SQLite transaction, ~20 ms) included.
Epochs are timed in CPU time of the process (``time.process_time``), which another process on a
shared machine disturbs far less than wall time; run with ``--threads 1`` for a clean figure (more
threads add OpenMP's spin-waits to it). Wall-time ratios are reported beside it.
Run it alone: ``python -m benchmarks --only dynamics`` (``--dynamics_every 1,5,10`` for more intervals).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_training import Bench, Variant, trainer_fit
from benchmarks.common import (
    EpochTimer,
    FitResult,
    Timing,
    fmt_s,
    interleave,
    log,
    markdown_table,
    paired_ratio,
    quiet_lightning,
)

TARGET = 1.03


def _timed_dynamics() -> type:
    from lit_nn.tracking.dynamics import LayerDynamics

    class Timed(LayerDynamics):
        """LayerDynamics that adds up the CPU and wall time of its writes to MLflow."""

        write_cpu_s = 0.0
        write_wall_s = 0.0

        def _flush(self) -> None:
            cpu, wall = time.process_time(), time.perf_counter()
            super()._flush()
            self.write_cpu_s += time.process_time() - cpu
            self.write_wall_s += time.perf_counter() - wall

    return Timed


def run(quick: bool = False, rounds: int | None = None, epochs: int | None = None,
        models: tuple[str, ...] = ("mlp", "cnn"), intervals: tuple[int, ...] = (10,),
        n_train: int | None = None) -> dict[str, Any]:
    """Time dynamics off, on at the default interval and at ``intervals``; return timings and ratios."""
    from lit_nn.tracking.dynamics import DEFAULT_EVERY

    TimedDynamics = _timed_dynamics()  # noqa: N806 - a class
    from lit_nn.tracking.store import ensure_experiment

    quiet_lightning()
    rounds = rounds or (2 if quick else 5)
    epochs = epochs or (2 if quick else 5)
    plan: dict[str, tuple[str, int | None]] = {}
    for m in models:
        plan[f"{m}_off"] = (m, None)
        plan[f"{m}_on"] = (m, DEFAULT_EVERY)
        for every in intervals:
            if every != DEFAULT_EVERY:
                plan[f"{m}_every{every}"] = (m, every)
    with tempfile.TemporaryDirectory(prefix="lit-nn-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        ensure_experiment("bench-mlflow", uri)  # the SQLite schema, outside the timings
        bench = Bench(Path(tmp), n_train=n_train or (256 if quick else None), n_val=128 if quick else None,
                      tracking_uri=uri)
        batch = {m: bench.experiments[m].data_args().get("batch_size", 64) for m in models}

        wall: dict[str, list[list[float]]] = {n: [] for n in plan}

        def fit(name: str, n_epochs: int) -> FitResult:
            m, every = plan[name]
            v = Variant(name, m, batch[m], "trainer", name, mlflow="sync")
            tracker, callbacks = bench.mlflow_callbacks(v)
            dynamics = TimedDynamics(every=every) if every is not None else None
            cpu = EpochTimer(time.process_time)
            epochs_wall, fit_s = trainer_fit(bench.model(v), bench.datamodule(v), n_epochs, progress_bar=False,
                                             validate=True, logger=tracker,
                                             callbacks=[cpu, *callbacks, *([dynamics] if dynamics else [])])
            cpu_s, wall_s = (dynamics.write_cpu_s, dynamics.write_wall_s) if dynamics else (0.0, 0.0)
            wall[name].append([e + wall_s / len(epochs_wall) for e in epochs_wall])
            return [e + cpu_s / len(epochs_wall) for e in cpu.epoch_times()], fit_s

        fits: dict[str, Callable[[], FitResult]] = {n: (lambda n=n: fit(n, epochs)) for n in plan}
        log(f"dynamics: {len(plan)} variants × {rounds} rounds × {epochs} epochs on {bench.n_train} images")
        started = time.perf_counter()
        timings = interleave(fits, dict.fromkeys(plan, bench.n_train), rounds, warmup=lambda n: fit(n, 1))
        elapsed = time.perf_counter() - started
    walls = {n: Timing(n, bench.n_train, rounds_[-rounds:], timings[n].fits) for n, rounds_ in wall.items()}
    ratios = {}
    for name, (m, _) in plan.items():
        if not name.endswith("_off"):
            med, lo, hi = paired_ratio(timings[name], timings[f"{m}_off"])
            ratios[name] = {"value": timings[name].epoch_s / timings[f"{m}_off"].epoch_s, "paired": [med, lo, hi],
                            "wall": walls[name].epoch_s / walls[f"{m}_off"].epoch_s}
    return {"n_train": bench.n_train, "rounds": rounds, "epochs_per_fit": epochs, "elapsed_s": elapsed,
            "default_every": DEFAULT_EVERY, "batch": batch, "models": list(models),
            "plan": {n: {"model": m, "every": e} for n, (m, e) in plan.items()},
            "steps_per_epoch": {m: -(-bench.n_train // batch[m]) for m in models},
            "variants": {n: t.as_dict() for n, t in timings.items()}, "ratios": ratios, "_timings": timings,
            "_wall": walls}


def targets(result: dict[str, Any]) -> list[tuple[str, float, bool]]:
    """(label, on/off ratio, met) per model, for the summary table."""
    return [(f"{m.upper()}: epoch with per-layer dynamics on (every {result['default_every']} steps) / off",
             result["ratios"][f"{m}_on"]["value"], result["ratios"][f"{m}_on"]["value"] <= TARGET)
            for m in result["models"]]


def report(result: dict[str, Any]) -> str:
    t: dict[str, Timing] = result["_timings"]
    wall: dict[str, Timing] = result["_wall"]
    lines = ["## Per-layer dynamics: what watching a network learn costs", "",
             f"{result['rounds']} interleaved rounds × {result['epochs_per_fit']} epochs on {result['n_train']:,} "
             "images, each variant a fresh fit with validation and lit-nn's MLflowTracker (SQLite); "
             f"`on` records every {result['default_every']} optimizer steps (the default), with the per-epoch "
             "histograms, and the epochs' share of the fit's writes to MLflow; the ratio is the epoch's CPU "
             "time against `off` (per round: median, min–max), then the same in wall time.", ""]
    rows = []
    for name, timing in t.items():
        plan = result["plan"][name]
        m = plan["model"]
        every = plan["every"]
        ratio = result["ratios"].get(name)
        cell = "—" if ratio is None else "{:.3f}× ({:.3f}, {:.3f}–{:.3f})".format(ratio["value"], *ratio["paired"])
        wall_cell = "—" if ratio is None else f"{ratio['wall']:.3f}×"
        per_record = ""
        if ratio is not None:
            records = result["steps_per_epoch"][m] / every
            per_record = fmt_s((timing.epoch_s - t[f"{m}_off"].epoch_s) / max(records, 1))
        rows.append([f"`{name}`", "off" if every is None else f"every {every}", f"{result['steps_per_epoch'][m]}",
                     fmt_s(timing.epoch_s), cell, per_record, fmt_s(wall[name].epoch_s), wall_cell])
    lines.append(markdown_table(["variant", "dynamics", "steps/epoch", "epoch CPU time (median)", "vs off",
                                 "extra CPU per recording", "epoch wall time", "vs off (wall)"], rows))
    return "\n".join(lines)
