"""The best checkpoint of a fit as an MLflow model, ``runs:/<run id>/model``, and optionally a
registered model version (``lit-nn fit --register NAME``).

The model is a pyfunc logged as "models from code" (:mod:`lit_nn.tracking.pyfunc_model`): its
artifacts are ``config.json`` (the model class and its constructor arguments) and ``weights.pt``
(the best checkpoint's state dict), and the lit-nn packages the network is built from
(``core``, ``data``, ``models``) travel with it as code. Loading runs that code and
``torch.load(weights_only=True)``; nothing is unpickled, so it works with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.

The requirements are written out (the installed versions of what the shipped code imports)
instead of letting MLflow infer them, which would load the model again in a subprocess on
every fit; and MLflow's check of them against the environment skips its scan of every
installed file (:func:`no_distribution_scan`). Logging adds ~0.5 s to a fit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lit_nn.compat.mlflow import modules_to_packages
from lit_nn.core.errors import UserError
from lit_nn.core.names import Artifact
from lit_nn.core.signatures import init_arg_names
from lit_nn.data.images import ImageDataModule
from lit_nn.models.base import Classifier, LitModel
from lit_nn.models.char_rnn import CharRNN
from lit_nn.models.cnn import CNN
from lit_nn.models.mlp import MLP
from lit_nn.tracking.atomic import NO_SPACE
from lit_nn.tracking.callbacks import RunCheckpoint, find_tracker
from lit_nn.tracking.checkpoints import load_checkpoint
from lit_nn.tracking.logger import MLflowTracker

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/lit_nn
SHIPPED_PACKAGES = ("core", "data", "models")  # what pyfunc_model imports (layers below tracking)
REQUIREMENTS = ("torch", "lightning", "torchmetrics", "numpy")  # MLflow adds itself
EXAMPLE_IMAGES = 2
EXAMPLE_PROMPTS = ("The ", "\n")  # the first one the vocabulary can spell
EXAMPLE_LENGTH = 20
# the char-RNN's predict params and their defaults (seed 0: a prompt always gets the same text)
GENERATION = {"length": 200, "temperature": 0.8, "top_k": 40, "seed": 0}


def check_register_name(name: str) -> None:
    """MLflow's rule for registered model names, checked before training rather than after it."""
    bad = not name.strip() or "/" in name or ":" in name or name == "." or name.startswith("..")
    if bad:
        raise UserError(f"--register {name!r} is not a valid registered model name: it must not be empty, contain "
                        "'/' or ':', or start with '..'; e.g. --register mnist-cnn")


def task_of(model: Any, datamodule: Any) -> str | None:
    """What the pyfunc of ``model`` does: ``classify`` 28×28 images (MLP, CNN trained on an
    ImageDataModule), ``generate`` text (char-RNN), or None (no pyfunc for it)."""
    if type(model) is CharRNN:  # the classes themselves: the pyfunc rebuilds exactly these
        return "generate"
    if type(model) in (MLP, CNN) and isinstance(datamodule, ImageDataModule):
        return "classify"
    return None


