"""Logic gates: the perceptron learns the linearly separable gates, not XOR; one hidden layer does."""

from __future__ import annotations

import torch

from lit_nn.lab import gates as lab


def test_perceptron_learns_and_or_nand_fails_xor_two_layer_learns_xor(client):
    result = lab.run(epochs=300)
    models = result["models"]
    for gate in ("AND", "OR", "NAND"):
        assert models[gate]["outputs"] == list(lab.GATES[gate]), gate
        assert models[gate]["accuracy"] == 1.0
    assert models["XOR perceptron"]["accuracy"] <= 0.75  # a line separates at most 3 of 4 rows
    assert models["XOR two-layer"]["outputs"] == [0, 1, 1, 0]
    assert "single perceptron fails" in result["summary"]

    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "gates"
    assert run.data.metrics["xor_two-layer.accuracy"] == 1.0
    assert run.data.metrics["xor_perceptron.accuracy"] <= 0.75
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"decision_boundaries.png", "summary.txt"} <= artifacts


def test_truth_table_of_hand_set_perceptrons():
    """The step output of w·x + b: weights (1, 1) with bias −1.5 is AND, with bias −0.5 is OR."""
    unit = lab.perceptron()
    with torch.no_grad():
        unit.weight.copy_(torch.tensor([[1.0, 1.0]]))
        unit.bias.fill_(-1.5)
        assert lab.truth_table(unit) == list(lab.GATES["AND"])
        unit.bias.fill_(-0.5)
        assert lab.truth_table(unit) == list(lab.GATES["OR"])
        unit.weight.neg_()
        unit.bias.fill_(1.5)
        assert lab.truth_table(unit) == list(lab.GATES["NAND"])


def test_gradient_descent_lowers_the_loss():
    torch.manual_seed(0)
    losses = lab.train_gate(lab.perceptron(), lab.GATES["AND"], epochs=50, lr=1.0)
    assert len(losses) == 50 and losses[-1] < losses[0] / 2
