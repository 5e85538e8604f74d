"""The shared LightningModule base: the contract every lit-nn model offers the CLI and callbacks.

What every model *takes* (the optimizer settings) is declared once, in :class:`LitModel`'s
signature; subclasses pass ``**optim_args`` through and jsonargparse follows them, so
LightningCLI still shows every option in ``--help`` and ``--print_config``. What every model
*offers* (``kind``, ``monitor``, ``tag_keys``, ``num_parameters``, ``confusion_matrix``,
``sample_text``) is declared here with its type, so the tracking callbacks read attributes,
never guess with ``getattr`` defaults.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar, Literal

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from lit_nn.core.domains import FinitePositiveFloat, plain_numbers
from lit_nn.core.errors import UserError
from lit_nn.core.names import Metric, Tag
from lit_nn.models.optimizers import build_optimizer, check_optimizer_args, lr_factor


def ask_torch_for_cuda_without_gpus() -> None:
    """Undo Lightning's NVML-based CUDA check where NVML finds no GPU.

    Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that asking for CUDA does not
    initialise it before data-loader workers fork. torch then opens NVML on *every*
    ``torch.cuda.is_available()``, and Adam/AdamW call that in every ``step()``: +0.4 ms per
    step on a CPU (``make bench`` measures it), a quarter of an MLP step on the MNIST sample.
    Without a GPU there is no CUDA state to protect, and torch's own check costs ~1 µs.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


ask_torch_for_cuda_without_gpus()  # at import: after Lightning's import set it, before any optimizer steps


class DivergedError(UserError):
    """The training loss became NaN or infinite, or far above chance; the run is marked FAILED with this reason."""


EXPLODED = 100  # a mean training loss over this many times chance's (log of the classes) has diverged