class ModelExport(L.Callback):
    """After fit (rank 0): the best checkpoint as the run's MLflow model ``model``, registered as
    ``register`` if given; prints where it is."""

    def __init__(self, register: str | None = None) -> None:
        if register is not None:
            check_register_name(register)
        self.register = register

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tracker = find_tracker(trainer)
        # lit-nn's best.ckpt; trainer.checkpoint_callback is whichever ModelCheckpoint comes first
        ckpt = next((cb for cb in trainer.callbacks if isinstance(cb, RunCheckpoint)), trainer.checkpoint_callback)
        if tracker is None:
            return
        skipped = ", nor registered" if self.register else ""
        if task_of(pl_module, trainer.datamodule) is None:
            rank_zero_info(f"model: not logged{skipped} (lit-nn has no MLflow model for a {type(pl_module).__name__} "
                           f"trained on {type(trainer.datamodule).__name__})")
            return
        if not isinstance(ckpt, ModelCheckpoint) or not ckpt.best_model_path:
            rank_zero_info(f"model: not logged{skipped} (no best checkpoint)")
            return
        try:
            model_id = log_model(tracker, ckpt.best_model_path, pl_module, trainer.datamodule)
        except OSError as err:
            if err.errno not in NO_SPACE:
                raise
            where = Path(err.filename).parent if err.filename else Path(tempfile.gettempdir())
            why = (f"{NO_SPACE[err.errno]} in {where}; the best checkpoint {ckpt.best_model_path} is complete: "
                   "lit-nn test and predict take it as it is; free some space (or point TMPDIR elsewhere) "
                   "before the next fit")
            if self.register:  # what was asked for did not happen: the run says so
                raise UserError(f"the model was not logged nor registered as '{self.register}': {why}") from None
            rank_zero_info(f"model: not logged ({why})")
            return
        line = f"model: runs:/{tracker.run_id}/{Artifact.MODEL}"
        if self.register:
            version = register_model(tracker.experiment, self.register, model_id, tracker.run_id)
            line += f", registered as '{self.register}' version {version} (models:/{self.register}/{version})"
        rank_zero_info(line)


def log_model(tracker: MLflowTracker, best_path: str | Path, model: LitModel, datamodule: Any) -> str:
    """Log the checkpoint at ``best_path`` as the run's pyfunc model ``runs:/<run id>/model``; return
    its logged-model id."""
    import mlflow.pyfunc
    import torch
    from mlflow.models import Model

    task = task_of(model, datamodule)
    checkpoint = load_checkpoint(best_path)
    config = model_config(checkpoint, model, datamodule)
    client, run_id = tracker.experiment, tracker.run_id
    with tempfile.TemporaryDirectory(prefix="lit-nn-model-") as tmp:
        folder = Path(tmp)
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        torch.save(checkpoint["state_dict"], folder / "weights.pt")
        code = shipped_code(folder / "code")
        logged = client.create_logged_model(tracker.experiment_id, name=Artifact.MODEL, source_run_id=run_id,
                                            params=client.get_run(run_id).data.params, model_type=model.kind)
        with default_store(tracker.tracking_uri), quiet("mlflow"), no_distribution_scan(), \
                failed_if_unfinished(client, logged.model_id):
            Model.log(None, name=Artifact.MODEL, flavor=mlflow.pyfunc, run_id=run_id, model_id=logged.model_id,
                      step=int(checkpoint.get("epoch", 0)), python_model=str(PYFUNC_CODE), code_paths=[str(code)],
                      artifacts={"config": str(folder / "config.json"), "weights": str(folder / "weights.pt")},
                      signature=signature(model, config), input_example=input_example(model, config, datamodule),
                      pip_requirements=pinned_requirements(),
                      model_config={"task": task})
    return logged.model_id


@contextmanager
def failed_if_unfinished(client: Any, model_id: str) -> Iterator[None]:
    """A logged model whose files could not all be written (a full disk) is marked FAILED, not left
    PENDING as if it were still being written."""
    from mlflow.entities import LoggedModelStatus

    try:
        yield
    except BaseException:
        with suppress(Exception):  # the store may be what failed: the error at hand is the one to report
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        raise


