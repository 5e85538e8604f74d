"""The NumPy TwoLayerNet: backprop against numerical gradients and autograd, and it learns."""

from __future__ import annotations

import numpy as np
import pytest

from lit_nn.core.errors import UserError
from lit_nn.lab import scratch as lab
from lit_nn.lab.twolayer import TwoLayerNet, numerical_gradient


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((7, 12)), rng.integers(0, 4, 7)


def test_numerical_gradient_of_a_known_function():
    x = np.array([[3.0, -1.0], [0.5, 2.0]])
    grad = numerical_gradient(lambda: float((x**2).sum() + x[0, 1] * x[1, 0]), x)
    np.testing.assert_allclose(grad, [[6.0, -2.0 + 0.5], [1.0 - 1.0, 4.0]], atol=1e-8)
    np.testing.assert_array_equal(x, [[3.0, -1.0], [0.5, 2.0]])  # restored after probing


def test_backprop_equals_numerical_gradient_and_autograd():
    x, t = _toy()
    net = TwoLayerNet(12, 6, 4, weight_init_std=0.5, seed=1)
    check = lab.gradient_check(net, x, t)
    for name, c in check.items():
        assert c["numerical_diff"] < 1e-6, (name, c)
        assert c["relative_error"] < 1e-7, (name, c)
        assert c["autograd_diff"] < 1e-14, (name, c)
        assert c["mean_abs_grad"] > 1e-3, (name, c)  # the check compared real, non-vanishing gradients


def test_gradient_check_catches_a_wrong_backward():
    class SigmoidSlopeBug(TwoLayerNet):
        def gradient(self, x, t):
            grads = super().gradient(x, t)
            grads["W1"] = grads["W1"] * 1.01  # a 1% error in one parameter's gradient
            return grads

    x, t = _toy()
    check = lab.gradient_check(SigmoidSlopeBug(12, 6, 4, weight_init_std=0.5, seed=1), x, t)
    assert check["W1"]["relative_error"] > 1e-3
    assert check["W2"]["relative_error"] < 1e-7


def test_loss_is_cross_entropy_of_the_softmax():
    net = TwoLayerNet(3, 2, 3, seed=0)
    for p in net.params.values():
        p[...] = 0.0  # all scores equal: uniform softmax
    assert net.loss(np.ones((4, 3)), np.array([0, 1, 2, 0])) == pytest.approx(np.log(3))


def test_training_lifts_accuracy_and_the_run_has_its_figures(client):
    result = lab.run(epochs=3, hidden=20, check_hidden=3, check_batch=5)
    history = result["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert history[0]["test_acc"] < 0.25  # untrained: about chance
    assert history[-1]["test_acc"] > 0.7 and history[-1]["train_acc"] > 0.7
    assert history[-1]["loss"] < history[1]["loss"]
    for name, c in result["check"].items():
        assert c["numerical_diff"] < 1e-6 and c["autograd_diff"] < 1e-12, name
    assert result["timing"]["ratio"] > 10  # one numerical gradient = thousands of forward passes

    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "scratch"
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"training.png", "gradient_check.png", "summary.txt"} <= artifacts
    assert [m.step for m in client.get_metric_history(result["run_id"], "test_acc")] == [0, 1, 2, 3]
    assert run.data.metrics["W1.numerical_diff"] < 1e-6


def test_diverging_training_stops_with_a_clear_error():
    x, t = _toy()
    net = TwoLayerNet(12, 6, 4, weight_init_std=0.5, seed=1)
    with np.errstate(all="ignore"), pytest.raises(UserError, match="training diverged.*smaller lr"):
        lab.train(net, (x, t), (x, t), epochs=3, batch_size=7, lr=1e308)
