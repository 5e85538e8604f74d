"""Per-layer dynamics (lit_nn.tracking.dynamics): known values on tiny models, read back from MLflow."""

from __future__ import annotations

import io

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_nn.core.names import Dynamics
from lit_nn.models import CNN, MLP, CharRNN
from lit_nn.tracking.dynamics import (
    Activation,
    Histograms,
    LayerDynamics,
    activation_stats,
    common_grid,
    find_activations,
    find_layers,
    save_histograms,
)
from lit_nn.tracking.logger import MLflowTracker

from conftest import runs_of
from helpers import run_main

TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--log_model", "false"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def fit(model: L.LightningModule, x: torch.Tensor, y: torch.Tensor, experiment: str, every: int,
        epochs: int = 2, batch: int = 4) -> MLflowTracker:
    tracker = MLflowTracker(experiment, run_name="t")
    trainer = L.Trainer(max_epochs=epochs, logger=tracker, callbacks=[LayerDynamics(every=every)],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu", devices=1)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=batch))
    return tracker


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_a_dead_relu_layer_reads_dead_fraction_1_and_zero_gradient(client):
    torch.manual_seed(0)
    model = MLP(depth=2, hidden=8, input_size=5, num_classes=3, optimizer="sgd", lr=0.1)
    fc1, fc3 = model.net[1], model.net[5]
    with torch.no_grad():  # fc1's ReLU never fires: dead on purpose, so fc1 gets no gradient at all
        fc1.bias.fill_(-1e3)
    fc3_norm = float(torch.linalg.vector_norm(torch.cat([fc3.weight.flatten(), fc3.bias]).detach()))
    x, y = torch.randn(24, 5), torch.randint(0, 3, (24,))
    tracker = fit(model, x, y, "dead", every=2)  # 6 steps an epoch: steps 0, 2, ..., 10

    run_id = tracker.run_id
    steps = [0, 2, 4, 6, 8, 10]
    assert history(client, run_id, "dead_frac/fc1") == [(s, 1.0) for s in steps]
    assert history(client, run_id, "grad_norm/fc1") == [(s, 0.0) for s in steps]
    assert history(client, run_id, "update_ratio/fc1") == [(s, 0.0) for s in steps]
    assert history(client, run_id, "act_mean/fc1") == [(s, 0.0) for s in steps]
    assert history(client, run_id, "act_std/fc1") == [(s, 0.0) for s in steps]
    # the output layer still learns: a gradient, and its first weight norm is its initial one
    fc3_grad = history(client, run_id, "grad_norm/fc3")
    assert [s for s, _ in fc3_grad] == steps and all(v > 0 for _, v in fc3_grad)
    assert history(client, run_id, "weight_norm/fc3")[0] == (0, pytest.approx(fc3_norm, rel=1e-6))
    ratio = history(client, run_id, "update_ratio/fc3")[0][1]
    assert 0 < ratio < 1
    run = client.get_run(run_id)
    assert run.data.tags["steps_per_epoch"] == "6"
    layers = {Dynamics.split(k)[1] for k in run.data.metrics if Dynamics.split(k)}
    assert layers == {"fc1", "fc2", "fc3"}
    # the update ratio is ‖Δw‖/‖w‖ of that step: plain SGD moves fc3 by lr × its gradient
    weight = history(client, run_id, "weight_norm/fc3")[0][1]
    assert ratio == pytest.approx(0.1 * fc3_grad[0][1] / weight, rel=1e-5)


def test_histograms_artifact_and_heatmaps(client, tmp_path):
    torch.manual_seed(0)
    model = MLP(depth=1, hidden=6, input_size=4, num_classes=2, activation="tanh", optimizer="sgd", lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    tracker = fit(model, x, y, "hist", every=3, epochs=3)

    artifacts = {a.path for a in client.list_artifacts(tracker.run_id, "dynamics")}
    assert artifacts == {"dynamics/histograms.npz", "dynamics/weights.png", "dynamics/gradients.png",
                         "dynamics/activations.png"}
    path = client.download_artifacts(tracker.run_id, "dynamics/histograms.npz", str(tmp_path))
    arrays = np.load(path)
    assert arrays["epochs"].tolist() == [0, 1, 2]
    # fc1: 6×4 weights + 6 biases, every epoch; its tanh's 4 (last batch) × 6 outputs
    assert arrays["weights/fc1/counts"].shape == (3, 64) and arrays["weights/fc1/edges"].shape == (3, 65)
    assert arrays["weights/fc1/counts"].sum(axis=1).tolist() == [30, 30, 30]
    assert arrays["gradients/fc2/counts"].sum(axis=1).tolist() == [14, 14, 14]
    assert arrays["activations/fc1/counts"].sum(axis=1).tolist() == [24, 24, 24]
    edges = arrays["activations/fc1/edges"]
    assert (edges[:, 0] >= -1).all() and (edges[:, -1] <= 1).all()  # tanh's range
    assert "saturated_frac/fc1" in client.get_run(tracker.run_id).data.metrics


def test_char_rnn_layers_are_its_weight_matrices_and_its_output_saturates(client):
    torch.manual_seed(0)
    model = CharRNN(cell="gru", embedding=4, hidden=5, vocab="abcd", sample_length=0)
    assert [layer.name for layer in find_layers(model)] == [
        "embed", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "head"]
    assert [(a.name, a.kind) for a in find_activations(model)] == [("rnn", "saturated")]
    ids = torch.randint(0, 4, (8, 7))
    tracker = fit(model, ids, ids.roll(-1, 1), "rnn", every=1, epochs=1)
    metrics = client.get_run(tracker.run_id).data.metrics
    for key in ("grad_norm/rnn.weight_hh_l0", "update_ratio/embed", "act_std/rnn", "saturated_frac/rnn"):
        assert key in metrics
    assert 0 <= metrics["saturated_frac/rnn"] <= 1


def test_layers_are_named_as_the_models_name_them():
    cnn = CNN(batch_norm=True)
    assert [layer.name for layer in find_layers(cnn)] == ["conv1", "bn1", "conv2", "bn2", "fc1", "fc2", "fc3"]
    assert [(a.name, a.kind) for a in find_activations(cnn)] == [
        ("conv1", "dead"), ("conv2", "dead"), ("fc1", "dead"), ("fc2", "dead")]
    mlp = MLP(depth=3, activation="sigmoid", dropout=0.1)
    assert [layer.name for layer in find_layers(mlp)] == ["fc1", "fc2", "fc3", "fc4"]
    assert {a.kind for a in find_activations(mlp)} == {"saturated"}
    assert [layer.name for layer in find_layers(CharRNN(cell="classic", vocab="ab"))] == ["rnn.i2h", "rnn.i2o"]


def test_activation_statistics():
    relu = Activation("fc1", nn.ReLU(), "dead")
    out = torch.tensor([[0.0, 1.0, 0.0], [0.0, 3.0, 2.0]])  # unit 0 never fires
    mean, std, dead = activation_stats(out, relu)
    assert float(mean) == pytest.approx(1.0) and float(std) == pytest.approx(float(out.std()))
    assert float(dead) == pytest.approx(1 / 3)
    conv = torch.zeros(2, 2, 3, 3)
    conv[1, 0] = 1.0  # channel 0 fires everywhere in the second image: 9 of the 18 units alive
    assert float(activation_stats(conv, relu)[2]) == pytest.approx(0.5)
    tanh = Activation("fc1", nn.Tanh(), "saturated", -1.0, 1.0)
    assert float(activation_stats(torch.tensor([[0.995, 0.5], [-0.999, 0.0]]), tanh)[2]) == pytest.approx(0.5)
    sigmoid = Activation("fc1", nn.Sigmoid(), "saturated", 0.0, 1.0)
    assert float(activation_stats(torch.tensor([[0.001, 0.5], [0.9999, 0.99]]), sigmoid)[2]) == pytest.approx(0.5)


def test_common_grid_keeps_each_rows_distribution():
    edges = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])
    counts = np.array([[3, 1], [0, 5]])
    grid, density = common_grid(edges, counts, bins=4)
    assert grid.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert density.tolist() == [[0.75, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def test_histograms_file_round_trips(tmp_path):
    histograms = Histograms()
    histograms.add(0, {("weights", "fc1"): torch.tensor([0.0, 1.0, 1.0, 2.0])}, bins=2)
    histograms.add(1, {("weights", "fc1"): torch.full((4,), 3.0)}, bins=2)  # constant: one bin around it
    save_histograms(histograms, tmp_path / "h.npz")
    arrays = np.load(io.BytesIO((tmp_path / "h.npz").read_bytes()))
    assert arrays["weights/fc1/counts"].tolist() == [[1, 3], [0, 4]]
    assert arrays["weights/fc1/edges"].tolist() == [[0.0, 1.0, 2.0], [2.5, 3.0, 3.5]]


def test_fit_records_dynamics_by_default_and_not_with_dynamics_false(client, capsys):
    on = run_main(capsys, "fit", "-c", "experiments/mnist_cnn.yaml", "--experiment", "dyn-on", *TINY,
                  "--dynamics_every", "2")
    assert on.returncode == 0, on.stderr[-3000:]
    (run,) = runs_of(client, "dyn-on")
    history_ = client.get_metric_history(run.info.run_id, "grad_norm/conv1")
    assert [m.step for m in history_] == [0, 2, 4]  # 3 steps an epoch, 2 epochs
    for key in ("update_ratio/fc3", "weight_norm/conv2", "dead_frac/conv2", "act_mean/fc2"):
        assert key in run.data.metrics, key
    assert "dynamics/gradients.png" in {a.path for a in client.list_artifacts(run.info.run_id, "dynamics")}

    off = run_main(capsys, "fit", "-c", "experiments/mnist_cnn.yaml", "--experiment", "dyn-off", *TINY,
                   "--dynamics", "false")
    assert off.returncode == 0, off.stderr[-3000:]
    (run,) = runs_of(client, "dyn-off")
    assert not [k for k in run.data.metrics if Dynamics.split(k)]
    assert "dynamics" not in {a.path for a in client.list_artifacts(run.info.run_id)}
