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

import importlib
import time

LABS: dict[str, str] = {
    "gates": "perceptron learns AND/OR/NAND, fails XOR; a two-layer net learns XOR",
    "activations": "activation functions, derivatives, and activation histograms through 5 layers",
    "losses": "loss functions against the prediction; softmax+CE vs squared error on MNIST",
    "trajectories": "SGD, momentum, Adagrad, RMSprop, Adadelta, Adam, AdamW on 2-D bowls",
    "scratch": "NumPy TwoLayerNet: gradient check vs numerical and autograd, timing, training",
}


def run_lab(name: str, **kwargs: object) -> dict:
    """Run one lab by name and print its summary; returns the lab's results."""
    module = importlib.import_module(f"lit_nn.lab.{name}")
    start = time.perf_counter()
    results = module.run(**kwargs)  # validates its options before it opens a run
    print(f"== lab {name}: {LABS[name]}")
    print(results["summary"])
    print(f"-- MLflow run {results['run_id']} (experiment 'lab'), {time.perf_counter() - start:.1f} s\n", flush=True)
    return results


def run_all() -> None:
    """Every lab with its defaults, one MLflow run each (``make lab``)."""
    start = time.perf_counter()
    for name in LABS:
        run_lab(name)
    print(f"all {len(LABS)} labs done in {time.perf_counter() - start:.0f} s; "
          "their runs are in MLflow experiment 'lab'")
