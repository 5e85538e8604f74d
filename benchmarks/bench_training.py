"""Epoch time of lit-nn's training path against a plain PyTorch loop and the classic tutorial loop.

Every variant trains the model class lit-nn trains (``experiments/mnist_cnn.yaml``,
``experiments/mnist_mlp.yaml``) on the same 4,000 training images of the embedded MNIST
sample, with the same optimizer and batch size, in one process and interleaved:

* **Trainer** — ``lightning.Trainer`` built the way ``lit-nn fit`` builds it (lit-nn's
  ``TRAINER_DEFAULTS``, its ``ImageDataModule`` serving in-memory ``TensorBatches``, its
  ``ProgressBar`` when the bar is on), CPU, logger and checkpoints off;
* **plain** — a hand-written loop over the same tensors: seeded permutation, index slicing,
  forward, cross-entropy, backward, step, and the per-epoch loss/accuracy bookkeeping kept
  as tensors (one ``.item()`` per epoch);
* **tutorial** — ``torchvision.datasets.MNIST(root, transform=ToTensor())`` +
  ``DataLoader(batch_size=32, shuffle=True)``, the loop of the PyTorch MNIST example
  (``loss.item()`` every 10 batches for its log line).

Augmentation is off in every comparison (the tutorial has none); its cost is a row of its own.
An epoch is timed from one ``on_train_epoch_start`` to the next; the first epoch of each fit
is reported separately (it pays one-time costs), the rest are the steady per-epoch cost.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from benchmarks.common import (
    EpochTimer,
    Experiment,
    FitResult,
    Timing,
    fmt_s,
    interleave,
    log,
    markdown_table,
    paired_ratio,
    quiet_lightning,
    verdict,
)

TARGETS = {"cnn": 1.10, "mlp": 1.25, "tutorial": 2.0, "mlflow_pct": 3.0}


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # "cnn" or "mlp"
    batch_size: int
    kind: str  # "trainer", "plain" or "tutorial"
    description: str
    progress_bar: bool = False
    augment: bool = False
    validate: bool = False
    mlflow: str = ""  # "", "sync" (lit-nn's MLflowTracker as is) or "async" (synchronous=False)


def variants(cnn_batch: int, mlp_batch: int) -> list[Variant]:
    """The variants, in the order they run within a round."""
    c, m, t = cnn_batch, mlp_batch, 32
    return [
        Variant("cnn_trainer_bar", "cnn", c, "trainer", "lit-nn Trainer, progress bar (as `make train`)", True),
        Variant("cnn_trainer", "cnn", c, "trainer", "lit-nn Trainer, no progress bar"),
        Variant("cnn_plain", "cnn", c, "plain", "plain PyTorch loop"),
        Variant("cnn_trainer_bar_augment", "cnn", c, "trainer", "lit-nn Trainer, progress bar, augment on",
                True, augment=True),
        Variant("mlp_trainer_bar", "mlp", m, "trainer", "lit-nn Trainer, progress bar", True),
        Variant("mlp_trainer", "mlp", m, "trainer", "lit-nn Trainer, no progress bar"),
        Variant("mlp_plain", "mlp", m, "plain", "plain PyTorch loop"),
        Variant("cnn32_tutorial", "cnn", t, "tutorial", "classic tutorial: torchvision MNIST + ToTensor + DataLoader"),
        Variant("cnn32_trainer_bar", "cnn", t, "trainer", "lit-nn Trainer, progress bar", True),
        Variant("cnn32_plain", "cnn", t, "plain", "plain PyTorch loop"),
        Variant("cnn_val", "cnn", c, "trainer", "lit-nn Trainer + validation, logger off", validate=True),
        Variant("cnn_val_mlflow", "cnn", c, "trainer",
                "lit-nn Trainer + validation, MLflowTracker + RunRecorder (SQLite)", validate=True, mlflow="sync"),
        Variant("cnn_val_mlflow_async", "cnn", c, "trainer",
                "the same, MLflow logging asynchronous (`synchronous=False`, proposed)", validate=True,
                mlflow="async"),
    ]


# -- the three ways to train -----------------------------------------------------------------
_TERMINAL: dict[str, Any] = {}


def terminal_console() -> dict[str, Any]:
    """Rich console settings that render the bar as on a terminal, into /dev/null.

    A bar writing to a pipe does almost nothing; ``make train`` runs in a terminal.
    """
    if not _TERMINAL:
        _TERMINAL.update(force_terminal=True, file=open(os.devnull, "w"), width=120)  # noqa: SIM115
    return _TERMINAL


def trainer_fit(model: L.LightningModule, datamodule: L.LightningDataModule, epochs: int, *,
                progress_bar: bool | L.Callback, validate: bool = False, logger: Any = None,
                callbacks: list[L.Callback] | None = None, clock: Callable[[], float] = time.perf_counter) -> FitResult:
    """One ``Trainer.fit`` configured as ``lit-nn fit`` configures it (see ``LitNNCLI.instantiate_trainer``).

    ``progress_bar``: True for lit-nn's bar, False for none, or another progress-bar callback.
    ``clock`` times the epochs (:class:`~benchmarks.common.EpochTimer`); the fit is wall time.
    """
    from lit_nn.cli.progress import ProgressBar
    from lit_nn.cli.train import TRAINER_DEFAULTS

    timer = EpochTimer(clock)
    cbs: list[L.Callback] = [timer, *(callbacks or [])]
    if progress_bar is True:
        cbs.append(ProgressBar(console_kwargs=terminal_console()))  # lit-nn's bar, drawn as on a terminal
    elif progress_bar is not False:
        cbs.append(progress_bar)
    extra: dict[str, Any] = {} if validate else {"limit_val_batches": 0}
    trainer = L.Trainer(**{**TRAINER_DEFAULTS, "max_epochs": epochs}, accelerator="cpu", devices=1,
                        logger=logger if logger is not None else False, enable_checkpointing=False,
                        enable_progress_bar=progress_bar is not False, callbacks=cbs, **extra)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return timer.epoch_times(), time.perf_counter() - start


def plain_fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              batch_size: int, epochs: int, seed: int = 0) -> FitResult:
    """The loop one writes by hand over in-memory tensors (same shuffle as ``TensorBatches``)."""
    start = time.perf_counter()
    times = []
    n = len(x)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        correct = torch.zeros((), dtype=torch.long)
        loss_sum = torch.zeros(())
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                correct += (logits.argmax(1) == yb).sum()
                loss_sum += loss.detach() * len(yb)
        _ = (correct.item() / n, loss_sum.item() / n)  # the epoch's train_acc, train_loss
        times.append(time.perf_counter() - t0)
    return times, time.perf_counter() - start


def tutorial_fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, root: Path, batch_size: int,
                 epochs: int, log_interval: int = 10) -> FitResult:
    """The classic loop: a torchvision dataset building every sample with ``ToTensor`` + ``DataLoader``."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    start = time.perf_counter()
    dataset = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor(), download=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for batch_idx, (data, target) in enumerate(loader):
            optimizer.zero_grad()
            output = model(data)
            loss = F.cross_entropy(output, target)
            loss.backward()
            optimizer.step()
            if batch_idx % log_interval == 0:
                _ = loss.item()  # the tutorial prints it
        times.append(time.perf_counter() - t0)
    return times, time.perf_counter() - start


