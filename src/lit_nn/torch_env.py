"""Process-wide torch settings lit-nn applies once, at start-up.

Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that asking whether CUDA is
available does not initialise CUDA in a process that may fork later. torch answers that
question through NVML, and when NVML cannot be loaded (no NVIDIA driver: every CPU machine)
it tries to load ``libnvidia-ml.so.1`` again on *every* call before falling back to the CUDA
runtime's own count. Adam and AdamW ask on every ``optimizer.step()``; on the 2-core project
machine each failed load costs ~120 µs (against ~3 µs without the variable), about 3 % of an
MLP step at batch 128. Where NVML
is absent the variable buys nothing (torch falls back to the runtime count anyway), so it is
dropped; with a driver present it stays.
"""

from __future__ import annotations

import os

import torch

_VARIABLE = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_failing_nvml_probe() -> bool:
    """Unset Lightning's NVML-based CUDA check when NVML is missing; True if it was unset."""
    if os.environ.get(_VARIABLE) != "1" or not torch.cuda._is_compiled():
        return False
    try:
        from ctypes import CDLL

        CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[_VARIABLE]
        return True
    return False
