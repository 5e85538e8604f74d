"""The best checkpoint of a fit as an MLflow model: ``runs:/<run id>/model`` loads without
unpickling anything and predicts what the best checkpoint predicts; ``--register`` makes it a
registered model version."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_nn.core.names import Artifact, Tag
from lit_nn.core.signatures import init_arg_names
from lit_nn.data.images import ImageDataModule, embedded_mnist_sample
from lit_nn.models import CNN, CharRNN
from lit_nn.tracking.checkpoints import load_checkpoint
from lit_nn.tracking.model_export import ModelExport, model_config

from conftest import runs_of
from helpers import REPO, assert_clean_error, run_main

# lr 0.02 overshoots after epoch 3 on this budget: the best checkpoint is not the final weights
CNN_FIT = ["fit", "-c", "experiments/mnist_cnn.yaml", "--experiment", "export", "--model.init_args.lr", "0.02",
           "--model.init_args.lr_schedule", "constant", "--data.init_args.rotate", "0", "--data.init_args.scale", "0",
           "--trainer.max_epochs", "5", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
           "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false"]
REGISTERED = "mnist-cnn-test"

# what a user would run in a fresh Python, knowing only the run's URI
LOAD = """
import json, sys
import numpy as np
import mlflow
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

assert MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get() is False
model = mlflow.pyfunc.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
import lit_nn
meta = model.metadata
print(json.dumps({"lit_nn": lit_nn.__file__, "inputs": meta.signature.inputs.to_dict(),
                  "outputs": meta.signature.outputs.to_dict(), "example": model.input_example.shape,
                  "predict_example": model.predict(model.input_example).shape}))
"""


@dataclass
class Fit:
    uri: str
    output: list[str]  # the lines the fit printed
    final: dict[str, torch.Tensor]  # the weights the fit ended with (not best.ckpt's)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fit:
    """One CNN fit with --register, in this process, in its own store (the per-test stores are
    emptied after each test); a spy keeps the weights the fit ended with."""
    from lit_nn.cli import main

    store = tmp_path_factory.mktemp("export-store")
    final: dict[str, torch.Tensor] = {}
    export = ModelExport.on_fit_end

    def spy(self, trainer, pl_module):
        final.update({k: v.detach().clone() for k, v in pl_module.state_dict().items()})
        export(self, trainer, pl_module)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
        patch.setattr(ModelExport, "on_fit_end", spy)
        for handler in _stream_handlers():  # Lightning's and MLflow's loggers write where print does
            patch.setattr(handler, "stream", out)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main([*CNN_FIT, "--register", REGISTERED])
            except SystemExit as exit_:
                pytest.fail(f"fit exited with {exit_.code}: {out.getvalue()[-3000:]}")
    return Fit(f"sqlite:///{store}/mlflow.db", out.getvalue().strip().splitlines(), final)


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]


@pytest.fixture
def store_client(fitted):
    from mlflow.tracking import MlflowClient

    return MlflowClient(fitted.uri)


def the_run(client):
    (run,) = runs_of(client, "export")
    return run


def probabilities(checkpoint: dict, weights: dict[str, torch.Tensor], images: torch.Tensor) -> np.ndarray:
    """Class probabilities of a CNN built as the checkpoint's, with ``weights``, on normalized images."""
    model = CNN(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k in init_arg_names(CNN)})
    model.load_state_dict(weights)
    with torch.no_grad():
        return model.eval()(images).softmax(dim=1).numpy()


def test_logged_model_loads_without_pickle_and_predicts_like_the_best_checkpoint(fitted, store_client, tmp_path):
    run = the_run(store_client)
    best_ckpt = load_checkpoint(Path(run.data.tags[Tag.CHECKPOINT_DIR]) / "best.ckpt")
    assert int(run.data.metrics["best_epoch"]) == best_ckpt["epoch"] < 4  # the fit ends past its best epoch

    raw, _ = embedded_mnist_sample()
    raw = raw[:16]  # uint8 (16, 28, 28)
    np.save(tmp_path / "in.npy", (raw.float() / 255).numpy())  # what a user passes: pixels in [0, 1]
    env = {"MLFLOW_TRACKING_URI": fitted.uri, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    loaded = subprocess.run([sys.executable, "-c", LOAD, f"runs:/{run.info.run_id}/{Artifact.MODEL}",
                             str(tmp_path / "in.npy"), str(tmp_path / "out.npy")],
                            capture_output=True, text=True, timeout=300, env={**_clean_env(), **env}, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    info = json.loads(loaded.stdout.strip().splitlines()[-1])
    got = np.load(tmp_path / "out.npy")

    # the training pipeline's own normalization, applied to the same raw images
    normalized = ImageDataModule()._normalize(raw)
    best = probabilities(best_ckpt, best_ckpt["state_dict"], normalized)
    final = probabilities(best_ckpt, fitted.final, normalized)
    assert got.shape == (16, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, best, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, final, atol=1e-3)  # the best checkpoint, not the weights the fit ended with

    # the network was built from the code logged with the model, not from this checkout
    assert "/code/lit_nn/" in info["lit_nn"] and not info["lit_nn"].startswith(str(REPO))
    assert info["inputs"] == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}}]
    assert info["outputs"] == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 10]}}]
    assert info["example"] == [2, 28, 28] and info["predict_example"] == [2, 10]


def test_logged_model_records_explicit_requirements_and_no_pickle(fitted, store_client):
    run = the_run(store_client)
    (model,) = store_client.search_logged_models([run.info.experiment_id], filter_string="name = 'model'")
    assert model.source_run_id == run.info.run_id
    local = Path(store_client.download_artifacts(run.info.run_id, Artifact.MODEL))
    requirements = (local / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"mlflow", "torch", "lightning", "torchmetrics", "numpy"}
    assert all("==" in r and "+" not in r for r in requirements)
    assert not list(local.rglob("*.pkl")) and "python_model.pkl" not in (local / "MLmodel").read_text()
    shutil.rmtree(local, ignore_errors=True)


