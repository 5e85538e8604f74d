"""Char-RNN speed and quality: Lightning against a plain PyTorch loop, and val loss against wall time.

Two measurements, in one process:

1. **Throughput** — the same CharRNN, the same pre-cut batches, the same Adam and gradient
   clipping, trained once by ``lightning.Trainer`` and once by a hand-written loop;
   repetitions are interleaved (plain, Lightning, Lightning, plain, ...) so drift in a
   shared machine's load hits both alike. Steady-state characters per second skip the
   first ``warmup`` steps of each repetition; the overhead ratio is plain / Lightning time.
2. **Quality** — ``experiments/shakespeare_char.yaml`` (or any char-RNN YAML) trained by
   the Trainer exactly as configured (no MLflow, no checkpoints), recording the wall time,
   step and ``val_loss`` at every validation: the curve to compare with nanoGPT's
   published CPU baseline (1.89 nats/char after about 105 s on this machine).

Usage::

    python benchmarks/bench_char_rnn.py                       # both, tiny-shakespeare from ../shared
    python benchmarks/bench_char_rnn.py --skip-quality --steps 40 --reps 3
    python benchmarks/bench_char_rnn.py --config experiments/shakespeare_char.yaml --override trainer.max_steps=4000

``run(...)`` returns the numbers as a dict (for ``make bench``); ``main`` prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import yaml

from lit_nn.data.text import TextDataModule, TextWindows
from lit_nn.models import CharRNN
from lit_nn.models.optimizers import build_optimizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "experiments" / "shakespeare_char.yaml"
DEFAULT_TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT_BASELINE = {"val_loss": 1.89, "wall_s": 105.0}  # published small CPU config, measured here by the issue


def load_config(path: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML's ``init_args`` of model and data and its trainer settings, with ``a.b=value`` overrides."""
    config = yaml.safe_load(path.read_text())
    flat = {
        "model": dict(config["model"].get("init_args", {})),
        "data": dict(config["data"].get("init_args", {})),
        "trainer": dict(config.get("trainer", {})),
        "seed": config.get("seed_everything", 0),
    }
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        flat[section][name.removeprefix("init_args.")] = yaml.safe_load(value)
    return flat