def tutorial_optimizer(model: L.LightningModule) -> torch.optim.Optimizer:
    """The optimizer as a tutorial writes it: ``optim.Adam(model.parameters(), lr=...)``, library defaults.

    (The plain loop instead uses ``model.configure_optimizers()``, exactly lit-nn's optimizer.)
    """
    from lit_nn.models.optimizers import OPTIMIZERS

    hp = model.hparams
    return OPTIMIZERS[hp.optimizer](model.parameters(), lr=hp.lr)


def write_torchvision_mnist(root: Path, train: tuple[torch.Tensor, torch.Tensor],
                            test: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """Write uint8 images/labels as uncompressed IDX in ``root/MNIST/raw/``.

    ``torchvision.datasets.MNIST(root)`` without ``download`` only checks that the four
    uncompressed files exist there (no checksum) and reads them; nothing goes to the network.
    """
    from lit_nn.data.idx import write_idx

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def to_uint8(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Undo ``ImageDataModule._normalize``: (N, 1, 28, 28) floats back to (N, 28, 28) uint8."""
    return (x.squeeze(1) * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)


# -- running the comparison ---------------------------------------------------------------------
class Bench:
    """Owns the shared data and builds one fit per variant on demand."""

    def __init__(self, workdir: Path, n_train: int | None, n_val: int | None, tracking_uri: str) -> None:
        from lit_nn.data import ImageDataModule

        self.experiments = {"cnn": Experiment.load("mnist_cnn"), "mlp": Experiment.load("mnist_mlp")}
        self.empty_root = workdir / "no-data"  # no IDX files: ImageDataModule uses the embedded sample
        self.empty_root.mkdir(exist_ok=True)
        base = ImageDataModule(dataset="mnist", root=str(self.empty_root))
        base.setup("fit")
        x, y = base.splits["train"]
        xv, yv = base.splits["val"]
        # the splits are in file order, which is class order: subsets are spread over the whole split
        if n_train is not None:
            keep = torch.linspace(0, len(x) - 1, min(n_train, len(x))).long()
            x, y = x[keep], y[keep]
        if n_val is not None:
            keep = torch.linspace(0, len(xv) - 1, min(n_val, len(xv))).long()
            xv, yv = xv[keep], yv[keep]
        self.splits = {"train": (x, y), "val": (xv, yv)}
        self.source = base.source
        self.n_train = len(x)
        spec = base.spec
        self.tutorial_root = write_torchvision_mnist(
            workdir / "torchvision", (to_uint8(x, spec.mean, spec.std), y), (to_uint8(xv, spec.mean, spec.std), yv))
        self.tracking_uri = tracking_uri

    def datamodule(self, v: Variant) -> L.LightningDataModule:
        from lit_nn.data import ImageDataModule

        dm = ImageDataModule(dataset="mnist", root=str(self.empty_root), batch_size=v.batch_size, augment=v.augment)
        dm.splits = dict(self.splits)
        dm.source = self.source
        return dm

    def model(self, v: Variant) -> L.LightningModule:
        torch.manual_seed(0)  # every fit starts from the same weights
        # a constant learning rate: the loops are compared, and a plain loop has no Trainer to size a
        # schedule by (the default run's one-cycle schedule is one LambdaLR step per batch)
        return self.experiments[v.model].model(lr_schedule="constant")

    def mlflow_callbacks(self, v: Variant) -> tuple[Any, list[L.Callback]]:
        import yaml

        from lit_nn.tracking.callbacks import RunRecorder, flatten_config
        from lit_nn.tracking.logger import MLflowTracker

        config = self.experiments[v.model].config
        tracker = MLflowTracker("bench-mlflow", run_name=v.name, tracking_uri=self.tracking_uri)
        if v.mlflow == "async":  # what MLFlowLogger(synchronous=False) sets; finalize() drains the queue
            tracker._log_batch_kwargs = {"synchronous": False}
        # what lit-nn fit's MLflowSaveConfig writes at the start of a run
        tracker.log_hyperparams(flatten_config(config))
        tracker.log_text(yaml.safe_dump(config), "config.yaml")
        return tracker, [RunRecorder(log_checkpoint=False)]

    def fit(self, v: Variant, epochs: int) -> FitResult:
        model = self.model(v)
        if v.kind == "plain":
            x, y = self.splits["train"]
            return plain_fit(model, model.configure_optimizers(), x, y, v.batch_size, epochs)
        if v.kind == "tutorial":
            return tutorial_fit(model, tutorial_optimizer(model), self.tutorial_root, v.batch_size, epochs)
        logger, callbacks = self.mlflow_callbacks(v) if v.mlflow else (None, [])
        return trainer_fit(model, self.datamodule(v), epochs, progress_bar=v.progress_bar, validate=v.validate,
                           logger=logger, callbacks=callbacks)


def run(quick: bool = False, rounds: int | None = None, epochs: int | None = None,
        workdir: Path | None = None, only: list[str] | None = None, n_train: int | None = None,
        warmup: bool = True) -> dict[str, Any]:
    """Time every variant interleaved; return the timings and the comparisons against the targets.

    ``only`` restricts the variants by name; ``n_train`` cuts the training set (quick: 256);
    ``warmup`` runs each variant once, untimed, first.
    """
    from lit_nn.tracking.store import ensure_experiment

    quiet_lightning()
    rounds = rounds or (2 if quick else 3)
    epochs = epochs or (2 if quick else 3)
    with tempfile.TemporaryDirectory(prefix="lit-nn-bench-") as tmp:
        work = Path(workdir or tmp)
        store = work / "mlruns"
        store.mkdir(exist_ok=True)
        uri = f"sqlite:///{store}/mlflow.db"
        chosen = [v for v in variants(64, 128) if only is None or v.name in only]
        if any(v.mlflow for v in chosen):
            ensure_experiment("bench-mlflow", uri)  # creates the SQLite schema outside the timings
        bench = Bench(work, n_train=n_train or (256 if quick else None), n_val=128 if quick else None,
                      tracking_uri=uri)
        cnn_batch = bench.experiments["cnn"].data_args().get("batch_size", 64)
        mlp_batch = bench.experiments["mlp"].data_args().get("batch_size", 128)
        chosen = [v for v in variants(cnn_batch, mlp_batch) if only is None or v.name in only]
        by_name = {v.name: v for v in chosen}
        fits: dict[str, Callable[[], FitResult]] = {
            v.name: (lambda v=v: bench.fit(v, epochs)) for v in chosen
        }
        log(f"training: {len(chosen)} variants × {rounds} rounds × {epochs} epochs on {bench.n_train} images")
        started = time.perf_counter()
        timings = interleave(fits, {v.name: bench.n_train for v in chosen}, rounds,
                             warmup=(lambda name: bench.fit(by_name[name], 1)) if warmup else None)
        elapsed = time.perf_counter() - started
        _restore_console()
    return {
        "n_train": bench.n_train, "data_source": bench.source, "rounds": rounds, "epochs_per_fit": epochs,
        "elapsed_s": elapsed, "cnn_batch": cnn_batch, "mlp_batch": mlp_batch,
        "variants": {name: {**t.as_dict(), "description": by_name[name].description,
                            "batch_size": by_name[name].batch_size} for name, t in timings.items()},
        "comparisons": compare(timings),
        "_timings": timings,
    }


def _restore_console() -> None:
    from rich import reconfigure

    reconfigure()  # the bar pointed rich's global console at /dev/null
    if _TERMINAL:
        _TERMINAL["file"].close()
        _TERMINAL.clear()


def compare(t: dict[str, Timing]) -> list[dict[str, Any]]:
    """The ratios the issue sets targets for, plus the costs that explain them."""
    rows: list[dict[str, Any]] = []

    def ratio(label: str, a: str, b: str, target: float | None = None, at_least: bool = False) -> None:
        if a not in t or b not in t:
            return
        med, lo, hi = paired_ratio(t[a], t[b])
        value = t[a].epoch_s / t[b].epoch_s
        met = None if target is None else (value >= target if at_least else value <= target)
        rows.append({"label": label, "a": a, "b": b, "value": value, "paired": (med, lo, hi), "unit": "×",
                     "target": None if target is None else (f"≥ {target:g}×" if at_least else f"≤ {target:g}×"),
                     "met": met})

    def cost(label: str, a: str, b: str, target_pct: float | None = None) -> None:
        if a not in t or b not in t:
            return
        med, lo, hi = paired_ratio(t[a], t[b])
        value = 100 * (t[a].epoch_s / t[b].epoch_s - 1)
        met = None if target_pct is None else value <= target_pct
        rows.append({"label": label, "a": a, "b": b, "value": value,
                     "paired": (100 * (med - 1), 100 * (lo - 1), 100 * (hi - 1)), "unit": "%",
                     "target": None if target_pct is None else f"≤ {target_pct:g} %", "met": met})

    ratio("CNN: Trainer (as `make train`) / plain loop", "cnn_trainer_bar", "cnn_plain", TARGETS["cnn"])
    ratio("CNN: Trainer without progress bar / plain loop", "cnn_trainer", "cnn_plain")
    ratio("MLP: Trainer (as `make train`) / plain loop", "mlp_trainer_bar", "mlp_plain", TARGETS["mlp"])
    ratio("MLP: Trainer without progress bar / plain loop", "mlp_trainer", "mlp_plain")
    ratio("CNN batch 32: tutorial loop / lit-nn Trainer", "cnn32_tutorial", "cnn32_trainer_bar",
          TARGETS["tutorial"], at_least=True)
    ratio("CNN batch 32: lit-nn Trainer / plain loop", "cnn32_trainer_bar", "cnn32_plain")
    cost("MLflow logging (per-epoch metrics), % of an epoch with validation", "cnn_val_mlflow", "cnn_val",
         TARGETS["mlflow_pct"])
    cost("MLflow logging, asynchronous (proposed), % of an epoch with validation", "cnn_val_mlflow_async",
         "cnn_val", TARGETS["mlflow_pct"])
    cost("progress bar, % of a CNN epoch", "cnn_trainer_bar", "cnn_trainer")
    cost("progress bar, % of an MLP epoch", "mlp_trainer_bar", "mlp_trainer")
    cost("augmentation (±2 px shifts), % of a CNN epoch", "cnn_trainer_bar_augment", "cnn_trainer_bar")
    for name, how in (("cnn_val_mlflow", ""), ("cnn_val_mlflow_async", ", asynchronous")):
        if name in t and "cnn_val" in t:
            fixed = t[name].fit_overhead_s - t["cnn_val"].fit_overhead_s
            rows.append({"label": f"MLflow per-run cost{how} (create run, params, tags, config.yaml, finish)",
                         "a": name, "b": "cnn_val", "value": fixed, "paired": None, "unit": "s",
                         "target": None, "met": None})
    return rows


def _value(row: dict[str, Any]) -> str:
    if row["unit"] == "×":
        return f"{row['value']:.3f}×"
    if row["unit"] == "%":
        return f"{row['value']:+.1f} %"
    return fmt_s(row["value"])


def _paired(row: dict[str, Any]) -> str:
    if row["paired"] is None:
        return ""
    med, lo, hi = row["paired"]
    if row["unit"] == "×":
        return f"{med:.3f} ({lo:.3f}–{hi:.3f})"
    return f"{med:+.1f} ({lo:+.1f} – {hi:+.1f})"


def report(result: dict[str, Any]) -> str:
    """The Markdown section for BENCHMARKS.md."""
    n, rounds, epochs = result["n_train"], result["rounds"], result["epochs_per_fit"]
    steady = max(epochs - 1, 1)
    lines = [
        "## Training speed: lit-nn Trainer vs plain PyTorch vs the classic tutorial loop",
        "",
        f"One process, {rounds} interleaved rounds (order rotated each round), each variant a fresh fit of "
        f"{epochs} epochs over the same {n:,} training images ({result['data_source']}); "
        f"the epoch time is the median of the {steady} epoch(s) after the first of every fit "
        f"({rounds * steady} per variant). Augmentation off unless stated; CPU; logger and checkpoints off "
        "unless stated. `set-up+teardown` is what a fit spends outside its epochs.",
        "",
    ]
    rows = []
    for name, v in result["variants"].items():
        lo, hi = min(map(_round_median, v["epochs"])), max(map(_round_median, v["epochs"]))
        rows.append([f"`{name}`", v["description"], v["batch_size"], fmt_s(v["epoch_s"]),
                     f"{v['samples_per_s']:,.0f}", f"{fmt_s(lo)} – {fmt_s(hi)}",
                     fmt_s(v["first_epoch_extra_s"]), fmt_s(v["fit_overhead_s"])])
    lines.append(markdown_table(
        ["variant", "what", "batch", "epoch (median)", "samples/s", "round medians (min – max)",
         "first epoch extra", "set-up+teardown"], rows))
    lines += ["", "### Ratios and costs", "",
              "`value` compares the overall medians; `per round` is the median (min–max) of the same "
              "comparison made within each round, a measure of how much the machine's noise moves it.", ""]
    lines.append(markdown_table(
        ["comparison", "value", "per round", "target", "met"],
        [[r["label"], _value(r), _paired(r), r["target"] or "—", verdict(r["met"])] for r in result["comparisons"]]))
    return "\n".join(lines)


def _round_median(epochs: list[float]) -> float:
    import statistics

    return statistics.median(epochs[1:] if len(epochs) > 1 else epochs)
