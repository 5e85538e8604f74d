"""Watching a network learn: per-layer gradients, weights, updates and activations in the MLflow run.

:class:`LayerDynamics` is a Lightning callback, on by default in ``lit-nn fit`` (``--dynamics false``
turns it off, ``--dynamics_every N`` sets the interval). Every N optimizer steps it records, per
layer (named as the model's docstrings name them: ``fc1``, ``conv2``, ``embed``, ``rnn.weight_hh_l0``,
``head``; :func:`layer_names`):

* ``grad_norm/<layer>``: the L2 norm of the layer's gradient (weight and bias together), as the
  optimizer is about to use it (under DDP after the all-reduce: the same on every rank);
* ``weight_norm/<layer>``: the L2 norm of its parameters before the step;
* ``update_ratio/<layer>``: ‖Δw‖ / ‖w‖ of that step (Karpathy's rule of thumb: around 1e-3);

and for each activation's output (named after the layer that feeds it: ``act_mean/fc1`` is the
mean of the activation applied to ``fc1``'s output; a recurrent layer's output under its own name):

* ``act_mean/<layer>``, ``act_std/<layer>`` over the batch;
* ``dead_frac/<layer>`` for the ReLU family (relu, leaky_relu, gelu, selu): the fraction of units
  (each output feature, or each channel × position of a convolution) never positive over the batch;
* ``saturated_frac/<layer>`` for sigmoid, tanh and recurrent outputs (tanh-bounded): the fraction of
  the batch's activation values beyond 99 % of their range (tanh, a recurrent output: |y| > 0.99;
  sigmoid: y < 0.005 or y > 0.995).

The MLflow step of these metrics is the optimizer step (``global_step``), not the epoch; the tag
``steps_per_epoch`` converts. Values stay on the training device until the end of the first epoch
that ends 30 s or more after the last write (and the end of the fit), when one host transfer and
one ``log_batch`` (chunked by MLflow at 1,000 values) write them all: no host sync and no MLflow
call per step, and a short epoch does not pay a store round trip of its own. Forward hooks exist only during the steps that are
recorded. Under DDP only rank 0 records (activations are then rank 0's batch).

Once per epoch (its last training batch) it also takes histograms of every layer's weights,
gradients and activations; at the end of the fit they go to the run as one file,
``dynamics/histograms.npz`` (:func:`save_histograms` documents the format), and as one heatmap PNG
per quantity (``dynamics/weights.png``, ``gradients.png``, ``activations.png``): epoch against value,
colour = density, one panel per layer, as TensorBoard's histogram view draws them.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from lit_nn.core.names import Dynamics, Tag

# the default recording interval in optimizer steps: what `make bench` measured at ≤ 3 % of an
# epoch on the default MLP and CNN (BENCHMARKS.md, "Per-layer dynamics")
DEFAULT_EVERY = 50
HISTOGRAM_BINS = 64
HISTOGRAM_VALUES = 1 << 16  # a larger tensor (a convolution's activations) is histogrammed from an even stride
FLUSH_SECONDS = 30.0  # kept values go to MLflow at the first epoch end this long after the last write
DEAD = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SELU, nn.ReLU6, nn.ELU)
SATURATING = {nn.Tanh: (-1.0, 1.0), nn.Sigmoid: (0.0, 1.0)}
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
SATURATION = 0.99  # of the range, from its middle
_PREFIXES = {nn.Linear: "fc", nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv",
             nn.BatchNorm1d: "bn", nn.BatchNorm2d: "bn", nn.LayerNorm: "ln", nn.Embedding: "embed"}


@dataclass
class Layer:
    """A layer's parameters under one name (a recurrent module gives one Layer per weight matrix)."""

    name: str
    params: list[nn.Parameter]


@dataclass
class Activation:
    """A module whose output is recorded, the layer it is named after, and how it saturates."""

    name: str
    module: nn.Module
    kind: str  # "dead" (ReLU family), "saturated" or "" (mean and std only)
    low: float = -1.0
    high: float = 1.0


