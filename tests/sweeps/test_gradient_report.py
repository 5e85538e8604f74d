"""Comparison reports' per-layer gradient figure: read from the runs' grad_norm/<layer> metrics."""

from __future__ import annotations

import pytest

from lit_nn.sweeps.compare import to_run_data
from lit_nn.sweeps.report import gradient_figure, write_report
from lit_nn.tracking.store import ensure_experiment

T0 = 1_700_000_000_000


def grad(depth: int, layer: int, seed: int, step: int) -> float:
    return 10.0 ** (layer - depth) * (1 + 0.1 * seed) / (1 + step)  # vanishing toward the input


def make_run(client, exp_id: str, depth: int, seed: int) -> str:
    run = client.create_run(exp_id, run_name=f"d{depth}-s{seed}", start_time=T0,
                            tags={"depth": str(depth), "seed": str(seed), "steps_per_epoch": "4"})
    rid = run.info.run_id
    for epoch in range(2):
        client.log_metric(rid, "val_acc", 0.5 + 0.1 * epoch, step=epoch)
    for step in (0, 2, 4, 6):
        for layer in range(1, depth + 2):
            client.log_metric(rid, f"grad_norm/fc{layer}", grad(depth, layer, seed, step), step=step)
    client.set_terminated(rid, "FINISHED", end_time=T0 + 1000)
    return rid


def test_the_report_draws_each_layers_gradient_norm_per_group(client, tmp_path):
    exp_id = ensure_experiment("depths")
    runs = [to_run_data(client, client.get_run(make_run(client, exp_id, depth, seed)), str(depth), True)
            for depth in (1, 2) for seed in (0, 1)]
    assert runs[0].gradients["fc1"] == [(0.0, grad(1, 1, 0, 0)), (0.5, grad(1, 1, 0, 2)), (1.0, grad(1, 1, 0, 4)),
                                        (1.5, grad(1, 1, 0, 6))]  # step / steps_per_epoch
    figure = gradient_figure(runs, "depth", ["1", "2"], "depths")
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_lines()]
    assert [ax.get_title() for ax in panels] == ["depth 1", "depth 2"]
    for ax, depth in zip(panels, (1, 2), strict=True):
        assert [line.get_label() for line in ax.get_lines()] == [f"fc{k}" for k in range(1, depth + 2)]
        assert ax.get_yscale() == "log"
        for k, line in enumerate(ax.get_lines(), start=1):
            assert list(line.get_xdata()) == [0.0, 0.5, 1.0, 1.5]
            want = [(grad(depth, k, 0, s) + grad(depth, k, 1, s)) / 2 for s in (0, 2, 4, 6)]
            assert list(line.get_ydata()) == pytest.approx(want)
    report = write_report(runs, tmp_path, "depths", "depth", ["1", "2"])
    assert (tmp_path / "gradients.png").stat().st_size > 0
    assert "![per-layer gradient norm](gradients.png)" in report.markdown_path.read_text()


def test_runs_without_dynamics_get_no_gradient_figure(client, tmp_path):
    exp_id = ensure_experiment("plain")
    rid = client.create_run(exp_id, run_name="r", tags={"depth": "1"}).info.run_id
    client.log_metric(rid, "val_acc", 0.5, step=0)
    client.set_terminated(rid, "FINISHED")
    runs = [to_run_data(client, client.get_run(rid), "1", True)]
    assert runs[0].gradients == {} and gradient_figure(runs, "depth") is None
    report = write_report(runs, tmp_path, "plain", "depth")
    assert not (tmp_path / "gradients.png").exists() and "gradients.png" not in report.markdown_path.read_text()
