"""Loss functions: how each one punishes a prediction, and why classifiers use cross-entropy.

Part 1 draws torch's MSE, MAE, Huber, binary and multi-class cross-entropy, KL divergence
and hinge loss against the predicted value for a fixed target, and checks each against its
textbook formula (``HAND_FORMULAS``; the tests do the same on random inputs).

Part 2 trains the same :class:`~lit_nn.models.MLP` twice on the MNIST sample through the
Lightning Trainer: once with softmax + cross-entropy (the model's own loss) and once with
the squared error between the softmax output and the one-hot target. Cross-entropy's
gradient is ``softmax − one-hot``; the squared error multiplies that by the softmax's own
derivative, which goes to zero exactly when the network is confidently wrong — so it
learns more slowly from the same start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F

from lit_nn.core.errors import check_positive
from lit_nn.core.names import Metric, Tag
from lit_nn.data.images import ImageDataModule
from lit_nn.lab.recording import lab_run
from lit_nn.lab.tables import sci, table
from lit_nn.models import MLP
from lit_nn.models.optimizers import check_optimizer_args
from lit_nn.tracking.figures import plt

Pair = tuple[torch.Tensor, torch.Tensor]


# -- part 1: the losses --------------------------------------------------------------------
@dataclass(frozen=True)
class Loss:
    formula: str
    builtin: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # torch, mean over the batch
    hand: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # the textbook formula
    sample: Callable[[torch.Generator, int], Pair]  # random valid (prediction, target) of a batch


def _hinge(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_{j≠y} max(0, 1 − s_y + s_j) / C: torch's multi-class hinge averages over the C classes."""
    true = scores.gather(1, labels[:, None])
    margins = (1 - true + scores).clamp(min=0)
    margins = margins.scatter(1, labels[:, None], 0.0)
    return (margins.sum(1) / scores.shape[1]).mean()


def _softmax_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probs = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    return -torch.log(probs.gather(1, labels[:, None])).mean()


def _probs(gen: torch.Generator, n: int, k: int) -> torch.Tensor:
    return torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), 1)


LOSSES: dict[str, Loss] = {
    "mse": Loss("(p − t)²", F.mse_loss, lambda p, t: ((p - t) ** 2).mean(),
                lambda g, n: (torch.randn(n, generator=g, dtype=torch.float64),
                              torch.randn(n, generator=g, dtype=torch.float64))),
    "mae": Loss("|p − t|", F.l1_loss, lambda p, t: (p - t).abs().mean(),
                lambda g, n: (torch.randn(n, generator=g, dtype=torch.float64),
                              torch.randn(n, generator=g, dtype=torch.float64))),
    "huber": Loss("½d² if |d| ≤ 1 else |d| − ½", F.huber_loss,
                  lambda p, t: torch.where((p - t).abs() <= 1, 0.5 * (p - t) ** 2, (p - t).abs() - 0.5).mean(),
                  lambda g, n: (3 * torch.randn(n, generator=g, dtype=torch.float64),
                                torch.randn(n, generator=g, dtype=torch.float64))),
    "binary_cross_entropy": Loss(
        "−t·log p − (1−t)·log(1−p)", F.binary_cross_entropy,
        lambda p, t: (-(t * torch.log(p) + (1 - t) * torch.log(1 - p))).mean(),
        lambda g, n: (torch.rand(n, generator=g, dtype=torch.float64).clamp(1e-3, 1 - 1e-3),
                      torch.randint(0, 2, (n,), generator=g).double())),
    "cross_entropy": Loss("−log softmax(z)_y", F.cross_entropy, _softmax_ce,
                          lambda g, n: (torch.randn(n, 5, generator=g, dtype=torch.float64),
                                        torch.randint(0, 5, (n,), generator=g))),
    "kl_divergence": Loss(
        "Σ t·(log t − log q)", lambda log_q, t: F.kl_div(log_q, t, reduction="batchmean"),
        lambda log_q, t: (t * (torch.log(t) - log_q)).sum(1).mean(),
        lambda g, n: (torch.log(_probs(g, n, 4)), _probs(g, n, 4))),
    "hinge": Loss("Σ_{j≠y} max(0, 1 − s_y + s_j) / C", F.multi_margin_loss, _hinge,
                  lambda g, n: (torch.randn(n, 3, generator=g, dtype=torch.float64),
                                torch.randint(0, 3, (n,), generator=g))),
}


