"""``python -m lit_nn.cli.sweep_worker``: a sweep worker that trains points as ``lit-nn fit`` does.

The sweep starts this module (``lit_nn.sweeps.runner``); the worker loop is the sweep's own
(:func:`lit_nn.sweeps.worker.serve`), the fit entry is the CLI's, so neither package imports
the other's upper layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lit_nn.sweeps.worker import serve


def run_fit(argv: list[str], callbacks: Sequence[Any] = ()) -> None:
    """Train one point in this process, exactly as ``lit-nn fit ARGV`` would (``callbacks``: a
    tuned slot's live Optuna trial, :class:`lit_nn.sweeps.study.TrialPruning`)."""
    from lit_nn.cli.train import LitNNCLI

    LitNNCLI(args=argv, callbacks=callbacks)


if __name__ == "__main__":
    from lit_nn.core.signals import let_ctrl_c_interrupt

    let_ctrl_c_interrupt()  # the sweep stops its workers with SIGINT
    serve(run_fit)
