"""Loss functions: torch's built-ins against their formulas, and softmax+CE vs squared error."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lit_nn.lab import losses as lab


@pytest.mark.parametrize("name", list(lab.LOSSES))
def test_torch_loss_matches_hand_formula(name):
    loss = lab.LOSSES[name]
    pred, target = loss.sample(torch.Generator().manual_seed(1), 64)
    torch.testing.assert_close(loss.builtin(pred, target), loss.hand(pred, target), rtol=1e-12, atol=1e-12)


def test_hand_formulas_on_values_worked_out_on_paper():
    """So the formulas themselves are right, not only equal to torch."""
    f = {name: loss.hand for name, loss in lab.LOSSES.items()}
    t = torch.tensor
    assert float(f["mse"](t([1.0, 3.0]), t([0.0, 0.0]))) == 5.0
    assert float(f["mae"](t([1.0, -3.0]), t([0.0, 0.0]))) == 2.0
    assert float(f["huber"](t([0.5, 3.0]), t([0.0, 0.0]))) == pytest.approx((0.125 + 2.5) / 2)
    assert float(f["binary_cross_entropy"](t([0.5]), t([1.0]))) == pytest.approx(math.log(2))
    assert float(f["cross_entropy"](t([[0.0, 0.0, 0.0, 0.0]]), t([2]))) == pytest.approx(math.log(4))
    q = t([[0.5, 0.5]])
    assert float(f["kl_divergence"](torch.log(q), q)) == pytest.approx(0.0, abs=1e-12)
    # scores (2, 0.5, 2.2), true class 0: margins max(0, 1−2+0.5)=0 and max(0, 1−2+2.2)=1.2, over C=3
    assert float(f["hinge"](t([[2.0, 0.5, 2.2]]), t([0]))) == pytest.approx(0.4)


def test_formula_gaps_are_rounding_only():
    gaps = lab.formula_gaps(n=32)
    assert set(gaps) == set(lab.LOSSES)
    assert max(gaps.values()) < 1e-12


def test_curves_have_their_textbook_shape():
    panels = lab.curves(points=601)
    _, s, reg = panels["regression, target t = 0"]
    far = s.abs() > 1
    torch.testing.assert_close(reg["Huber (δ = 1)"][far], reg["MAE"][far] - 0.5)
    torch.testing.assert_close(reg["Huber (δ = 1)"][~far], reg["MSE"][~far] / 2)
    _, q, kl = panels["KL divergence, target (0.7, 0.3)"]
    assert float(q[kl["KL(t ‖ q)"].argmin()]) == pytest.approx(0.7, abs=2e-3)
    _, s, hinge = panels["hinge vs logistic, target y = +1"]
    torch.testing.assert_close(hinge["hinge"], (1 - s).clamp(min=0))
    _, p, ce = panels["cross-entropy, 3 classes"]
    torch.testing.assert_close(ce["softmax + CE"], -torch.log(p))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_squared_error_mlp_trains_on_the_brier_loss():
    model = lab.SquaredErrorMLP(depth=1, hidden=8, activation="sigmoid")
    x, y = torch.randn(5, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4])
    loss = model.training_step((x, y), 0)
    probs = model(x).softmax(1)
    expected = ((probs - F.one_hot(y, 10)) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, expected)


def test_ce_learns_faster_than_squared_error_and_the_run_has_its_figures(client):
    result = lab.run(epochs=2, hidden=32, max_batches=25)
    ce, se = result["histories"]["cross_entropy"], result["histories"]["squared_error"]
    assert len(ce) == len(se) == 2
    assert ce[-1]["val_acc"] > 0.5, ce
    assert ce[-1]["val_acc"] > se[-1]["val_acc"] + 0.05, (ce, se)
    assert "MNIST" in result["source"]

    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "losses"
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"loss_curves.png", "ce_vs_mse_accuracy.png", "summary.txt"} <= artifacts
    history = client.get_metric_history(result["run_id"], "squared_error.val_acc")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["cross_entropy.formula_gap"] < 1e-12
