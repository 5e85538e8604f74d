"""The shared LightningModule base: optimizer by name, finite-loss guard, per-epoch metrics."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from lit_nn.errors import UserError
from lit_nn.optim import build_optimizer, check_optimizer_args


class DivergedError(UserError):
    """The training loss became NaN or infinite; the run is marked FAILED with this reason."""


class LitModel(L.LightningModule):
    """Base for every lit-nn model: the optimizer, the divergence check and the training loss.

    Subclasses build their network in ``__init__`` and implement ``forward`` and the steps;
    a ``training_step`` hands its loss to ``accumulate_train_loss``, which is logged once per
    epoch as ``train_loss`` (no per-step logger traffic).
    """

    kind = "model"

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__()
        check_optimizer_args(optimizer, lr, weight_decay, momentum)
        # the epoch's summed training loss and its weight (a buffer: it follows the device)
        self.register_buffer("_train_loss_sum", torch.zeros(()), persistent=False)
        self._train_seen = 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return build_optimizer(
            hp.optimizer, self.parameters(), hp.lr, hp.weight_decay, hp.momentum, hp.nesterov
        )

    # Per step only accumulate: each self.log call costs Lightning ~0.1-1 ms of bookkeeping.
    def accumulate_train_loss(self, loss: torch.Tensor, weight: int) -> None:
        """Add a step's mean loss, weighted by how many items it averaged; logged once per epoch."""
        self._train_loss_sum += loss.detach() * weight
        self._train_seen += weight

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum.zero_()
        self._train_seen = 0

    def on_train_epoch_end(self) -> None:
        # the same value as self.log(on_epoch=True) every step: the weighted mean loss, averaged
        # over ranks (the loaders give every rank an equal shard)
        self.log("train_loss", self._train_loss_sum / max(self._train_seen, 1), prog_bar=True, sync_dist=True)

    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Stop at the first NaN/inf loss instead of training on garbage for the rest of the run."""
        if not torch.isfinite(loss):
            raise DivergedError(
                f"training diverged: loss is {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step} (batch {batch_idx}); try a smaller learning rate "
                f"(lr={self.hparams.lr})"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # what the file holds (for clear errors on a mismatched load) and the RNG state, so a
        # resumed run draws the same dropout/augmentation randomness as an uninterrupted one
        checkpoint["lit_nn"] = {"model_class": f"{type(self).__module__}.{type(self).__qualname__}",
                                "kind": self.kind}
        checkpoint["rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if isinstance(checkpoint.get("rng_state"), torch.Tensor):
            torch.set_rng_state(checkpoint["rng_state"])

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Classifier(LitModel):
    """Cross-entropy classification with torchmetrics accuracy on train/val/test."""

    kind = "classifier"

    def __init__(self, num_classes: int = 10, **optim_args) -> None:
        super().__init__(**optim_args)
        self.net: nn.Module
        metric = torchmetrics.classification.MulticlassAccuracy
        self.train_acc = metric(num_classes, average="micro")
        self.val_acc = metric(num_classes, average="micro")
        self.test_acc = metric(num_classes, average="micro")
        self.test_confusion = torchmetrics.classification.MulticlassConfusionMatrix(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss minimized in training (validation always reports cross-entropy)."""
        return F.cross_entropy(logits, targets)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # update(), not calling the Metric: its forward would also compute a batch accuracy
        x, y = batch
        logits = self(x)
        loss = self.training_loss(logits, y)
        self.check_finite(loss, batch_idx)
        self.train_acc.update(logits.detach(), y)
        self.accumulate_train_loss(loss, len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("train_acc", self.train_acc)  # Lightning computes, syncs across ranks and resets it

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        acc = getattr(self, f"{stage}_acc")
        acc(logits, y)
        # sync_dist averages the loss over ranks under DDP; the accuracy syncs itself
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log(f"{stage}_acc", acc, on_epoch=True, prog_bar=True)
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self._evaluate(batch, "test")
        self.test_confusion.update(logits, batch[1])

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.confusion_matrix: torch.Tensor | None = None

    def on_test_epoch_end(self) -> None:
        # compute() is a collective under DDP: every rank must call it, not only the logging rank
        self.confusion_matrix = self.test_confusion.compute().cpu()

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0]).argmax(dim=1)