class _Replay:
    """A fixed list of batches as one iterable (a bare list would be read as several loaders)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.batches)


class _StepClock(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.end = time.perf_counter()


def _plain_loop(model: CharRNN, batches: list, lr: float, clip: float, warmup: int) -> tuple[float, float]:
    """The loop Lightning runs, by hand: (steady seconds after warm-up, whole-call seconds)."""
    begin = time.perf_counter()
    hp = model.hparams  # lit-nn's optimizer as the model builds it (fused where torch has a kernel)
    optimizer = build_optimizer(hp.optimizer, model.parameters(), lr, hp.weight_decay, hp.momentum, hp.nesterov)
    model.train()
    start = begin
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if not torch.isfinite(loss):
            raise RuntimeError("diverged")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    end = time.perf_counter()
    return end - start, end - begin


def _lightning_loop(model: CharRNN, batches: list, clip: float, warmup: int) -> tuple[float, float]:
    clock = _StepClock(warmup)
    trainer = L.Trainer(max_steps=len(batches), max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, gradient_clip_val=clip, accelerator="cpu", devices=1,
                        callbacks=[clock])
    begin = time.perf_counter()
    trainer.fit(model, train_dataloaders=_Replay(batches))
    return clock.end - clock.start, time.perf_counter() - begin


def throughput(config: dict[str, Any], text: Path | None, steps: int = 40, reps: int = 3,
               warmup: int = 5) -> dict[str, Any]:
    """Characters/s of training: Lightning vs a plain loop, same model, batches and optimizer.

    ``text`` None: the embedded corpus (the speed of a step does not depend on the text)."""
    source = {"path": str(text)} if text is not None else {"path": None, "corpus": "pydoc_topics"}
    data = TextDataModule(**{**config["data"], **source})
    data.setup("fit")
    loader = data.train_dataloader()
    batches = [b for b, _ in zip(loader, range(steps + warmup), strict=False)]
    chars = sum(y.numel() for _, y in batches[warmup:])
    model_args = {**config["model"], "vocab": data.vocab, "lr_schedule": "constant", "warmup_steps": 0,
                  "sample_length": 0}
    clip = float(config["trainer"].get("gradient_clip_val") or 1.0)
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "lightning": []}
    for rep in range(reps):
        order = ("plain", "lightning") if rep % 2 == 0 else ("lightning", "plain")
        for mode in order:
            torch.manual_seed(rep)
            model = CharRNN(**model_args)
            if mode == "plain":
                times[mode].append(_plain_loop(model, batches, model.hparams.lr, clip, warmup))
            else:
                times[mode].append(_lightning_loop(model, batches, clip, warmup))
    steady = {mode: statistics.median(t for t, _ in runs) for mode, runs in times.items()}
    whole = {mode: statistics.median(t for _, t in runs) for mode, runs in times.items()}
    return {
        "steps": steps, "warmup": warmup, "reps": reps, "chars_per_step": chars / steps,
        "plain_chars_per_s": chars / steady["plain"],
        "lightning_chars_per_s": chars / steady["lightning"],
        "overhead_ratio": steady["lightning"] / steady["plain"],
        "plain_call_s": whole["plain"], "lightning_call_s": whole["lightning"],
        "per_rep_s": {mode: [round(t, 3) for t, _ in runs] for mode, runs in times.items()},
    }


class _ValClock(L.Callback):
    """(wall seconds since fit start, step, val_loss) at every validation, outside the sanity check."""

    def __init__(self) -> None:
        self.start, self.points = 0.0, []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            point = (time.perf_counter() - self.start, trainer.global_step, float(trainer.callback_metrics["val_loss"]))
            self.points.append(point)
            print("  {:.1f} s, step {}: val_loss {:.4f}".format(*point), file=sys.stderr, flush=True)


@torch.no_grad()
def val_loss_with_windows(model: CharRNN, ids: torch.Tensor, window: int, batch_size: int = 64) -> float:
    """Mean nats/char of the validation text cut into contiguous windows of ``window`` characters."""
    model.eval()
    total, count = 0.0, 0
    for x, y in TextWindows(ids, window, batch_size):
        logits, _ = model(x)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
        count += y.numel()
    return total / count


def quality(config: dict[str, Any], text: Path, eval_windows: Sequence[int] = ()) -> dict[str, Any]:
    """Train as configured (training + validation timed, no MLflow or checkpoints); the val curve,
    then (untimed) the final model's validation loss with each window length in ``eval_windows``."""
    L.seed_everything(config["seed"], verbose=False)
    data = TextDataModule(**{**config["data"], "path": str(text)})
    model = CharRNN(**{**config["model"], "sample_length": 0})
    clock = _ValClock()
    trainer_args = {k: v for k, v in config["trainer"].items() if k not in ("logger", "callbacks")}
    trainer = L.Trainer(**{**trainer_args, "logger": False, "enable_checkpointing": False,
                           "enable_progress_bar": False, "enable_model_summary": False, "callbacks": [clock]})
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    begin = time.perf_counter()
    trainer.fit(model, datamodule=data)
    wall = time.perf_counter() - begin
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    chars = trainer.global_step * data.hparams.batch_size * data.hparams.seq_len
    by_window = {w: val_loss_with_windows(model, data.val_ids, w) for w in eval_windows}
    return {
        "val_loss_by_window": by_window,
        "curve": clock.points, "final_val_loss": clock.points[-1][2] if clock.points else float("nan"),
        "fit_wall_s": wall, "train_chars": chars, "steps": trainer.global_step,
        "user_cpu_s": cpu1.ru_utime - cpu0.ru_utime, "system_cpu_s": cpu1.ru_stime - cpu0.ru_stime,
        "threads": torch.get_num_threads(),
    }