def test_register_creates_a_version_of_the_runs_model(fitted, store_client):
    run = the_run(store_client)
    (model,) = store_client.search_logged_models([run.info.experiment_id], filter_string="name = 'model'")
    (version,) = store_client.search_model_versions(f"name = '{REGISTERED}'")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    assert version.source == f"models:/{model.model_id}"

    lines = fitted.output
    said = [n for n, line in enumerate(lines) if f"registered as '{REGISTERED}' version 1" in line]
    assert len(said) == 1 and f"runs:/{run.info.run_id}/model" in lines[said[0]]
    assert "result: test_acc=" in lines[-2] and "mlflow: run " in lines[-1]  # nothing after them
    assert said[0] < len(lines) - 2


@pytest.mark.parametrize("normalize", [None, (0.5, 0.5)])
def test_the_model_standardizes_pixels_as_its_training_data_did(normalize):
    model, data = CNN(), ImageDataModule(normalize=normalize)
    config = model_config({"hyper_parameters": dict(model.hparams), "epoch": 2}, model, data)
    assert (config["input"]["mean"], config["input"]["std"]) == (normalize or (0.1307, 0.3081))
    assert config["model_class"] == "CNN" and config["init_args"]["channels"] == (16, 32)


@pytest.mark.parametrize("args, fragment", [
    (["--register", "team/mnist"], "--register 'team/mnist' is not a valid registered model name"),
    (["--register", "a:b"], "is not a valid registered model name"),
    (["--register", " "], "is not a valid registered model name"),
    (["--register", "..up"], "is not a valid registered model name"),
    (["--register", "ok", "--log_model", "false"], "--log_model false logs none"),
])
def test_a_bad_register_request_is_one_sentence_before_training(capsys, client, args, fragment):
    result = run_main(capsys, *CNN_FIT, *args)
    assert_clean_error(result, fragment)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert client.get_experiment_by_name("export") is None  # refused before any run was opened


def test_log_model_false_logs_no_model(capsys, client):
    result = run_main(capsys, *CNN_FIT, "--log_model", "false", "--trainer.max_epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = the_run(client)
    assert list(client.search_logged_models([run.info.experiment_id])) == []
    assert "model: runs:/" not in result.stdout + result.stderr


@pytest.mark.parametrize("register", [None, "digits"])
def test_a_full_disk_while_logging_the_model_is_one_sentence(capsys, client, monkeypatch, register):
    """weights.pt on a full disk once ended a finished fit in a traceback: without --register the run
    stays FINISHED and says the model was not logged; with it, what was asked for did not happen and
    the run ends FAILED with the sentence. The best checkpoint is complete either way."""
    import errno

    save = torch.save

    def full(obj, path, *args, **kwargs):  # the disk fills up at the model's weights, not before
        if Path(str(path)).name == "weights.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    extra = ["--register", register] if register else []
    result = run_main(capsys, *CNN_FIT, "--trainer.max_epochs", "1", *extra)
    run = the_run(client)
    assert "Traceback" not in result.stderr
    assert list(client.search_logged_models([run.info.experiment_id])) == []  # nothing half-logged
    if register:
        assert result.returncode != 0 and run.info.status == "FAILED"
        assert "the model was not logged nor registered as 'digits': the disk is full" in result.stderr
    else:
        assert result.returncode == 0 and run.info.status == "FINISHED", result.stderr[-2000:]
        assert "model: not logged (the disk is full in" in result.stdout + result.stderr
    assert "state_dict" in load_checkpoint(Path(run.data.tags[Tag.CHECKPOINT_DIR]) / "best.ckpt")


ROMEO = ("ROMEO: But soft, what light through yonder window breaks?\n"
         "It is the east, and Juliet is the sun.\n") * 30


def test_char_rnn_model_continues_prompts(capsys, client, tmp_path, monkeypatch):
    import mlflow

    (tmp_path / "romeo.txt").write_text(ROMEO)
    result = run_main(capsys, "fit", "-c", "experiments/char_rnn.yaml", "--experiment", "rnn-export",
                      "--data.init_args.path", str(tmp_path / "romeo.txt"), "--data.init_args.seq_len", "32",
                      "--data.init_args.batch_size", "8", "--model.init_args.hidden", "24",
                      "--model.init_args.embedding", "8", "--model.init_args.sample_length", "0",
                      "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "8",
                      "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(client, "rnn-export")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/{Artifact.MODEL}")

    greedy = model.predict(["ROMEO:", "It is"], params={"length": 30, "temperature": 0.0})
    best = CharRNN.from_checkpoint_dict(load_checkpoint(Path(run.data.tags[Tag.CHECKPOINT_DIR]) / "best.ckpt"), "best")
    expected = ["".join(best.sample(p, 30, 0.0)) for p in ("ROMEO:", "It is")]
    assert greedy == expected and all(len(text) == 30 for text in greedy)
    # sampled text: the seed param makes it reproducible, and it matters
    sampled = model.predict(["ROMEO:"], params={"length": 40, "seed": 3})
    assert sampled == model.predict(["ROMEO:"], params={"length": 40, "seed": 3})
    assert sampled != model.predict(["ROMEO:"], params={"length": 40, "seed": 4})
    assert model.metadata.signature.params.to_dict()[0] == {"name": "length", "type": "long", "default": 200,
                                                            "shape": None}


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
