"""Activation functions: hand-written derivatives against autograd, the properties table, and the
classic activations-through-layers experiment."""

from __future__ import annotations

import math

import pytest
import torch

from lit_nn.lab import activations as lab


@pytest.mark.parametrize("name", list(lab.ACTIVATION_FUNCTIONS))
def test_hand_derivative_matches_autograd(name):
    """On a grid including 0 and the tails: torch's own backward is the reference, convention at 0 too."""
    x = torch.cat([torch.linspace(-8, 8, 1601, dtype=torch.float64), torch.tensor([0.0, -30.0, 30.0],
                                                                                   dtype=torch.float64)])
    x.requires_grad_(True)
    fn, _ = lab.ACTIVATION_FUNCTIONS[name]
    (auto,) = torch.autograd.grad(fn(x).sum(), x)
    torch.testing.assert_close(lab.derivative(name, x.detach()), auto, rtol=1e-10, atol=1e-12)


def test_properties_table_values():
    props = {name: lab.properties(name) for name in lab.ACTIVATION_FUNCTIONS}
    assert props["sigmoid"]["range"] == "(0, 1)" and props["sigmoid"]["derivative_at_0"] == pytest.approx(0.25)
    assert props["tanh"]["range"] == "(-1, 1)" and props["tanh"]["derivative_at_0"] == pytest.approx(1.0)
    assert props["relu"]["range"] == "[0, ∞)"
    assert props["leaky_relu"]["range"] == "(-∞, ∞)"
    assert props["selu"]["range"] == "(-1.76, ∞)"  # −scale·alpha, approached as x → −∞
    assert props["gelu"]["range"] == "[-0.17, ∞)"  # a true minimum near x = −0.75
    assert props["gelu"]["derivative_at_0"] == pytest.approx(0.5)
    assert props["sigmoid"]["vanishes"] == props["tanh"]["vanishes"] == "yes, both sides"
    assert props["relu"]["vanishes"] == props["gelu"]["vanishes"] == "for x → -∞"
    assert props["leaky_relu"]["vanishes"] == "no"


def test_init_weights_have_the_textbook_spread():
    gen = torch.Generator().manual_seed(0)
    for init, expected in (("std 0.01", 0.01), ("xavier", math.sqrt(2 / 800)), ("he", math.sqrt(2 / 400))):
        weight = torch.empty(400, 400)
        lab.init_weights(weight, init, gen)
        assert float(weight.std()) == pytest.approx(expected, rel=0.02), init


def test_layer_histograms_show_the_classic_result_and_the_run_has_its_figures(client):
    result = lab.run(samples=200, units=100, layers=5)
    last = {key: stds[-1] for key, stds in result["stds"].items()}
    # tiny weights collapse the signal; the matched initialization keeps it alive through 5 layers
    assert last[("relu", "std 0.01")] < 1e-4 < 0.3 < last[("relu", "he")]
    assert last[("tanh", "std 0.01")] < 1e-3 and last[("tanh", "xavier")] > 0.1
    assert last[("sigmoid", "std 0.01")] < 0.05 < last[("sigmoid", "xavier")]
    assert "gradient vanishes" in result["summary"]

    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "activations"
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"activations.png", "layer_histograms.png", "summary.txt"} <= artifacts
    assert run.data.metrics["sigmoid.derivative_at_0"] == pytest.approx(0.25)
    assert len(client.get_metric_history(result["run_id"], "relu.he.std")) == 5
