"""The textbook ``TwoLayerNet`` in NumPy only: affine → sigmoid → affine → softmax with cross-entropy.

Everything a framework hides is spelled out here: the forward pass, the loss, the gradient
by central differences (slow, obviously right) and by backpropagation (fast, easy to get
wrong) — which is why the two are compared (``lit_nn.lab.scratch``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PARAMS = ("W1", "b1", "W2", "b2")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−x), written via tanh so large negative x cannot overflow exp."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """log softmax per row, shifted by the row max so exp never overflows."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """∂f/∂x by central differences (f(x+h) − f(x−h)) / 2h, one element at a time, x modified in place
    and restored: 2 forward passes per parameter."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = f()
        x[idx] = old - h
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


class TwoLayerNet:
    """``input → W1, b1 → sigmoid → W2, b2 → softmax``; labels are class indices.

    Args:
        input_size, hidden_size, output_size: layer widths.
        weight_init_std: weights start as N(0, std²), biases at 0.
        seed: seeds the weight initialization.
        dtype: float64 for gradient checks (float32 rounding would swamp the differences).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, weight_init_std: float = 0.01,
                 seed: int = 0, dtype: type = np.float64) -> None:
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {
            "W1": (weight_init_std * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (weight_init_std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class scores (logits) for a batch of flattened inputs."""
        p = self.params
        return sigmoid(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        """Mean cross-entropy of softmax(scores) against integer labels ``t``."""
        return float(-log_softmax(self.predict(x))[np.arange(len(t)), t].mean())

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        return float((self.predict(x).argmax(axis=1) == t).mean())

    def numerical_gradient(self, x: np.ndarray, t: np.ndarray, h: float = 1e-4) -> dict[str, np.ndarray]:
        """Gradient of the loss for every parameter by central differences (2 forwards per number)."""
        return {name: numerical_gradient(lambda: self.loss(x, t), self.params[name], h) for name in PARAMS}

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Gradient of the loss by backpropagation: one forward, one backward pass."""
        p = self.params
        n = len(t)
        hidden = sigmoid(x @ p["W1"] + p["b1"])
        scores = hidden @ p["W2"] + p["b2"]
        # softmax + cross-entropy backward: (softmax − one-hot) / batch size
        d_scores = np.exp(log_softmax(scores))
        d_scores[np.arange(n), t] -= 1
        d_scores /= n
        d_hidden = d_scores @ p["W2"].T
        d_pre = d_hidden * hidden * (1 - hidden)  # sigmoid' = σ(1 − σ)
        return {
            "W1": x.T @ d_pre,
            "b1": d_pre.sum(axis=0),
            "W2": hidden.T @ d_scores,
            "b2": d_scores.sum(axis=0),
        }

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """Plain SGD: move every parameter against its gradient."""
        for name in PARAMS:
            self.params[name] -= lr * grads[name]