def formula_gaps(n: int = 256, seed: int = 0) -> dict[str, float]:
    """Largest |torch − formula| per loss on a random batch (float64): ~1e-16 when they agree."""
    gen = torch.Generator().manual_seed(seed)
    gaps = {}
    for name, loss in LOSSES.items():
        pred, target = loss.sample(gen, n)
        gaps[name] = float((loss.builtin(pred, target) - loss.hand(pred, target)).abs())
    return gaps


def curves(points: int = 400) -> dict[str, tuple[str, torch.Tensor, dict[str, torch.Tensor]]]:
    """Every loss against the predicted value for a fixed target, computed with torch's functions.

    Returns ``{panel title: (x label, x, {curve label: loss values})}``.
    """
    s = torch.linspace(-3, 3, points, dtype=torch.float64)
    p = torch.linspace(1e-3, 1 - 1e-3, points, dtype=torch.float64)
    zero, none = torch.zeros_like(s), {"reduction": "none"}
    one_hot_true = torch.zeros(points, dtype=torch.long)
    three_class = torch.stack([p, (1 - p) / 2, (1 - p) / 2], 1)
    kl_target = torch.tensor([[0.7, 0.3]], dtype=torch.float64).expand(points, 2)
    two_scores = torch.stack([zero, s], 1)  # class 1 is the true one; class 0 scores 0
    return {
        "regression, target t = 0": ("prediction p", s, {
            "MSE": F.mse_loss(s, zero, **none), "MAE": F.l1_loss(s, zero, **none),
            "Huber (δ = 1)": F.huber_loss(s, zero, **none)}),
        "binary cross-entropy": ("predicted probability p of class 1", p, {
            "target 1": F.binary_cross_entropy(p, torch.ones_like(p), **none),
            "target 0": F.binary_cross_entropy(p, torch.zeros_like(p), **none)}),
        "cross-entropy, 3 classes": ("predicted probability of the true class (others share the rest)", p, {
            "softmax + CE": F.cross_entropy(torch.log(three_class), one_hot_true, **none),
            "squared error vs one-hot": ((three_class - F.one_hot(one_hot_true, 3)) ** 2).sum(1)}),
        "KL divergence, target (0.7, 0.3)": ("predicted probability q of the first outcome", p, {
            "KL(t ‖ q)": F.kl_div(torch.log(torch.stack([p, 1 - p], 1)), kl_target, **none).sum(1)}),
        "hinge vs logistic, target y = +1": ("score s", s, {
            # torch averages the margins over the C = 2 classes; ×2 is the binary max(0, 1 − y·s)
            "hinge": 2 * F.multi_margin_loss(two_scores, torch.ones(points, dtype=torch.long), **none),
            "logistic log(1 + e^(−s))": F.soft_margin_loss(s, torch.ones_like(s), **none)}),
    }


def curves_figure() -> plt.Figure:
    panels = curves()
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    axes[-1, -1].axis("off")
    for ax, (title, (xlabel, x, ys)) in zip(axes.ravel(), panels.items(), strict=False):
        for label, y in ys.items():
            ax.plot(x, y, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("loss")
        ax.set_ylim(bottom=0, top=min(float(max(y.max() for y in ys.values())), 6.0))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- part 2: softmax + cross-entropy vs squared error on MNIST -----------------------------
class SquaredErrorMLP(MLP):
    """The lit-nn MLP trained on the squared error between its softmax output and the one-hot
    target; everything else (layers, optimizer, validation metrics) is the MLP's own."""

    kind = "mlp-squared-error"

    def training_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=1)
        return ((probs - F.one_hot(targets, probs.shape[1]).to(probs.dtype)) ** 2).sum(1).mean()


class EpochHistory(L.Callback):
    """Keeps each epoch's train/val metrics.

    The model logs its train metrics in its own ``on_train_epoch_end``, which Lightning calls
    after the callbacks' hook of that name; so an epoch is read when the next one starts, and
    the last one when training ends.
    """

    KEYS = (Metric.TRAIN_LOSS, Metric.TRAIN_ACC, Metric.VAL_LOSS, Metric.VAL_ACC)

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def _read(self, trainer: L.Trainer) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({k: float(metrics[k]) for k in self.KEYS if k in metrics})

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > len(self.rows):
            self._read(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read(trainer)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's 'GPU available' banner lines; the lab prints its own summary."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def train_both(epochs: int = 5, optimizer: str = "sgd", lr: float = 0.1, hidden: int = 128,
               batch_size: int = 64, seed: int = 0, data_root: str = "data",
               max_batches: int | None = None) -> tuple[dict[str, list[dict[str, float]]], str]:
    """Fit the MLP with each loss from the same initial weights; returns (history per loss, data source)."""
    data = ImageDataModule("mnist", root=data_root, batch_size=batch_size, seed=seed)
    histories = {}
    for name, cls in (("cross_entropy", MLP), ("squared_error", SquaredErrorMLP)):
        L.seed_everything(seed, verbose=False)  # same initial weights for both
        model = cls(depth=1, hidden=hidden, activation="sigmoid", optimizer=optimizer, lr=lr)
        history = EpochHistory()
        limits = {"limit_train_batches": max_batches} if max_batches else {}
        with _quiet_lightning():
            trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, num_sanity_val_steps=0, callbacks=[history],
                                **limits)
            trainer.fit(model, datamodule=data)
        histories[name] = history.rows
    return histories, str(data.source)