def register_model(client: Any, name: str, model_id: str, run_id: str) -> str:
    """A new version of registered model ``name`` (created if new) from the logged model; its number.

    Through the run's client, not ``mlflow.register_model``, which prints to stderr."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    try:
        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        version = client.create_model_version(name, f"models:/{model_id}", run_id=run_id, model_id=model_id)
        # what the UI's logged-model page lists as its registered versions
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(
            [{"name": name, "version": version.version}])})
    except MlflowException as err:
        raise UserError(f"registering the model as {name!r} failed: {err.message.splitlines()[0][:200]}") from None
    return str(version.version)


def model_config(checkpoint: dict[str, Any], model: LitModel, datamodule: Any) -> dict[str, Any]:
    """What the pyfunc needs to rebuild the network: the class, its arguments, the input's normalization."""
    cls = type(model)
    accepted = set(init_arg_names(cls))
    hparams = checkpoint.get("hyper_parameters") or {}
    config: dict[str, Any] = {
        "model_class": cls.__name__,
        "kind": model.kind,
        "init_args": {k: v for k, v in hparams.items() if k in accepted},
        "checkpoint_epoch": int(checkpoint.get("epoch", 0)),
    }
    if isinstance(model, Classifier):
        mean, std = datamodule.normalization  # what training standardized the [0, 1] pixels with
        config["num_classes"] = int(hparams.get("num_classes", 10))
        config["classes"] = list(datamodule.classes)
        config["input"] = {"shape": [28, 28], "mean": float(mean), "std": float(std)}
    else:
        config["generation"] = GENERATION
    try:
        json.dumps(config)
    except TypeError as err:
        raise UserError(f"the model's hyperparameters cannot be written as JSON for the MLflow model ({err}); "
                        "run with --log_model false") from None
    return config


def signature(model: LitModel, config: dict[str, Any]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    if isinstance(model, CharRNN):
        kinds = {int: "long", float: "double"}
        params = ParamSchema([ParamSpec(k, kinds[type(v)], v) for k, v in GENERATION.items()])
        return ModelSignature(Schema([ColSpec("string")]), Schema([ColSpec("string")]), params)
    shape = (-1, *config["input"]["shape"])
    return ModelSignature(Schema([TensorSpec(np.dtype(np.float32), shape)]),
                          Schema([TensorSpec(np.dtype(np.float32), (-1, config["num_classes"]))]))


def input_example(model: LitModel, config: dict[str, Any], datamodule: Any) -> Any:
    """Two validation images in [0, 1] (as the pyfunc takes them), or a prompt the vocabulary can spell
    with a ``length`` param."""
    if isinstance(model, CharRNN):
        import pandas as pd

        prompt = next((p for p in EXAMPLE_PROMPTS if set(p) <= set(model.vocab)), model.vocab[:1])
        # a short length: MLflow runs the example through the logged model, on every fit
        return pd.DataFrame({"prompt": [prompt]}), {"length": EXAMPLE_LENGTH}
    split = datamodule.splits.get("val")
    shape = (EXAMPLE_IMAGES, *config["input"]["shape"])
    if split is None:
        return np.zeros(shape, dtype=np.float32)
    images = split[0][:EXAMPLE_IMAGES, 0] * config["input"]["std"] + config["input"]["mean"]
    return images.clamp(0, 1).numpy().astype(np.float32).reshape(shape)


def shipped_code(dest: Path) -> Path:
    """A copy of the lit-nn packages the pyfunc builds the network from, as ``dest/lit_nn``."""
    package = dest / "lit_nn"
    package.mkdir(parents=True)
    shutil.copy(PACKAGE_ROOT / "__init__.py", package)
    for name in SHIPPED_PACKAGES:
        shutil.copytree(PACKAGE_ROOT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def pinned_requirements() -> list[str]:
    """``torch==2.x`` and the rest, at the installed versions (a local label such as ``+cu130`` dropped)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


@contextmanager
def default_store(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide default store (used by ``Model.log`` and ``register_model``) at ``uri``
    for the block, then restore the environment (``mlflow.set_tracking_uri`` would outlive it)."""
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


@contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Only warnings and errors from ``logger`` during the block (MLflow logs INFO lines while saving)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def no_distribution_scan() -> AbstractContextManager[None]:
    """Spare MLflow's check of the requirements against the environment its first-call scan of
    every installed distribution's file list (~1.6 s with torch installed).

    The check wants a module → distribution map only to find a version that
    ``importlib.metadata`` cannot; ``pinned_requirements`` read theirs from it, so the map of
    those is enough (:func:`lit_nn.compat.mlflow.modules_to_packages`: MLflow keeps the map in a
    private global).
    """
    return modules_to_packages({name: [name] for name in REQUIREMENTS})