def _sequential_names(seq: nn.Sequential, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    counts: dict[str, int] = {}
    for child in seq.children():
        kind = next((p for t, p in _PREFIXES.items() if type(child) is t), None)
        if kind is None:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        yield f"{prefix}{kind}{counts[kind]}", child


def layer_names(model: nn.Module) -> dict[nn.Module, str]:
    """The name of every module with parameters of its own.

    Inside an ``nn.Sequential`` layers are counted by kind, as the models' docstrings count them
    (``conv1``, ``conv2``, ``fc1``...; prefixed by the Sequential's path unless it is the model's
    ``net``); elsewhere a module keeps its attribute path (``embed``, ``rnn``, ``head``, ``rnn.i2h``).
    """
    names: dict[nn.Module, str] = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            prefix = "" if path in ("net", "") else f"{path}."
            names.update({child: name for name, child in _sequential_names(module, prefix)})
    for path, module in model.named_modules():
        if module not in names and any(True for _ in module.parameters(recurse=False)):
            names[module] = path
    return names


def find_layers(model: nn.Module) -> list[Layer]:
    """The layers whose gradients, weights and updates are recorded, in the model's order."""
    names = layer_names(model)
    layers: list[Layer] = []
    for module in model.modules():
        if module not in names:
            continue
        own = dict(module.named_parameters(recurse=False))
        if isinstance(module, nn.RNNBase):  # one layer per weight matrix, its bias with it
            for key, weight in own.items():
                if key.startswith("weight_"):
                    bias = own.get(key.replace("weight_", "bias_", 1))
                    layers.append(Layer(f"{names[module]}.{key}", [weight, *([bias] if bias is not None else [])]))
        elif own:
            layers.append(Layer(names[module], list(own.values())))
    return [layer for layer in layers if any(p.requires_grad for p in layer.params)]


def find_activations(model: nn.Module) -> list[Activation]:
    """The activations whose outputs are recorded: each named after the layer before it in its
    Sequential (``fc1``'s ReLU is ``fc1``, ``conv1``'s is ``conv1`` with batch norm between them),
    and recurrent modules under their own name."""
    names = layer_names(model)
    found: list[Activation] = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            feeding = None
            for child in module.children():
                if child in names:
                    if not isinstance(child, NORMS):  # a norm between a layer and its activation: the layer's
                        feeding = names[child]
                elif feeding is not None and isinstance(child, (*DEAD, *SATURATING, nn.Identity)):
                    found.append(_activation(feeding, child))
        elif isinstance(module, nn.RNNBase):
            found.append(Activation(names[module], module, "saturated", -1.0, 1.0))
    return found


def _activation(name: str, module: nn.Module) -> Activation:
    if isinstance(module, DEAD):
        return Activation(name, module, "dead")
    for kind, (low, high) in SATURATING.items():
        if isinstance(module, kind):
            return Activation(name, module, "saturated", low, high)
    return Activation(name, module, "")


def _norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of several tensors taken together."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach().float()) for t in tensors]))


def activation_stats(output: torch.Tensor, act: Activation) -> list[torch.Tensor]:
    """[mean, std, dead or saturated fraction] of one batch's activation output (on its device)."""
    y = output.detach().float()
    stats = [y.mean(), y.std() if y.numel() > 1 else y.new_zeros(())]
    if act.kind == "dead":
        alive = (y > 0).flatten(1).any(dim=0) if y.dim() > 1 else (y > 0)
        stats.append(1.0 - alive.float().mean())
    elif act.kind == "saturated":
        middle, half = (act.high + act.low) / 2, (act.high - act.low) / 2
        stats.append(((y - middle).abs() > SATURATION * half).float().mean())
    return stats


@dataclass
class Histograms:
    """Per quantity and layer, one row per epoch: its bin edges and counts (each epoch its own range)."""

    epochs: list[int] = field(default_factory=list)
    edges: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    counts: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)

    def add(self, epoch: int, tensors: dict[tuple[str, str], torch.Tensor], bins: int = HISTOGRAM_BINS) -> None:
        """One epoch's histograms of ``tensors`` ({(quantity, layer): values}): one host transfer for
        the ranges, one ``histc`` each."""
        if not tensors:
            return
        flat = {key: _strided(t.detach().float().flatten()) for key, t in tensors.items()}
        ranges = torch.stack([torch.stack(torch.aminmax(t)) for t in flat.values()]).cpu().tolist()
        self.epochs.append(epoch)
        for (key, t), (low, high) in zip(flat.items(), ranges, strict=True):
            if not (math.isfinite(low) and math.isfinite(high)):
                low, high = 0.0, 0.0
            if high <= low:  # a constant tensor: one bin around its value
                low, high = low - 0.5, high + 0.5
            counts = torch.histc(t.nan_to_num(), bins=bins, min=low, max=high)
            self.edges.setdefault(key, []).append(np.linspace(low, high, bins + 1))
            self.counts.setdefault(key, []).append(counts.cpu().numpy().astype(np.int64))


