"""Loading checkpoints safely, and saying clearly what a checkpoint file holds.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers
only, no arbitrary pickled objects. lit-nn models store what they are (``lit_nn`` key) so a
char-RNN checkpoint given to a classifier config is refused with a sentence, not a
``state_dict`` mismatch.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lit_nn.core.errors import UserError, require_file


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file with ``weights_only=True``; bad files get one clear sentence."""
    path = require_file(path, "checkpoint", f"a .ckpt file (e.g. {path}/last.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as err:
        text = str(err).strip() or type(err).__name__
        first = text.splitlines()[0].split(". ")[0][:160]
        raise UserError(f"{path} is not a readable checkpoint (truncated or not a torch file: {first})") from None
    except OSError as err:
        raise UserError(f"cannot read checkpoint {path} ({err.strerror})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is a torch file but not a Lightning checkpoint (no state_dict)")
    return checkpoint


def model_class_of(checkpoint: dict[str, Any]) -> str | None:
    """The ``module.Class`` a lit-nn checkpoint was saved from (None for foreign checkpoints)."""
    return (checkpoint.get("lit_nn") or {}).get("model_class")


def check_checkpoint_matches(path: str | Path, model: torch.nn.Module) -> dict[str, Any]:
    """Refuse a checkpoint of another model kind, naming what the file holds."""
    checkpoint = load_checkpoint(path)
    saved = model_class_of(checkpoint)
    wanted = f"{type(model).__module__}.{type(model).__qualname__}"
    if saved is not None and saved.rsplit(".", 1)[-1] != wanted.rsplit(".", 1)[-1]:
        raise UserError(f"checkpoint {path} holds a {saved.rsplit('.', 1)[-1]} model ({saved}), "
                        f"but the config builds a {type(model).__name__}; use a matching -c config or --model")
    return checkpoint
