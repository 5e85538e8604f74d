"""The MLflow pyfunc of a lit-nn model, logged as "models from code" by :mod:`lit_nn.tracking.model_export`.

MLflow runs this file when the model is loaded (``mlflow.pyfunc.load_model("runs:/<run id>/model")``);
nothing is unpickled, so loading works with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.
``load_context`` rebuilds the network from ``config.json`` (the model class, one of lit-nn's,
and its constructor arguments, as JSON) and loads ``weights.pt``, the best checkpoint's state
dict, with ``torch.load(weights_only=True)``. The lit-nn code the network is built from travels
with the model (``code/lit_nn``), so the weights and the code that reads them stay together.

* **Classifiers** (MLP, CNN): ``predict`` takes a float32 numpy array of 28×28 images,
  ``(N, 28, 28)``, pixels in [0, 1] (0 = background, as in MNIST: light ink on black), and
  returns the class probabilities, float32 ``(N, classes)``. The model standardizes the pixels
  itself with the (mean, std) its training data used (``ImageDataModule.normalization``: the
  dataset's statistics, or ``data.normalize``): pass plain ``uint8 / 255`` images. MLflow enforces the signature, so an ``(N, 1, 28, 28)``
  batch must be passed as ``x.reshape(-1, 28, 28)`` (and float64 as ``x.astype("float32")``).
* **Char-RNN**: ``predict`` takes prompts (a list of strings, a Series or a one-column
  DataFrame) and returns, for each, the generated continuation (without the prompt). Params
  (defaults in ``model_export.GENERATION`` and the signature): ``length`` (characters, 200),
  ``temperature`` (0 is greedy; 0.8), ``top_k`` (0: all characters; 40), ``seed`` (0: the same
  prompt gives the same text). A character outside the training vocabulary is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelConfig, set_model
from mlflow.pyfunc import PythonModel

BATCH = 1024  # images per forward pass: bounded memory for large inputs


class LitNNPyfunc(PythonModel):
    """A lit-nn network rebuilt from ``config.json`` and ``weights.pt`` (see the module doc)."""

    def load_context(self, context: Any) -> None:
        from lit_nn import models

        self.config = json.loads(Path(context.artifacts["config"]).read_text())
        name = self.config["model_class"]
        allowed = {n for n in models.__all__ if n in ("MLP", "CNN", "CharRNN")}
        if name not in allowed:  # the config names one of lit-nn's models, never an arbitrary import
            raise ValueError(f"config.json names model class {name!r}; expected one of {sorted(allowed)}")
        model = getattr(models, name)(**self.config["init_args"])
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model = model.eval()


# predict's input hints are types MLflow infers no schema from (the logged signature is the schema)
class ImageClassifier(LitNNPyfunc):
    """Images ``(N, 28, 28)`` in [0, 1] → class probabilities ``(N, classes)``."""

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        x = np.asarray(model_input, dtype=np.float32)
        size = tuple(self.config["input"]["shape"])
        if x.ndim == len(size) + 2 and x.shape[1] == 1:
            x = x[:, 0]  # (N, 1, 28, 28), for callers that bypass the signature (unwrap_python_model)
        if x.shape[1:] != size:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, size))}), got {x.shape}")
        mean, std = self.config["input"]["mean"], self.config["input"]["std"]
        out = [torch.zeros(0, self.config["num_classes"])]
        with torch.inference_mode():
            for start in range(0, len(x), BATCH):
                batch = (torch.from_numpy(x[start : start + BATCH]).unsqueeze(1) - mean) / std
                out.append(self.model(batch).softmax(dim=1))
        return torch.cat(out).numpy()


class TextGenerator(LitNNPyfunc):
    """Prompts (a ``prompt`` column, or a list of strings) → their generated continuations."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        prompts = model_input
        if isinstance(prompts, pd.DataFrame):  # its prompt column, else its only one
            prompts = prompts["prompt" if "prompt" in prompts.columns else prompts.columns[0]]
        elif isinstance(prompts, str):
            prompts = [prompts]
        options = {**self.config["generation"], **(params or {})}
        top_k = int(options["top_k"]) or None
        texts = []
        for prompt in prompts:
            generator = torch.Generator().manual_seed(int(options["seed"]))
            chars = self.model.sample(str(prompt), int(options["length"]), float(options["temperature"]), top_k,
                                      generator)
            texts.append("".join(chars))
        return texts


# the model_config logged with the model says which one this is
TASKS = {"classify": ImageClassifier, "generate": TextGenerator}
set_model(TASKS[ModelConfig().get("task")]())