def accuracy_figure(histories: dict[str, list[dict[str, float]]], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, rows), colour in zip(histories.items(), ("tab:blue", "tab:red"), strict=True):
        epochs = range(1, len(rows) + 1)
        ax.plot(epochs, [r["val_acc"] for r in rows], "o-", color=colour, label=f"{name}: validation")
        ax.plot(epochs, [r["train_acc"] for r in rows], "--", color=colour, alpha=0.6, label=f"{name}: train")
    ax.set_xlabel("epoch")
    ax.set_xticks(range(1, len(next(iter(histories.values()))) + 1))
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


def summary(gaps: dict[str, float], histories: dict[str, list[dict[str, float]]], source: str) -> str:
    part1 = table(["loss", "formula", "max |torch − formula|"],
                  [[n, LOSSES[n].formula, sci(g)] for n, g in gaps.items()])
    epochs = len(next(iter(histories.values())))
    rows = [[e + 1, *[f"{histories[n][e]['val_acc']:.3f}" for n in histories]] for e in range(epochs)]
    part2 = table(["epoch", *[f"val acc {n}" for n in histories]], rows)
    return f"{part1}\n\nsame MLP, same start, two losses ({source}):\n{part2}"


def run(epochs: int = 5, optimizer: str = "sgd", lr: float = 0.1, hidden: int = 128, batch_size: int = 64,
        seed: int = 0, data_root: str = "data", max_batches: int | None = None) -> dict:
    """Draw and check the losses, then train softmax+CE vs squared error; one MLflow run.

    Args:
        epochs: training epochs for each of the two losses.
        optimizer: sgd, adagrad, rmsprop, adadelta, adam or adamw (sgd shows the difference best).
        lr: learning rate.
        hidden: sigmoid units of the MLP's hidden layer.
        batch_size: training batch size.
        seed: seeds the weights (same start for both losses) and the shuffle.
        data_root: folder searched for MNIST IDX files; without them the embedded 5,000-image sample is used.
        max_batches: cap on training batches per epoch (full MNIST is 860 batches; default: all).

    Returns ``{"gaps": {loss: max abs diff}, "histories": {loss: [per-epoch metrics]}, "summary", "run_id"}``.
    """
    check_positive("epochs", epochs)
    check_positive("hidden", hidden)
    check_positive("batch_size", batch_size)
    if max_batches is not None:
        check_positive("max_batches", max_batches)
    check_optimizer_args(optimizer, lr)
    params = {"epochs": epochs, "optimizer": optimizer, "lr": lr, "hidden": hidden, "batch_size": batch_size,
              "seed": seed, "data_root": data_root, "max_batches": max_batches,
              "model": "MLP depth 1, sigmoid hidden layer"}
    with lab_run("losses", params) as rec:
        gaps = formula_gaps(seed=seed)
        rec.log_metrics({f"{name}.formula_gap": gap for name, gap in gaps.items()})
        rec.log_figure(curves_figure(), "loss_curves.png")
        histories, source = train_both(epochs, optimizer, lr, hidden, batch_size, seed, data_root, max_batches)
        rec.set_tags({Tag.DATA_SOURCE: source})
        rec.log_history({f"{name}.{key}": [(e + 1, row[key]) for e, row in enumerate(rows) if key in row]
                         for name, rows in histories.items() for key in EpochHistory.KEYS})
        title = f"same MLP ({hidden} sigmoid units), {optimizer} lr {lr:g}: softmax+CE vs squared error"
        rec.log_figure(accuracy_figure(histories, title), "ce_vs_mse_accuracy.png")
        text = summary(gaps, histories, source)
        rec.log_text(text, "summary.txt")
        return {"gaps": gaps, "histories": histories, "source": source, "summary": text, "run_id": rec.run_id}
