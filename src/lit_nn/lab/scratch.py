"""A network from scratch: the NumPy ``TwoLayerNet`` checked, timed and trained.

1. Gradient check (float64): backpropagation against central differences, and against
   torch autograd on the same weights — the mean absolute difference per parameter.
2. Timing: one numerical gradient vs one backprop gradient on the same batch, which is why
   nobody trains with numerical gradients.
3. Training: mini-batch SGD for some epochs on the embedded MNIST sample (scaled to [0, 1],
   stratified train/test split), loss and train/test accuracy per epoch.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from lit_nn.core.errors import UserError, check_fraction, check_positive
from lit_nn.data.images import embedded_mnist_sample, stratified_split
from lit_nn.lab.plotting import log_axis
from lit_nn.lab.recording import lab_run
from lit_nn.lab.tables import sci, table
from lit_nn.lab.twolayer import PARAMS, TwoLayerNet
from lit_nn.tracking.figures import plt

Split = tuple[np.ndarray, np.ndarray]


def load_mnist_sample(test_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """The 5,000-image MNIST sample as float64 rows in [0, 1], split train/test per class."""
    images, labels = embedded_mnist_sample()
    train, test = stratified_split(labels, (1 - test_fraction, test_fraction), seed=seed)
    x = images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0
    t = labels.numpy()
    return (x[train.numpy()], t[train.numpy()]), (x[test.numpy()], t[test.numpy()])


def autograd_gradient(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """The same loss written in torch on copies of the same weights, differentiated by autograd."""
    params = {name: torch.tensor(value, requires_grad=True) for name, value in net.params.items()}
    hidden = torch.sigmoid(torch.from_numpy(x) @ params["W1"] + params["b1"])
    loss = F.cross_entropy(hidden @ params["W2"] + params["b2"], torch.from_numpy(t))
    loss.backward()
    return {name: p.grad.numpy() for name, p in params.items()}


def gradient_check(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> dict[str, dict[str, float]]:
    """Per parameter: mean |backprop − numerical|, mean |backprop − autograd|, the relative error
    max|a − b| / max(|a| + |b|) against the numerical gradient, and the mean |gradient| for scale."""
    backprop = net.gradient(x, t)
    numeric = net.numerical_gradient(x, t)
    torch_grads = autograd_gradient(net, x, t)
    report = {}
    for name in PARAMS:
        b, n, a = backprop[name], numeric[name], torch_grads[name]
        report[name] = {
            "numerical_diff": float(np.abs(b - n).mean()),
            "autograd_diff": float(np.abs(b - a).mean()),
            "relative_error": float(np.abs(b - n).max() / max(float(np.abs(b).max() + np.abs(n).max()), 1e-300)),
            "mean_abs_grad": float(np.abs(b).mean()),
        }
    return report


def time_gradients(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, repeats: int = 20) -> dict[str, float]:
    """Seconds for one numerical gradient and one backprop gradient (median of ``repeats``) on one batch."""
    start = time.perf_counter()
    net.numerical_gradient(x, t)
    numerical = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        net.gradient(x, t)
        runs.append(time.perf_counter() - start)
    backprop = float(np.median(runs))
    return {"numerical_s": numerical, "backprop_s": backprop, "ratio": numerical / backprop}


def train(net: TwoLayerNet, train_set: Split, test_set: Split, epochs: int, batch_size: int, lr: float,
          seed: int = 0) -> list[dict[str, float]]:
    """Mini-batch SGD with backprop gradients; one row per epoch (row 0: before training)."""
    (x, t), (x_test, t_test) = train_set, test_set
    rng = np.random.default_rng(seed)
    history = [{"epoch": 0, "loss": net.loss(x, t), "train_acc": net.accuracy(x, t),
                "test_acc": net.accuracy(x_test, t_test)}]
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(t))
        losses = []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            losses.append(net.loss(x[batch], t[batch]))
            if not np.isfinite(losses[-1]):
                raise UserError(f"training diverged: loss is {losses[-1]} in epoch {epoch}; try a smaller lr "
                                f"(lr={lr})")
            net.step(net.gradient(x[batch], t[batch]), lr)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "train_acc": net.accuracy(x, t),
                        "test_acc": net.accuracy(x_test, t_test)})
    return history


def training_figure(history: list[dict[str, float]], title: str) -> plt.Figure:
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs[1:], [h["loss"] for h in history[1:]], "o-")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("mean training loss of the epoch's mini-batches")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h["test_acc"] for h in history], "s-", label="test")
    ax_acc.axhline(0.1, color="0.6", linestyle=":", label="chance (10 classes)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def check_figure(check: dict[str, dict[str, float]], timing: dict[str, float]) -> plt.Figure:
    fig, (ax_diff, ax_time) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    pos = np.arange(len(PARAMS))
    for offset, key, label in ((-0.27, "mean_abs_grad", "mean |gradient| (scale)"),
                               (0.0, "numerical_diff", "mean |backprop − numerical|"),
                               (0.27, "autograd_diff", "mean |backprop − autograd|")):
        values = [max(check[p][key], 1e-20) for p in PARAMS]
        ax_diff.bar(pos + offset, values, width=0.27, label=label)
    ax_diff.axhline(1e-6, color="k", linestyle=":", linewidth=0.8, label="1e-6 bar")
    log_axis(ax_diff)
    ax_diff.set_xticks(pos, PARAMS)
    ax_diff.set_title("gradient check (float64)")
    ax_diff.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    ax_time.bar(["numerical", "backprop"], [timing["numerical_s"], timing["backprop_s"]], color=["tab:red", "tab:green"])
    log_axis(ax_time)
    ax_time.set_ylabel("seconds per gradient")
    ax_time.set_title(f"one gradient: numerical is {timing['ratio']:,.0f}× slower", fontsize=10)
    fig.tight_layout()
    return fig


def summary(check: dict, timing: dict, history: list[dict], check_size: tuple[int, int, int],
            n_train: int) -> str:
    hidden, batch, n_params = check_size
    steps = -(-n_train // batch)
    part1 = table(["param", "mean |backprop − numerical|", "mean |backprop − autograd|", "relative error",
                   "mean |grad|"],
                  [[p, sci(c["numerical_diff"]), sci(c["autograd_diff"]), sci(c["relative_error"]),
                    sci(c["mean_abs_grad"])] for p, c in check.items()])
    part2 = (f"one gradient of the {hidden}-hidden-unit net ({n_params:,} parameters) on {batch} images: "
             f"numerical {timing['numerical_s']:.2f} s, backprop {timing['backprop_s'] * 1e3:.3f} ms "
             f"→ numerical is {timing['ratio']:,.0f}× slower;\none epoch over the {n_train:,} training images "
             f"in {steps} batches of {batch} would take {timing['numerical_s'] * steps / 60:.1f} min numerically, "
             f"{timing['backprop_s'] * steps:.2f} s by backprop")
    part3 = table(["epoch", "loss", "train acc", "test acc"],
                  [[h["epoch"], "—" if h["epoch"] == 0 else f"{h['loss']:.4f}", f"{h['train_acc']:.3f}",
                    f"{h['test_acc']:.3f}"] for h in history])
    return f"gradient check (float64, bar: mean difference < 1e-6):\n{part1}\n\n{part2}\n\ntraining:\n{part3}"


def run(epochs: int = 10, hidden: int = 50, batch_size: int = 100, lr: float = 1.0, weight_init_std: float = 0.1,
        check_hidden: int = 10, check_batch: int = 20, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Gradient check, timing and training of the NumPy TwoLayerNet; one MLflow run.

    Args:
        epochs: training epochs.
        hidden: hidden sigmoid units of the trained net.
        batch_size: mini-batch size.
        lr: SGD learning rate.
        weight_init_std: std of the initial weights.
        check_hidden: hidden units of the net used for the gradient check and timing (numerical is slow).
        check_batch: images in the gradient-check and timing batch.
        test_fraction: share of the MNIST sample held out as test.
        seed: seeds the split, the weights and the shuffle.

    Returns ``{"check": {param: diffs}, "timing", "history": [per epoch], "summary", "run_id"}``.
    """
    for name, value in (("epochs", epochs), ("hidden", hidden), ("batch_size", batch_size), ("lr", lr),
                        ("weight_init_std", weight_init_std), ("check_hidden", check_hidden),
                        ("check_batch", check_batch), ("test_fraction", test_fraction)):
        check_positive(name, value)
    check_fraction("test_fraction", test_fraction)
    params = {"epochs": epochs, "hidden": hidden, "batch_size": batch_size, "lr": lr,
              "weight_init_std": weight_init_std, "check_hidden": check_hidden, "check_batch": check_batch,
              "test_fraction": test_fraction, "seed": seed, "dtype": "float64"}
    with lab_run("scratch", params) as rec:
        train_set, test_set = load_mnist_sample(test_fraction, seed)
        x_check, t_check = train_set[0][:check_batch], train_set[1][:check_batch]
        small = TwoLayerNet(784, check_hidden, 10, weight_init_std, seed=seed)
        check = gradient_check(small, x_check, t_check)
        timing = time_gradients(small, x_check, t_check)
        rec.log_metrics({f"{p}.{k}": v for p, c in check.items() for k, v in c.items()})
        rec.log_metrics({f"time.{k}": v for k, v in timing.items()})
        rec.log_figure(check_figure(check, timing), "gradient_check.png")

        net = TwoLayerNet(784, hidden, 10, weight_init_std, seed=seed)
        history = train(net, train_set, test_set, epochs, batch_size, lr, seed)
        rec.log_history({key: [(h["epoch"], h[key]) for h in history if key != "loss" or h["epoch"] > 0]
                         for key in ("loss", "train_acc", "test_acc")})
        title = (f"NumPy TwoLayerNet 784-{hidden}-10, SGD lr {lr:g}, batch {batch_size}: "
                 f"{len(train_set[1])} train / {len(test_set[1])} test images")
        rec.log_figure(training_figure(history, title), "training.png")
        text = summary(check, timing, history, (check_hidden, check_batch, small.num_parameters),
                       len(train_set[1]))
        rec.log_text(text, "summary.txt")
        return {"check": check, "timing": timing, "history": history, "summary": text, "run_id": rec.run_id}