def run(config: str | Path = DEFAULT_CONFIG, text: str | Path = DEFAULT_TEXT, steps: int = 40, reps: int = 3,
        overrides: Sequence[str] = (), skip_quality: bool = False, skip_throughput: bool = False,
        eval_windows: Sequence[int] = ()) -> dict[str, Any]:
    """Both measurements; returns {"config", "throughput", "quality", "machine"}."""
    text = Path(text)
    if not text.is_file():
        if not skip_quality:
            raise SystemExit(f"{text} not found: pass --text path/to/tinyshakespeare/input.txt")
        text = None  # throughput only (make bench on a clone without ../shared): the embedded corpus
    cfg = load_config(Path(config), overrides)
    shown = str(text) if text is not None else "the embedded corpus (pydoc_data.topics)"
    result: dict[str, Any] = {"config": str(config), "overrides": list(overrides), "text": shown,
                              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                          "load_avg_start": os.getloadavg()}}
    if not skip_throughput:
        result["throughput"] = throughput(cfg, text, steps, reps)
    if not skip_quality:
        result["quality"] = quality(cfg, text, eval_windows)
    result["machine"]["load_avg_end"] = os.getloadavg()
    return result


def markdown(result: dict[str, Any]) -> str:
    """The numbers as Markdown tables."""
    load = result["machine"]
    lines = [f"config `{result['config']}` {' '.join(result['overrides'])} on `{result['text']}`; "
             f"{load['cpus']} CPUs, {load['torch_threads']} torch threads, load average "
             f"{load['load_avg_start'][0]:.1f} → {load['load_avg_end'][0]:.1f}", ""]
    if tp := result.get("throughput"):
        lines += [f"Throughput ({tp['steps']} steps of {tp['chars_per_step']:.0f} characters after {tp['warmup']} "
                  f"warm-up steps, median of {tp['reps']} interleaved repetitions):", "",
                  "| loop | chars/s | whole call (s) | per repetition (s) |", "|---|---:|---:|---|",
                  f"| plain PyTorch | {tp['plain_chars_per_s']:,.0f} | {tp['plain_call_s']:.2f} | "
                  f"{tp['per_rep_s']['plain']} |",
                  f"| Lightning Trainer | {tp['lightning_chars_per_s']:,.0f} | {tp['lightning_call_s']:.2f} | "
                  f"{tp['per_rep_s']['lightning']} |", "",
                  f"Lightning / plain time per step: **{tp['overhead_ratio']:.3f}**", ""]
    if q := result.get("quality"):
        lines += [f"Validation loss against wall time (training + validation, {q['steps']} steps, "
                  f"{q['train_chars']:,} training characters, {q['fit_wall_s']:.1f} s wall, "
                  f"{q['user_cpu_s']:.1f} s user CPU):", "",
                  "| wall (s) | step | val loss (nats/char) |", "|---:|---:|---:|"]
        lines += [f"| {wall:.1f} | {step} | {loss:.4f} |" for wall, step, loss in q["curve"]]
        if q["val_loss_by_window"]:
            lines += ["", "Final model, validation text cut into windows of n characters (each window "
                          "starts without context):", "", "| window | val loss |", "|---:|---:|"]
            lines += [f"| {w} | {loss:.4f} |" for w, loss in q["val_loss_by_window"].items()]
        lines += ["", f"nanoGPT baseline (issue): {NANOGPT_BASELINE['val_loss']} after "
                      f"~{NANOGPT_BASELINE['wall_s']:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="char-RNN experiment YAML")
    parser.add_argument("--text", default=str(DEFAULT_TEXT), help="corpus (UTF-8 text) to train on")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per throughput repetition")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each loop")
    parser.add_argument("--override", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change the config, e.g. trainer.max_steps=4000 or model.hidden=384")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 gives steadier CPU-time "
                             "figures on a machine shared with other jobs")
    parser.add_argument("--eval-windows", default="", metavar="N,N,...",
                        help="after training, also score the final model with validation windows of these "
                             "lengths, e.g. 64,256,1024")
    parser.add_argument("--skip-quality", action="store_true", help="only measure throughput")
    parser.add_argument("--skip-throughput", action="store_true", help="only measure val loss vs wall time")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    windows = [int(w) for w in args.eval_windows.split(",") if w]
    result = run(args.config, args.text, args.steps, args.reps, args.override, args.skip_quality,
                 args.skip_throughput, windows)
    print(markdown(result))


if __name__ == "__main__":
    sys.exit(main())
