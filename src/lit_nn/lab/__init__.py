"""``lit-nn lab``: the fundamentals, one small experiment each, every one an MLflow run in
experiment ``lab`` with its figures (PNG), metrics and a text summary.

    gates         perceptron on AND/OR/NAND, its failure on XOR, a two-layer net that solves it
    activations   activation functions, derivatives, and activations through 5 layers per init
    losses        loss functions vs prediction; softmax+CE vs squared error on MNIST (Lightning)
    trajectories  torch.optim optimizers walking down a round and a stretched 2-D bowl
    scratch       a NumPy two-layer net: gradient check, numerical vs backprop timing, training
    all           every lab above with its defaults (``make lab``)
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable

from lit_nn.errors import UserError, unknown_choice

LABS: dict[str, str] = {
    "gates": "perceptron learns AND/OR/NAND, fails XOR; a two-layer net learns XOR",
    "activations": "activation functions, derivatives, and activation histograms through 5 layers",
    "losses": "loss functions against the prediction; softmax+CE vs squared error on MNIST",
    "trajectories": "SGD, momentum, Adagrad, RMSprop, Adadelta, Adam, AdamW on 2-D bowls",
    "scratch": "NumPy TwoLayerNet: gradient check vs numerical and autograd, timing, training",
}


class LabParser(argparse.ArgumentParser):
    """argparse whose errors become ``UserError`` (one ``error:`` line from the CLI, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}; see '{self.prog} --help'")


def _add_gates(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=500, help="full-batch gradient-descent steps per gate")
    p.add_argument("--lr", type=float, default=1.0, help="learning rate of the gradient descent")
    p.add_argument("--hidden", type=int, default=4, help="hidden tanh units of the two-layer XOR net")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights")


def _add_activations(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, default=1000, help="random inputs pushed through the layers")
    p.add_argument("--units", type=int, default=100, help="units per layer")
    p.add_argument("--layers", type=int, default=5, help="layers whose activations are histogrammed")
    p.add_argument("--seed", type=int, default=0, help="seeds the inputs and weights")


def _add_losses(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=5, help="training epochs for each of the two losses")
    p.add_argument("--optimizer", default="sgd",
                   help="sgd, adagrad, rmsprop, adadelta, adam or adamw (sgd shows the difference best)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate")
    p.add_argument("--hidden", type=int, default=128, help="sigmoid units of the MLP's hidden layer")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights (same start for both losses) and shuffle")
    p.add_argument("--data-root", default="data",
                   help="folder searched for MNIST IDX files; without them the embedded 5,000-image sample is used")
    p.add_argument("--max-batches", type=int, default=None,
                   help="cap on training batches per epoch (full MNIST is 860 batches; default: all)")


def _add_trajectories(p: argparse.ArgumentParser) -> None:
    p.add_argument("--functions", nargs="+", default=["round", "stretched"], metavar="NAME",
                   help="surfaces: round (x^2 + y^2, start 1.0 1.5) and/or stretched (x^2/20 + y^2, start -7 2)")
    p.add_argument("--optimizers", nargs="+", metavar="NAME",
                   default=["sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw"],
                   help="torch.optim optimizers to compare (momentum is SGD with momentum 0.9)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate, the same for every optimizer")
    p.add_argument("--start", type=float, nargs=2, metavar=("X", "Y"), default=None,
                   help="start point for every chosen function (%(default)s: each function's own)")
    p.add_argument("--tol", type=float, default=1e-3, help="distance to the minimum that counts as arrived")


def _add_scratch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--hidden", type=int, default=50, help="hidden sigmoid units of the trained net")
    p.add_argument("--batch-size", type=int, default=100, help="mini-batch size")
    p.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    p.add_argument("--weight-init-std", type=float, default=0.1, help="std of the initial weights")
    p.add_argument("--check-hidden", type=int, default=10,
                   help="hidden units of the net used for the gradient check and timing (numerical is slow)")
    p.add_argument("--check-batch", type=int, default=20, help="images in the gradient-check and timing batch")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of the MNIST sample held out as test")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the weights and the shuffle")


ADDERS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "gates": _add_gates,
    "activations": _add_activations,
    "losses": _add_losses,
    "trajectories": _add_trajectories,
    "scratch": _add_scratch,
}


def build_parser() -> LabParser:
    parser = LabParser(prog="lit-nn lab", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Each lab is an MLflow run in experiment 'lab' (see 'make ui'); "
                              "'lit-nn lab NAME --help' lists its options.")
    subs = parser.add_subparsers(dest="lab", metavar="LAB")
    for name, help_text in LABS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        ADDERS[name](sub)
    subs.add_parser("all", help="run every lab with its defaults, one MLflow run each",
                    description="Run gates, activations, losses, trajectories and scratch with their defaults.")
    return parser


def options(args: argparse.Namespace) -> dict[str, object]:
    """The parsed options as keyword arguments of the lab's ``run`` function."""
    kwargs = {k: v for k, v in vars(args).items() if k != "lab"}
    if args.lab == "trajectories" and kwargs.get("start") is not None:
        kwargs["start"] = tuple(kwargs["start"])
    return kwargs


def run_lab(name: str, **kwargs: object) -> dict:
    """Run one lab by name and print its summary; returns the lab's results."""
    module = importlib.import_module(f"lit_nn.lab.{name}")
    start = time.perf_counter()
    results = module.run(**kwargs)  # validates its options before it opens a run
    print(f"== lab {name}: {LABS[name]}")
    print(results["summary"])
    print(f"-- MLflow run {results['run_id']} (experiment 'lab'), {time.perf_counter() - start:.1f} s\n", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    """``lit-nn lab LAB [options]``; bad input raises ``UserError`` before any run is created."""
    argv = list(argv or [])
    parser = build_parser()
    if not argv:
        parser.print_help()
        return
    if not argv[0].startswith("-") and argv[0] not in (*LABS, "all"):
        raise unknown_choice("lab", argv[0], [*LABS, "all"])
    args = parser.parse_args(argv)
    if args.lab == "all":
        start = time.perf_counter()
        for name in LABS:
            run_lab(name)
        print(f"all {len(LABS)} labs done in {time.perf_counter() - start:.0f} s; "
              "their runs are in MLflow experiment 'lab'")
        return
    run_lab(args.lab, **options(args))
