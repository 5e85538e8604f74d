"""Optimizer trajectories: real torch.optim steps on the 2-D bowls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lit_nn.lab import trajectories as lab


def test_every_optimizer_ends_closer_on_the_round_bowl_and_the_run_has_its_figures(client):
    result = lab.run(functions=["round", "stretched"], steps=30)
    round_bowl = result["results"]["round"]
    assert set(round_bowl) == set(lab.OPTIMIZER_SETTINGS)
    for name, m in round_bowl.items():
        assert m["start_distance"] == pytest.approx(math.hypot(1.0, 1.5))
        assert m["final_distance"] < m["start_distance"], name
        assert m["path"].shape == (31, 2)
    assert "final distance" in result["summary"] and "adadelta" in result["summary"]

    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "trajectories"
    assert client.get_experiment(run.info.experiment_id).name == "lab"
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"trajectories_round.png", "trajectories_stretched.png", "distance_per_step.png",
            "summary.txt"} <= artifacts
    assert run.data.metrics["round.adam.final_distance"] == pytest.approx(round_bowl["adam"]["final_distance"])
    history = client.get_metric_history(result["run_id"], "round.sgd.distance")
    assert len(history) == 31


@pytest.mark.parametrize(("start", "lr"), [((1.0, 1.5), 0.1), ((-3.0, 0.5), 0.1), ((2.0, -4.0), 0.02)])
def test_adams_first_step_is_lr_times_the_gradient_sign(start, lr):
    """Adam's first update is m̂/√v̂ = g/|g| per coordinate: a step of lr along each sign, length lr·√2."""
    path = lab.trajectory("round", "adam", start, lr, steps=1)
    step = path[1] - path[0]
    grad = 2 * np.asarray(start)
    np.testing.assert_allclose(step, -lr * np.sign(grad), rtol=1e-6)
    assert np.linalg.norm(step) == pytest.approx(lr * math.sqrt(2), rel=1e-6)


def test_sgd_first_step_is_lr_times_the_gradient():
    path = lab.trajectory("stretched", "sgd", (-7.0, 2.0), 0.1, steps=1)
    grad = np.array([2 * -7.0 / 20, 2 * 2.0])
    np.testing.assert_allclose(path[1] - path[0], -0.1 * grad, rtol=1e-12)


def test_stretched_bowl_separates_the_optimizers():
    """On x²/20 + y² plain SGD crawls along x; momentum and the adaptive methods get much closer."""
    final = {name: lab.path_metrics(lab.trajectory("stretched", name, (-7.0, 2.0), 0.1, 100), (0, 0), 1e-3)
             ["final_distance"] for name in ("sgd", "momentum", "rmsprop", "adam")}
    assert final["sgd"] > 1.0
    for name in ("momentum", "rmsprop", "adam"):
        assert final[name] < final["sgd"] / 4, final


def test_path_metrics_first_step_within_tolerance():
    path = np.array([[1.0, 0.0], [0.1, 0.0], [0.0005, 0.0], [0.0001, 0.0]])
    assert lab.path_metrics(path, (0.0, 0.0), 1e-3) == {
        "start_distance": 1.0, "final_distance": pytest.approx(1e-4), "first_within": 2}
    assert lab.path_metrics(path[:2], (0.0, 0.0), 1e-3)["first_within"] is None


@pytest.mark.parametrize("lr", [10.0, 1e30])
def test_a_diverging_path_is_drawn_to_the_edge_of_the_view_and_named(lr):
    """lr 10 once raised numpy's "Singular matrix" while plotting (the view spanned 1e64); lr 1e30
    makes paths inf and NaN."""
    import matplotlib.pyplot as plt

    paths = {name: lab.trajectory("round", name, (1.0, 1.5), lr, 40) for name in ("sgd", "adagrad")}
    assert not np.isfinite(paths["sgd"]).all() or np.abs(paths["sgd"][-1]).max() > 1e10  # it really diverges
    fig = lab.path_figure("round", paths, lr)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "sgd (leaves the view)" in labels
    x0, x1 = ax.get_xlim()
    assert -10 < x0 < 0 < x1 < 10  # the view is the start and the minimum, not the diverged points
    plt.close(fig)