Monitor = tuple[str, Literal["min", "max"]]


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer running ``module``, or None when there is none (a model built by hand, loaded
    for MLflow or a test): ``module.trainer`` raises RuntimeError then."""
    try:
        return module.trainer
    except RuntimeError:
        return None


class LitModel(L.LightningModule):
    """Base for every lit-nn model: the optimizer, the divergence check and the training loss.

    Subclasses build their network in ``__init__`` and implement ``forward`` and the steps;
    a ``training_step`` hands its loss to ``accumulate_train_loss``, which is logged once per
    epoch as ``train_loss`` (no per-step logger traffic).

    Args:
        optimizer: sgd, adagrad, rmsprop, adadelta, adam or adamw (``torch.optim``, by name).
        lr: learning rate (the peak one when a schedule is set).
        weight_decay: weight decay of the optimizer.
        momentum: momentum of sgd and rmsprop.
        nesterov: Nesterov momentum (sgd with momentum > 0).
        lr_schedule: constant; cosine decay to lr/10 over the run; or onecycle, a ramp up to lr over the
            first 25 % of the run (or ``warmup_steps``) then cosine to 0 (both need max_steps or max_epochs).
        warmup_steps: linear learning-rate warm-up steps before the schedule.

    Attributes:
        kind: the model's short name (``mlp``, ``cnn``, ``char_rnn``): the ``model`` tag and the
            first part of the default run name. Every concrete model declares its own.
        monitor: the validation metric ``best.ckpt`` is chosen by, and whether lower or higher is better.
        tag_keys: hyperparameters recorded as MLflow tags, to group and filter runs by in the UI.
        confusion_matrix: counts of (true, predicted) class after ``test`` (classifiers), else None.
        sample_text: the text generated after the latest validation (language models), else None.
    """

    kind: ClassVar[str]
    monitor: ClassVar[Monitor] = (Metric.VAL_ACC, "max")
    tag_keys: ClassVar[tuple[str, ...]] = ("optimizer",)

    def __init__(
        self,
        optimizer: str = "adam",
        lr: FinitePositiveFloat = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if not any("kind" in vars(klass) for klass in type(self).__mro__):
            raise TypeError(f"{type(self).__name__} must declare `kind` (its short name, e.g. 'mlp')")
        check_optimizer_args(optimizer, lr, weight_decay, momentum, lr_schedule, warmup_steps)
        # every __init__ up the subclass chain is collected: the subclass's arguments and these
        self.save_hyperparameters()
        plain_numbers(self.hparams)  # lr arrives as a FinitePositiveFloat from the command line
        self.confusion_matrix: torch.Tensor | None = None
        self.sample_text: str | None = None
        # the epoch's summed training loss and its weight; a plain attribute, not a buffer: DDP
        # broadcasts rank 0's buffers to every rank before each forward, which would overwrite
        # the other ranks' sums with rank 0's (their train_loss then mixed in rank 0's batches)
        self._train_loss_sum: torch.Tensor | None = None
        self._train_seen = 0
        self._nonfinite: torch.Tensor | None = None  # deferred finite check (see check_finite)
        self._nonfinite_from = 0

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """The optimizer by name, with the learning-rate schedule stepped every batch if one is set."""
        hp = self.hparams
        optimizer = build_optimizer(hp.optimizer, self.parameters(), hp.lr, hp.weight_decay, hp.momentum,
                                    hp.nesterov)
        schedule, warmup = hp.lr_schedule, hp.warmup_steps
        if schedule == "constant" and not warmup:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if schedule != "constant" and not math.isfinite(total):
            raise UserError(f"model.lr_schedule={schedule} needs a known run length: set trainer.max_steps "
                            "or trainer.max_epochs, or use lr_schedule constant")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Per step only accumulate: each self.log call costs Lightning ~0.1-1 ms of bookkeeping.
    def accumulate_train_loss(self, loss: torch.Tensor, weight: int) -> None:
        """Add a step's mean loss, weighted by how many items it averaged; logged once per epoch."""
        if self._train_loss_sum is None:  # created on the loss's device: no host sync per step
            self._train_loss_sum = torch.zeros((), device=loss.device,
                                               dtype=torch.promote_types(loss.dtype, torch.float32))
        self._train_loss_sum += loss.detach() * weight
        self._train_seen += weight

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = None
        self._train_seen = 0

    def on_train_epoch_end(self) -> None:
        self.raise_if_diverged()
        # the same value as self.log(on_epoch=True) every step: the weighted mean loss, averaged
        # over ranks (the loaders give every rank an equal shard)
        total = self._train_loss_sum if self._train_loss_sum is not None else torch.zeros((), device=self.device)
        mean = total / max(self._train_seen, 1)
        self.raise_if_exploded(mean)
        self.log(Metric.TRAIN_LOSS, mean, prog_bar=True, sync_dist=True)

    def chance_loss(self) -> float | None:
        """The cross-entropy of guessing uniformly, log(classes): what an untrained model scores."""
        return None

    def raise_if_exploded(self, mean_loss: torch.Tensor) -> None:
        """A finite loss far above chance has diverged as surely as NaN (Adam at lr 1e6 once ended
        FINISHED with train_loss 5.8e22): one read per epoch, so no per-step host sync."""
        chance = self.chance_loss()
        if chance is None or not chance > 0:
            return
        value = float(mean_loss)
        if value > EXPLODED * chance:
            raise DivergedError(
                f"training diverged: the mean training loss of epoch {self.current_epoch} is {value:.3g}, over "
                f"{EXPLODED} × chance (log of the classes: {chance:.3g}); try a smaller learning rate "
                f"(lr={self.hparams.lr})"
            )

    # None: check every step on the CPU (free there), every logging interval on a GPU, where
    # reading a value back each step would stall the device (one host sync per step)
    check_finite_every_step: bool | None = None

    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Stop at the first NaN/inf loss instead of training on garbage for the rest of the run."""
        every_step = self.check_finite_every_step
        if every_step if every_step is not None else loss.device.type == "cpu":
            if not math.isfinite(loss.item()):  # on a CPU .item() is a read (torch.isfinite: 40× dearer)
                raise DivergedError(
                    f"training diverged: loss is {loss.item()} at epoch {self.current_epoch}, "
                    f"step {self.global_step} (batch {batch_idx}); try a smaller learning rate "
                    f"(lr={self.hparams.lr})"
                )
            return
        bad = ~torch.isfinite(loss.detach())  # stays on the device: no sync
        if self._nonfinite is None:
            self._nonfinite, self._nonfinite_from = bad, self.global_step
        else:
            self._nonfinite |= bad
        trainer = attached_trainer(self)
        interval = trainer.log_every_n_steps if trainer is not None else 1
        if (batch_idx + 1) % max(interval, 1) == 0:
            self.raise_if_diverged()

    def raise_if_diverged(self) -> None:
        """The deferred check: one host sync for all the steps since the last one."""
        if self._nonfinite is None:
            return
        bad, since = bool(self._nonfinite), self._nonfinite_from
        self._nonfinite = None
        if bad:
            raise DivergedError(
                f"training diverged: the loss became NaN or infinite at epoch {self.current_epoch}, "
                f"between steps {since} and {self.global_step}; try a smaller learning rate (lr={self.hparams.lr})"
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

    def run_tags(self) -> dict[str, str]:
        """The MLflow tags that describe this model: its kind and its ``tag_keys`` hyperparameters."""
        return {Tag.MODEL: self.kind, **{key: str(self.hparams[key]) for key in self.tag_keys if key in self.hparams}}


class Classifier(LitModel):
    """Cross-entropy classification with torchmetrics accuracy on train/val/test.

    Args:
        num_classes: number of output classes.
    """

    def __init__(self, num_classes: int = 10, **optim_args: Any) -> None:
        super().__init__(**optim_args)
        self.net: nn.Module
        # validate_args=False: the inputs are this model's own logits and the loaders' labels;
        # torchmetrics' checks of them cost as much as the update itself (~80 µs a step)
        metric = torchmetrics.classification.MulticlassAccuracy
        self.train_acc = metric(num_classes, average="micro", validate_args=False)
        self.val_acc = metric(num_classes, average="micro", validate_args=False)
        self.test_acc = metric(num_classes, average="micro", validate_args=False)
        self.test_confusion = torchmetrics.classification.MulticlassConfusionMatrix(num_classes)
        self.num_classes = num_classes

    def chance_loss(self) -> float | None:
        return math.log(self.num_classes)

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
        self.log(Metric.TRAIN_ACC, self.train_acc)  # Lightning computes, syncs across ranks and resets it

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], accuracy: torchmetrics.Metric,
                  loss_key: str, acc_key: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        accuracy(logits, y)
        # sync_dist averages the loss over ranks under DDP; the accuracy syncs itself
        self.log(loss_key, F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log(acc_key, accuracy, on_epoch=True, prog_bar=True)
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_acc, Metric.VAL_LOSS, Metric.VAL_ACC)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self._evaluate(batch, self.test_acc, Metric.TEST_LOSS, Metric.TEST_ACC)
        self.test_confusion.update(logits, batch[1])

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.confusion_matrix = None

    def on_test_epoch_end(self) -> None:
        # compute() is a collective under DDP: every rank must call it, not only the logging rank
        self.confusion_matrix = self.test_confusion.compute().cpu()

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Per input: the predicted class, its softmax probability, and the true label (-1 if unknown)."""
        prob, pred = self(batch[0]).softmax(dim=1).max(dim=1)
        return {"pred": pred, "prob": prob, "target": batch[1]}
