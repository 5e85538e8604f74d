"""lit-nn: a PyTorch Lightning laboratory for neural-network fundamentals, tracked in MLflow.

From a notebook: ``lit_nn.fit(config, **overrides)``, ``lit_nn.sweep(file, ...)`` and
``lit_nn.report(...)`` run what the ``lit-nn`` command runs (:mod:`lit_nn.cli.notebook`).
They load on first use, so ``import lit_nn`` stays instant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fit", "report", "sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lit_nn.cli import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'lit_nn' has no attribute {name!r}")