def _strided(values: torch.Tensor, most: int = HISTOGRAM_VALUES) -> torch.Tensor:
    """At most ``most`` of ``values``, evenly strided (all of them when there are no more)."""
    return values if values.numel() <= most else values[:: -(-values.numel() // most)]


def save_histograms(histograms: Histograms, path: Path) -> None:
    """``histograms.npz``: ``epochs`` (E,), and per quantity (weights, gradients, activations) and
    layer, ``<quantity>/<layer>/edges`` (E, bins+1) and ``<quantity>/<layer>/counts`` (E, bins):
    row e is the histogram taken at the last training batch of epoch ``epochs[e]``, over that
    epoch's own range of values (of at most 65,536 values, evenly strided, for a larger tensor). A layer seen in fewer epochs than ``epochs`` (none here) would
    have fewer rows. Read it with ``numpy.load``."""
    arrays: dict[str, np.ndarray] = {"epochs": np.asarray(histograms.epochs, dtype=np.int64)}
    for (quantity, layer), rows in histograms.counts.items():
        arrays[f"{quantity}/{layer}/counts"] = np.stack(rows)
        arrays[f"{quantity}/{layer}/edges"] = np.stack(histograms.edges[(quantity, layer)])
    np.savez_compressed(path, **arrays)


def common_grid(edges: np.ndarray, counts: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Every row's counts re-binned onto one grid over all rows' range (each count spread uniformly
    over its bin): (grid edges (bins+1,), density (rows, bins), each row summing to 1)."""
    grid = np.linspace(edges.min(), edges.max(), bins + 1)
    out = np.zeros((len(counts), bins))
    for r, (e, c) in enumerate(zip(edges, counts, strict=True)):
        cumulative = np.concatenate([[0.0], np.cumsum(c, dtype=float)])
        at_grid = np.interp(grid, e, cumulative)  # the cumulative count, piecewise linear within bins
        row = np.diff(at_grid)
        out[r] = row / row.sum() if row.sum() > 0 else row
    return grid, out


QUANTITY_TITLES = {"weights": "weights", "gradients": "gradients", "activations": "activation outputs"}


def heatmap_figure(histograms: Histograms, quantity: str) -> Any:
    """Epoch (y) against value (x), colour = the share of values in each bin, one panel per layer."""
    from matplotlib.ticker import MaxNLocator

    from lit_nn.tracking.figures import plt

    keys = [key for key in histograms.counts if key[0] == quantity]
    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys, strict=False):
        edges, counts = np.stack(histograms.edges[key]), np.stack(histograms.counts[key])
        grid, density = common_grid(edges, counts)
        epochs = np.asarray(histograms.epochs[-len(counts):])
        y = np.concatenate([epochs - 0.5, [epochs[-1] + 0.5]])
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        mesh = axis.pcolormesh(grid, y, np.sqrt(density), cmap="viridis", shading="flat")
        axis.set_title(key[1], fontsize=9)
        axis.set_xlabel("value", fontsize=8)
        axis.set_ylabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
        figure.colorbar(mesh, ax=axis).set_label("√ share of values", fontsize=7)
    for axis in list(axes.flat)[len(keys):]:
        axis.set_visible(False)
    figure.suptitle(f"{QUANTITY_TITLES[quantity]} per layer: histogram per epoch", fontsize=10)
    figure.tight_layout()
    return figure


class LayerDynamics(L.Callback):
    """Per-layer gradient norm, weight norm, update ratio and activation statistics every ``every``
    optimizer steps, and per-epoch histograms (see the module docstring).

    Args:
        every: record every this many optimizer steps (step 0 included).
        histograms: take per-epoch histograms and log them with their heatmaps at the end of the fit.
    """

    def __init__(self, every: int = DEFAULT_EVERY, histograms: bool = True) -> None:
        if every < 1:
            from lit_nn.core.errors import UserError

            raise UserError(f"--dynamics_every takes a number of optimizer steps ≥ 1, got {every}")
        self.every = every
        self.histograms_on = histograms
        self.layers: list[Layer] = []
        self.activations: list[Activation] = []
        self.histograms = Histograms()
        self._keys: list[str] = []
        self._rows: list[tuple[int, torch.Tensor]] = []  # (global step, values on the device)
        self._hooks: list[Any] = []
        self._recording = False
        self._histogram_due = False
        self._act_stats: dict[str, list[torch.Tensor]] = {}
        self._act_values: dict[str, torch.Tensor] = {}
        self._before: list[torch.Tensor] = []
        self._step_values: list[torch.Tensor] = []
        self._grads: dict[str, torch.Tensor] = {}
        self._step = 0
        self._tracker: Any = None  # rank 0's MLflowTracker, from on_train_start
        self._flushed = time.monotonic()

    # -- which steps --------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.layers = find_layers(pl_module)
            self.activations = find_activations(pl_module)
            self.histograms = Histograms()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = self._tracker = _tracker(trainer) if trainer.is_global_zero else None
        if tracker is not None:
            steps = trainer.num_training_batches
            if isinstance(steps, int) and steps > 0:
                per_epoch = math.ceil(steps / max(trainer.accumulate_grad_batches, 1))
                tracker.set_tags({Tag.STEPS_PER_EPOCH: per_epoch})

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        last = trainer.num_training_batches
        self._histogram_due = self.histograms_on and (batch_idx == last - 1 if isinstance(last, int) else batch_idx == 0)
        self._recording = trainer.global_step % self.every == 0
        self._step = trainer.global_step
        if self._recording or self._histogram_due:
            self._act_stats, self._act_values = {}, {}
            self._hooks = [act.module.register_forward_hook(self._hook(act)) for act in self.activations]

    def _hook(self, act: Activation) -> Any:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output  # a recurrent module: (output, state)
            if not isinstance(out, torch.Tensor) or not module.training:
                return
            if self._recording:
                self._act_stats[act.name] = activation_stats(out, act)
            if self._histogram_due:
                self._act_values[act.name] = out.detach()
        return record

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # -- the recorded step --------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self._remove_hooks()  # the forward is over
        if not trainer.is_global_zero or not (self._recording or self._histogram_due):
            return
        grads = {layer.name: [p.grad for p in layer.params if p.grad is not None] for layer in self.layers}
        if self._histogram_due:
            self._grads = {name: torch.cat([g.detach().flatten() for g in gs]) for name, gs in grads.items() if gs}
        if not self._recording:
            return
        values: list[torch.Tensor] = []
        zero = torch.zeros((), device=pl_module.device)
        for layer in self.layers:
            values.append(_norm(grads[layer.name]) if grads[layer.name] else zero)
            values.append(_norm(layer.params))
        self._before = [p.detach().clone() for layer in self.layers for p in layer.params]
        self._step_values = values

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._remove_hooks()
        if not trainer.is_global_zero:
            return
        if self._histogram_due:
            self._take_histograms(trainer.current_epoch)
        if not (self._recording and self._before):
            self._recording = False
            return
        keys: list[str] = []
        values: list[torch.Tensor] = []
        before = iter(self._before)
        step_values = iter(self._step_values)
        for layer in self.layers:
            old = [next(before) for _ in layer.params]
            grad_norm, weight_norm = next(step_values), next(step_values)
            delta = _norm([p.detach() - o for p, o in zip(layer.params, old, strict=True)])
            keys += [Dynamics.key(Dynamics.GRAD_NORM, layer.name), Dynamics.key(Dynamics.WEIGHT_NORM, layer.name),
                     Dynamics.key(Dynamics.UPDATE_RATIO, layer.name)]
            values += [grad_norm, weight_norm, delta / weight_norm.clamp_min(torch.finfo(torch.float32).tiny)]
        for act in self.activations:
            stats = self._act_stats.get(act.name)
            if stats is None:
                continue
            fraction = {"dead": Dynamics.DEAD_FRAC, "saturated": Dynamics.SATURATED_FRAC}.get(act.kind)
            names = [Dynamics.ACT_MEAN, Dynamics.ACT_STD, *([fraction] if fraction else [])]
            keys += [Dynamics.key(name, act.name) for name in names]
            values += stats
        self._keep(keys, torch.stack([v.float() for v in values]), self._step)
        self._before, self._step_values, self._recording = [], [], False

    def _keep(self, keys: list[str], values: torch.Tensor, step: int) -> None:
        if keys != self._keys:  # the set of activations recorded changed (it does not in practice): flush first
            self._flush()
            self._keys = keys
        self._rows.append((step, values))

    def _take_histograms(self, epoch: int) -> None:
        tensors: dict[tuple[str, str], torch.Tensor] = {}
        for layer in self.layers:
            tensors[("weights", layer.name)] = torch.cat([p.detach().flatten() for p in layer.params])
        for name, grad in self._grads.items():
            tensors[("gradients", name)] = grad
        for name, value in self._act_values.items():
            tensors[("activations", name)] = value
        self.histograms.add(epoch, tensors)
        self._grads, self._act_values, self._histogram_due = {}, {}, False

    # -- writing ------------------------------------------------------------------------
    def _flush(self) -> None:
        """Every value kept since the last flush, in one host transfer and one ``log_batch``."""
        rows, self._rows = self._rows, []
        self._flushed = time.monotonic()
        tracker = self._tracker
        if not rows or tracker is None:
            return
        from mlflow.entities import Metric as MlflowMetric

        table = torch.stack([values for _, values in rows]).cpu().tolist()  # the one host sync
        now = int(time.time() * 1000)
        metrics = [MlflowMetric(key, float(value), now, step)
                   for (step, _), row in zip(rows, table, strict=True)
                   for key, value in zip(self._keys, row, strict=True) if math.isfinite(value)]
        tracker.experiment.log_batch(tracker.run_id, metrics=metrics)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self._flush()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()
        if not trainer.is_global_zero:
            return
        self._flush()
        tracker = self._tracker
        if tracker is None or not self.histograms.epochs:
            return
        log_histograms(tracker, self.histograms)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()


def log_histograms(tracker: Any, histograms: Histograms) -> None:
    """``dynamics/histograms.npz`` and one heatmap PNG per quantity into the run."""
    from lit_nn.tracking.figures import plt

    with tempfile.TemporaryDirectory(prefix="lit-nn-dynamics-") as folder:
        path = Path(folder) / Dynamics.HISTOGRAMS_FILE
        save_histograms(histograms, path)
        tracker.log_artifact(path, Dynamics.ARTIFACT_DIR)
    for quantity in ("weights", "gradients", "activations"):
        if any(key[0] == quantity for key in histograms.counts):
            figure = heatmap_figure(histograms, quantity)
            tracker.log_figure(figure, f"{Dynamics.ARTIFACT_DIR}/{quantity}.png")
            plt.close(figure)


def _tracker(trainer: L.Trainer) -> Any:
    from lit_nn.tracking.callbacks import find_tracker

    return find_tracker(trainer)
