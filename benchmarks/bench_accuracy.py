"""Time-to-accuracy: seconds until lit-nn's CNN first reaches a validation accuracy.

What a learner waits for is not an epoch but a result: how long until ``make train``'s CNN
passes 98 % on the MNIST sample, and ``experiments/fashion_cnn.yaml``'s passes 90 % on
Fashion-MNIST. Each run uses the experiment file's model, data and seed settings, validates
after every epoch (as ``lit-nn fit`` does), stops at the first epoch that reaches the target,
and gives up after twice the file's ``max_epochs`` (or ``cap_s`` seconds): the question is how
long the target takes, also when the configured run stops short of it. The clock starts before
``Trainer.fit`` (so data loading counts) and does not include Python start-up or imports
(see the start-up benchmark for those). Logger and checkpoints are off.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

from benchmarks.common import Experiment, fmt_s, log, markdown_table, quiet_lightning, verdict

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class ReachTarget(L.Callback):
    """Records the elapsed time of every validation and stops training at the first that reaches ``target``."""

    def __init__(self, target: float, start: float, cap_s: float | None, metric: str = "val_acc") -> None:
        self.target, self.start, self.cap_s, self.metric = target, start, cap_s, metric
        self.history: list[tuple[int, float, float]] = []  # (epoch, seconds since start, accuracy)
        self.reached: tuple[int, float, float] | None = None
        self.capped = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            return
        elapsed = time.perf_counter() - self.start
        entry = (trainer.current_epoch + 1, elapsed, float(value))
        self.history.append(entry)
        if self.reached is None and entry[2] >= self.target:
            self.reached = entry
            trainer.should_stop = True
        elif self.cap_s is not None and elapsed > self.cap_s:
            self.capped = True
            trainer.should_stop = True


def time_to_accuracy(experiment: str, target: float, *, max_epochs: int | None = None,
                     cap_s: float | None = None, data_overrides: dict[str, Any] | None = None,
                     trainer_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``experiments/<experiment>.yaml`` until ``val_acc >= target``; return when and how."""
    from lit_nn.cli.train import TRAINER_DEFAULTS

    exp = Experiment.load(experiment)
    configured = exp.trainer_args().get("max_epochs", TRAINER_DEFAULTS["max_epochs"])
    epochs = max_epochs or 2 * configured
    L.seed_everything(exp.config.get("seed_everything", 0), verbose=False)
    model = exp.model()
    dm = exp.datamodule(**(data_overrides or {}))
    start = time.perf_counter()
    reach = ReachTarget(target, start, cap_s)
    trainer = L.Trainer(**{**TRAINER_DEFAULTS, "max_epochs": epochs, **(trainer_overrides or {})},
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, callbacks=[reach])
    trainer.fit(model, datamodule=dm)
    total = time.perf_counter() - start
    n_train = len(dm.splits["train"][0]) if hasattr(dm, "splits") else None
    return {
        "experiment": experiment, "target": target, "max_epochs": epochs, "configured_epochs": configured,
        "source": getattr(dm, "source", None),
        "n_train": n_train, "batch_size": dm.hparams.get("batch_size"),
        "reached": reach.reached is not None,
        "seconds": reach.reached[1] if reach.reached else None,
        "epoch": reach.reached[0] if reach.reached else None,
        "best": max((h[2] for h in reach.history), default=None),
        "history": reach.history, "total_s": total, "capped": reach.capped,
    }


def run(quick: bool = False, cap_s: float = 240.0) -> dict[str, Any]:
    """MNIST sample to 98 %; Fashion-MNIST to 90 % when the Debian package is installed."""
    quiet_lightning()
    results: dict[str, Any] = {"quick": quick}
    limits = {"limit_train_batches": 3, "limit_val_batches": 1} if quick else {}
    with tempfile.TemporaryDirectory(prefix="lit-nn-bench-") as tmp:
        # an empty root: the MNIST sample is the embedded one even where data/MNIST/raw exists
        log("time-to-accuracy: CNN on the MNIST sample to 98 %")
        results["mnist"] = time_to_accuracy("mnist_cnn", 0.98, max_epochs=2 if quick else None, cap_s=cap_s,
                                            data_overrides={"root": tmp}, trainer_overrides=limits)
        fashion_files = sorted(FASHION_DIR.glob("*-ubyte*")) if FASHION_DIR.is_dir() else []
        if len(fashion_files) >= 4:
            log(f"time-to-accuracy: CNN on Fashion-MNIST ({FASHION_DIR}) to 90 %")
            results["fashion"] = time_to_accuracy("fashion_cnn", 0.90, max_epochs=1 if quick else None,
                                                  cap_s=cap_s, data_overrides={"root": tmp},
                                                  trainer_overrides=limits)
        else:
            results["fashion"] = {"skipped": f"not installed ({FASHION_DIR} missing; "
                                             "apt-get install dataset-fashion-mnist)"}
    return results


def report(result: dict[str, Any]) -> str:
    """The Markdown section for BENCHMARKS.md."""
    lines = ["## Time to accuracy", "",
             "Seconds from `Trainer.fit` (data loading included; interpreter start-up and imports not) until the "
             "validation accuracy after an epoch first reaches the target; the experiment file's model, data and "
             "seed, up to twice its `max_epochs`; CPU, logger and checkpoints off.", ""]
    rows = []
    for key, label in (("mnist", "CNN, MNIST sample (`experiments/mnist_cnn.yaml`)"),
                       ("fashion", "CNN, Fashion-MNIST (`experiments/fashion_cnn.yaml`)")):
        r = result.get(key)
        if r is None:
            continue
        if "skipped" in r:
            rows.append([label, "—", "skipped: " + r["skipped"], "—", "—", "—"])
            continue
        beyond = r["reached"] and r["epoch"] > r["configured_epochs"]
        when = (f"{fmt_s(r['seconds'])} (epoch {r['epoch']}"
                + (f", beyond the configured {r['configured_epochs']}" if beyond else "") + ")" if r["reached"]
                else f"not reached in {len(r['history'])} epoch(s) ({fmt_s(r['total_s'])})"
                + (", stopped at the time cap" if r["capped"] else ""))
        curve = ", ".join(f"{acc:.3f}" for _, _, acc in r["history"])
        rows.append([label, f"{r['target']:.0%}", when, f"{r['n_train']:,} × batch {r['batch_size']}",
                     curve, verdict(r["reached"])])
    lines.append(markdown_table(["run", "target", "time to target", "train images × batch",
                                 "val_acc after each epoch", "reached"], rows))
    sources = [f"{k}: {result[k]['source']}" for k in ("mnist", "fashion") if result.get(k, {}).get("source")]
    if sources:
        lines += ["", "Data: " + "; ".join(sources) + "."]
    return "\n".join(lines)
