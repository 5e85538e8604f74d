"""CUDA end to end: the real ``lit-nn`` command on one GPU, in bf16, deterministically, from a GPU
checkpoint back on the CPU, DDP on two GPUs, and a sweep whose workers each get their own GPU.

Every test is ``@pytest.mark.gpu``: without CUDA (or with fewer GPUs than ``count``) it is skipped
at collection with the reason (tests/conftest.py), before anything touches CUDA. ``make test-gpu``
runs them. Each fit is a subprocess, so CUDA state and Lightning's process-wide
``torch.use_deterministic_algorithms`` never leak between tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from conftest import runs_of
from helpers import metric_history, run_cli

pytestmark = pytest.mark.gpu

GPU = ["--trainer.accelerator", "gpu", "--trainer.devices", "1"]
QUIET = ["--trainer.enable_progress_bar", "false"]
# one epoch of a few batches: enough to run every step of a fit (train, validate, checkpoint, test)
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2",
        *QUIET]
MODELS = {
    "mlp": ["-c", "experiments/mnist_mlp.yaml"],
    "cnn": ["-c", "experiments/mnist_cnn.yaml"],
    "char_rnn": ["-c", "experiments/char_rnn.yaml", "--model.init_args.hidden", "128",
                 "--model.init_args.sample_length", "50"],
}
ON_CPU = {"CUDA_VISIBLE_DEVICES": ""}  # a process that sees no GPU at all, as on a CPU-only machine


def fit(experiment: str, model: str, *args: str, env: dict | None = None, timeout: float = 600) -> object:
    """``lit-nn fit`` of ``model`` in ``experiment``; the run it recorded (the only one there)."""
    result = run_cli("fit", *MODELS[model], "--experiment", experiment, *args, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def only_run(client, experiment: str):
    (run,) = runs_of(client, experiment)
    assert run.info.status == "FINISHED", run.data.tags.get("failure_reason")
    return run


def db_path(tracking_store: str) -> Path:
    return Path(tracking_store.removeprefix("sqlite:///"))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("model", list(MODELS))
def test_fit_on_one_gpu(client, model, precision):
    import torch

    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(0)} has no bf16")
    fit(f"gpu_{model}", model, *GPU, *TINY, "--trainer.precision", precision)
    run = only_run(client, f"gpu_{model}")
    assert run.data.tags["device"] == f"cuda:0 ({torch.cuda.get_device_name(0)})"
    assert run.data.params["trainer.accelerator"] == "gpu" and run.data.params["trainer.precision"] == precision
    metrics = run.data.metrics
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    if model == "char_rnn":
        assert metrics["val_bpc"] < 8.0  # below a uniform guess over 256 byte values
    else:
        assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["val_acc"] > 0.3  # 8 batches learn something
    checkpoints = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert checkpoints == ["checkpoints/best.ckpt"]


@pytest.mark.parametrize("model", ["cnn", "char_rnn"])
def test_deterministic_runs_with_the_same_seed_give_the_same_metrics(client, tracking_store, model):
    """cuDNN convolutions and LSTMs are where GPU runs usually differ; ``deterministic`` pins them."""
    args = [*GPU, "--trainer.deterministic", "true", "--trainer.max_epochs", "2",
            "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2", *QUIET]
    for name in ("det_a", "det_b"):
        fit(name, model, *args)
    a, b = metric_history(db_path(tracking_store), "det_a"), metric_history(db_path(tracking_store), "det_b")
    keys = {"train_loss", "val_loss", "val_acc", "train_acc", "val_bpc", "test_acc", "test_loss"} & set(a)
    assert {"train_loss", "val_loss"} <= keys
    for key in sorted(keys):
        assert a[key] == b[key], key
    assert [step for step, _ in a["val_loss"]] == [0, 1]


def test_a_gpu_checkpoint_trains_on_and_predicts_on_a_cpu(client, tracking_store):
    """Train on the GPU; in processes that see no GPU, continue from its last.ckpt (weights, Adam's
    state, the epoch counter) and predict with its best.ckpt."""
    fit("on_gpu", "mlp", *GPU, *TINY)
    gpu_run = only_run(client, "on_gpu")
    last = Path(gpu_run.data.tags["last_checkpoint"])
    assert last.is_file()

    predicted = run_cli("predict", "--ckpt_path", gpu_run.info.run_id, "--trainer.accelerator", "cpu", *QUIET,
                        env=ON_CPU, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    line = next(x for x in predicted.stdout.splitlines() if x.startswith("accuracy: "))
    accuracy = float(line.split()[1])
    # the same weights score the same test split on the GPU (end of fit) and the CPU, up to a borderline image
    assert accuracy == pytest.approx(gpu_run.data.metrics["test_acc"], abs=2 / 500)

    fit("on_cpu", "mlp", "--ckpt_path", str(last), "--trainer.accelerator", "cpu", "--trainer.max_epochs", "2",
        "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2", *QUIET, env=ON_CPU)
    cpu_run = only_run(client, "on_cpu")
    assert cpu_run.data.tags["device"] == "cpu" and cpu_run.data.tags["cuda_visible_devices"] == ""
    history = metric_history(db_path(tracking_store), "on_cpu")
    assert [step for step, _ in history["val_acc"]] == [1], "it went on from the GPU's epoch 0"
    assert math.isfinite(history["train_loss"][-1][1])
    gpu_loss = metric_history(db_path(tracking_store), "on_gpu")["train_loss"][0][1]
    assert history["train_loss"][-1][1] < gpu_loss * 1.5, "the weights and optimizer state came along"


@pytest.mark.gpu(count=2)
def test_ddp_on_two_gpus_records_one_run(client):
    fit("ddp_gpu", "mlp", "--trainer.accelerator", "gpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2", *QUIET)
    run = only_run(client, "ddp_gpu")
    assert run.data.tags["device"].startswith("cuda:0,1 (")
    for key in ("train_loss", "val_loss", "val_acc", "test_acc"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [0, 1]


def test_sweep_workers_each_train_on_their_own_gpu(client, tmp_path):
    from lit_nn.sweeps.driver import visible_gpus
    from lit_nn.sweeps.runner import pin_gpus

    sweep = {
        "name": "gpu_pins", "experiment": "gpu_pins",
        "config": {"seed_everything": 0, "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1}},
                   "data": {"class_path": "lit_nn.data.ImageDataModule"}, "trainer": {"devices": 1}},
        "points": [{"name": "adam", "model.optimizer": "adam"}, {"name": "sgd", "model.optimizer": "sgd"}],
        "seeds": [0],
    }
    path = tmp_path / "gpu_pins.yaml"
    path.write_text(yaml.safe_dump(sweep))
    result = run_cli("sweep", str(path), "--workers", "2", "--out", str(tmp_path / "reports"), *TINY,
                     "--trainer.accelerator", "gpu", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pins = pin_gpus(2, visible_gpus())
    assert f"GPUs (CUDA_VISIBLE_DEVICES): worker 0 → {pins[0]}, worker 1 → {pins[1]}" in result.stdout
    points = [r for r in runs_of(client, "gpu_pins") if r.data.tags.get("sweep_role") == "point"]
    assert len(points) == 2 and all(r.info.status == "FINISHED" for r in points)
    assert sorted(r.data.tags["cuda_visible_devices"] for r in points) == sorted(pins)
    assert all(r.data.tags["device"].startswith("cuda:0 (") for r in points)  # each sees only its own GPU
