"""``lit-nn lr_find`` (lit_nn.cli.lr_find): Lightning's Tuner.lr_find on a fit config, recorded in MLflow."""

from __future__ import annotations

import math

import pytest

from lit_nn.cli.lr_find import run_lr_find

from conftest import runs_of


def test_lr_find_prints_a_suggestion_and_logs_the_curve(client, capsys):
    suggestion = run_lr_find(["-c", "experiments/mnist_mlp.yaml", "--num_training", "20", "--min_lr", "1e-5",
                              "--data.init_args.batch_size", "32"])
    out = capsys.readouterr().out
    assert suggestion is not None and 1e-5 <= suggestion <= 1.0
    assert f"suggested lr: {suggestion:.3g}" in out
    assert f"use it: lit-nn fit -c experiments/mnist_mlp.yaml --model.init_args.lr {suggestion:.3g}" in out

    (run,) = runs_of(client, "lr_find")
    assert run.info.status == "FINISHED" and run.data.tags["lr_find"] == "true"
    assert run.data.tags["mlflow.runName"] == "lr_find-mlp-adam-mnist"
    assert run.data.metrics["suggested_lr"] == pytest.approx(suggestion)
    lrs = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "lr_find_lr"), key=lambda m: m.step)]
    losses = client.get_metric_history(run.info.run_id, "lr_find_loss")
    assert 2 <= len(lrs) == len(losses) <= 20
    assert lrs[0] == pytest.approx(1e-5) and all(a < b for a, b in zip(lrs, lrs[1:], strict=False))
    assert any(math.isclose(lr, suggestion) for lr in lrs)  # the suggestion is a point of the curve
    assert run.data.params["data.batch_size"] == "32" and run.data.params["lr_find.num_training"] == "20"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"lr_find.png", "config.yaml"}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["mnist-sample-5k"]


def test_lr_find_options_are_checked_before_anything_runs(capsys, client):
    """The finder's options are read by the fit parser they were added to: types by jsonargparse, the
    pair and the step count by lr_find; no run is created for any of them."""
    from helpers import assert_clean_error, run_main

    for argv, words in ((["--num_training", "1"], "--num_training 1 is too few steps"),
                        (["--min_lr", "1", "--max_lr", "0.1"], "give 0 < min_lr < max_lr"),
                        (["--num_training", "ten"], "num_training: Expected int. Got value: ten"),
                        (["--max_lr"], "--max_lr needs one value"),
                        (["--max_lrr", "1"], "unknown option '--max_lrr' for lit-nn lr_find (did you mean '--max_lr'?)")):
        assert_clean_error(run_main(capsys, "lr_find", "-c", "experiments/mnist_mlp.yaml", *argv), words)
    assert client.get_experiment_by_name("lr_find") is None  # nothing was created


def test_lr_find_is_a_lit_nn_command(capsys):
    from helpers import assert_clean_error, run_main

    assert_clean_error(run_main(capsys, "lr_find", "-c", "experiments/mnist_mlp.yaml", "--num_training", "1"),
                       "--num_training 1 is too few steps")
    usage = run_main(capsys, "lr_find", "--help").stdout
    assert usage.startswith("usage: lit-nn lr_find")
    assert "--min_lr MIN_LR" in usage and "--model.help" in usage  # its own options and every fit option
