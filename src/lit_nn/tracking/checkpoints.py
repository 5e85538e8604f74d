"""Loading checkpoints safely, and saying clearly what a checkpoint file holds.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers
only, no arbitrary pickled objects. lit-nn models store what they are (``lit_nn`` key) so a
char-RNN checkpoint given to a classifier config is refused with a sentence, not a
``state_dict`` mismatch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from lit_nn.core.errors import UserError, require_file
from lit_nn.core.names import Tag

# what Lightning's own loading reads first (a bare state_dict saved with torch.save has neither)
LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")


def load_checkpoint(path: str | Path, trainer: bool = False) -> dict[str, Any]:
    """Read a checkpoint file with ``weights_only=True``; bad files get one clear sentence.

    ``trainer``: the file goes on to Lightning's Trainer (``--ckpt_path``), which needs every key of
    :data:`LIGHTNING_KEYS`; ``generate`` and the model export need only the ``state_dict``.
    """
    path = require_file(path, "checkpoint", f"a .ckpt file (e.g. {path}/last.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise UserError(f"cannot read checkpoint {path} ({err.strerror})") from None
    except Exception as err:  # noqa: BLE001 - any bytes may reach the unpickler: KeyError, IndexError...
        text = str(err).strip() or type(err).__name__
        first = text.splitlines()[0].split(". ")[0][:160]
        raise UserError(f"{path} is not a readable checkpoint (truncated or not a torch file: {first}); "
                        "give a .ckpt file that lit-nn fit wrote") from None
    needed = LIGHTNING_KEYS if trainer else LIGHTNING_KEYS[:1]
    missing = [key for key in needed if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"{path} is a torch file but not a lit-nn (Lightning) checkpoint (no {missing[0]}); "
                        "give a .ckpt file that lit-nn fit wrote")
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


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def is_run_reference(ref: str) -> bool:
    """A bare MLflow run id or a ``runs:/<run id>/<path>`` URI (not a file that exists here)."""
    return not Path(ref).exists() and (bool(RUN_ID.match(ref)) or ref.startswith("runs:/"))


def fetch_run_checkpoint(ref: str, dest: Path) -> tuple[Path, Path | None]:
    """The checkpoint a run reference points at, as a local file, and the run's ``config.yaml``
    (None if the run has none): a bare run id means the run's best checkpoint, read from its
    local checkpoint folder when it is on this machine, else downloaded from the run's artifacts."""
    from lit_nn.tracking.store import tracking_client

    client = tracking_client()
    run_id, _, artifact = ref.removeprefix("runs:/").partition("/")
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException/MlflowException
        raise UserError(f"{ref}: no run {run_id} in the tracking store") from None
    local = Path(run.data.tags.get(Tag.CHECKPOINT_DIR, "")) / "best.ckpt"
    if artifact:
        checkpoint = _download(client, run_id, artifact, dest, ref)
    elif run.data.tags.get(Tag.CHECKPOINT_DIR) and local.is_file():
        checkpoint = local
    else:
        checkpoint = _download(client, run_id, "checkpoints/best.ckpt", dest,
                               f"run {run_id} (it has no best.ckpt artifact: was it run with --log_checkpoint false?)")
    names = {a.path for a in client.list_artifacts(run_id)}
    config = Path(client.download_artifacts(run_id, "config.yaml", str(dest))) if "config.yaml" in names else None
    return checkpoint, config


def fetch_run_config(run_id: str, dest: Path) -> Path:
    """The ``config.yaml`` a run was started with, e.g. to resume it in a folder that holds nothing
    of it (``lit-nn fit --resume RUN_ID`` without ``-c``)."""
    from lit_nn.tracking.store import tracking_client

    client = tracking_client()
    try:
        names = {a.path for a in client.list_artifacts(run_id)}
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException/MlflowException
        raise UserError(f"--resume {run_id}: no such run in the tracking store; `lit-nn runs` lists "
                        "the runs and their ids") from None
    if "config.yaml" not in names:
        raise UserError(f"--resume {run_id}: the run has no config.yaml to rebuild its model from; "
                        "give the config it was trained with: -c FILE")
    return _download(client, run_id, "config.yaml", dest, f"run {run_id}")


def _download(client: object, run_id: str, artifact: str, dest: Path, what: str) -> Path:
    try:
        return Path(client.download_artifacts(run_id, artifact, str(dest)))  # type: ignore[attr-defined]
    except Exception as err:  # noqa: BLE001 - MLflow's errors for a missing artifact vary by store
        raise UserError(f"cannot fetch {artifact} of {what}: {str(err).splitlines()[0][:200]}") from None
