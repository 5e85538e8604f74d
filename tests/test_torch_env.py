"""Lightning's NVML-based CUDA check is dropped only where NVML cannot load."""

from __future__ import annotations

import ctypes
import os

import pytest
import torch

from lit_nn.torch_env import skip_failing_nvml_probe


def _nvml_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_variable_dropped_without_nvml_and_kept_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    available_before = torch.cuda.is_available()
    dropped = skip_failing_nvml_probe()
    if _nvml_loads() or not torch.cuda._is_compiled():
        assert not dropped and os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1"
    else:
        assert dropped and "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
    assert torch.cuda.is_available() == available_before  # the answer is unchanged, only cheaper


def test_nothing_to_do_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    assert skip_failing_nvml_probe() is False
