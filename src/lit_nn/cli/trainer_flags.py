"""The Trainer flags lit-nn passes on to Lightning, checked before any run is created.

Lightning checks its flags only when the Trainer is built (or, for some, never: a negative
``gradient_clip_val`` is used as given) and answers with an import error for an accelerator this
machine cannot run (``tpu`` without ``torch_xla``). lit-nn knows each domain, so it says which
value is wrong and what is valid here, before an MLflow run exists.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from lit_nn.core.errors import UserError


def accelerators_here() -> list[str]:
    """The ``--trainer.accelerator`` names this machine can run: ``auto``, ``cpu`` and the
    registered accelerators whose hardware is present (``gpu`` where CUDA or MPS is)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    names = ["auto", "cpu"]
    for name in sorted(AcceleratorRegistry.available_accelerators()):
        if name != "cpu" and AcceleratorRegistry[name]["accelerator"].is_available():
            names.append(name)
    if {"cuda", "mps"} & set(names):
        names.append("gpu")
    return names


def check_accelerator(trainer_config: dict[str, Any]) -> None:
    """An accelerator named in a string must be one this machine has (an Accelerator object is Lightning's
    to check)."""
    accelerator = trainer_config.get("accelerator", "auto")
    if not isinstance(accelerator, str):
        return
    here = accelerators_here()
    if accelerator.lower() in here:
        return
    from lightning.pytorch.accelerators import AcceleratorRegistry

    known = {*AcceleratorRegistry.available_accelerators(), "gpu"}
    why = ("is not available on this machine" if accelerator.lower() in known
           else "is not an accelerator Lightning knows")
    raise UserError(f"--trainer.accelerator {accelerator} {why}; valid here: {', '.join(here)}")


def check_budget(trainer_config: dict[str, Any]) -> None:
    """Refuse a fit that would train nothing (and then test an untrained model as if it were a result),
    or one with no end (``max_epochs -1`` bounded by nothing else)."""
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        value = trainer_config.get(key)
        if value is not None and value == 0:
            raise UserError(f"--trainer.{key} 0 trains nothing; give at least 1 (to evaluate a checkpoint "
                            "without training, use lit-nn test --ckpt_path FILE)")
    epochs = trainer_config.get("max_epochs")
    if isinstance(epochs, int) and epochs < -1:
        raise UserError(f"invalid Trainer setting: --trainer.max_epochs {epochs}; give at least 1 "
                        "(or -1 with --trainer.max_steps or --trainer.max_time to end it)")
    steps, max_time = trainer_config.get("max_steps"), trainer_config.get("max_time")
    if epochs == -1 and (steps is None or steps < 0) and not max_time:
        raise UserError("--trainer.max_epochs -1 trains forever; give a number of epochs, or bound it with "
                        "--trainer.max_steps N or --trainer.max_time DD:HH:MM:SS")


def check_clipping(trainer_config: dict[str, Any]) -> None:
    """Lightning applies a negative or non-finite ``gradient_clip_val`` as given."""
    value = trainer_config.get("gradient_clip_val")
    if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise UserError(f"--trainer.gradient_clip_val {value} is not a clip value; give a finite number >= 0 "
                        "(0 or null: no clipping)")


def check_devices(trainer_config: dict[str, Any]) -> None:
    """Refuse more CPU processes than cores: DDP on CPU would oversubscribe and crawl (or hang)."""
    accelerator = str(trainer_config.get("accelerator", "auto"))
    devices = trainer_config.get("devices", "auto")
    devices = int(devices) if isinstance(devices, str) and devices.isdigit() else devices
    cores = os.cpu_count() or 1
    cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if cpu and isinstance(devices, int) and devices > cores:
        raise UserError(f"--trainer.devices {devices} asks for more CPU processes than this machine's "
                        f"{cores} cores; use at most {cores}")


def check_trainer_flags(command: str, trainer_config: dict[str, Any]) -> None:
    """Every check of this module, for ``lit-nn COMMAND``'s Trainer settings."""
    check_accelerator(trainer_config)
    check_devices(trainer_config)
    check_clipping(trainer_config)
    if command == "fit":
        check_budget(trainer_config)
