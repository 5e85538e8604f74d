"""lit-nn from Python (a notebook): ``fit``, ``sweep`` and ``report`` as functions.

Each builds the command line a terminal user would type and runs it through the same dispatch as
the ``lit-nn`` command, so a notebook run and a shell run are the same run (same checks, same
MLflow records); only the results come back as values, and mistakes as exceptions::

    import lit_nn
    run = lit_nn.fit("experiments/mnist_mlp.yaml", trainer__max_epochs=2, model__optimizer="sgd")
    run.run_id, run.metrics      # the MLflow run id and its final metrics
    lit_nn.sweep("experiments/compare_depth.yaml", workers=2, trainer__max_epochs=1)
    lit_nn.report("compare_depth").rows
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_nn.core.errors import UserError


@dataclass(frozen=True)
class FitResult:
    """What a ``fit`` left behind: its MLflow run and its final metrics (test_acc, val_loss...)."""

    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)


def as_options(options: dict[str, Any]) -> list[str]:
    """``{"trainer__max_epochs": 2, "model.hidden": [128, 64]}`` → ``["--trainer.max_epochs=2",
    "--model.hidden=[128, 64]"]``: ``__`` stands for the dot a Python keyword cannot hold."""
    argv = []
    for key, value in options.items():
        if value is None:
            text = "null"
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | tuple | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        argv.append(f"--{key.replace('__', '.')}={text}")
    return argv


def _dispatch(argv: list[str]) -> Any:
    """Run a ``lit-nn`` command line in this process; a user's mistake raises :class:`UserError`."""
    from lit_nn.cli.main import quiet_libraries

    quiet_libraries()
    if argv[0] == "fit":
        from lit_nn.cli.main import run_trainer_command

        return run_trainer_command(argv)
    from lit_nn.cli.commands import run_tool

    try:
        run_tool(argv[0], argv[1:])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise UserError(f"lit-nn {argv[0]} ended with status {exit_.code}; its output above says why") from None
    return None


def fit(config: str | Path | dict[str, Any] | None = None, **overrides: Any) -> FitResult:
    """Train as ``lit-nn fit -c CONFIG --key=value ...`` does; return the run id and final metrics.

    Args:
        config: a config file (``experiments/mnist_cnn.yaml``), or the same as a dict; None for the
            defaults.
        overrides: options as keywords, ``__`` for dots: ``trainer__max_epochs=2``,
            ``model__hidden=[128, 64]``, ``data__batch_size=32``, ``experiment="mine"``.
    """
    from lit_nn.tracking.callbacks import find_tracker

    with tempfile.TemporaryDirectory(prefix="lit-nn-notebook-") as folder:
        argv = ["fit"]
        if isinstance(config, dict):
            path = Path(folder) / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            argv += ["-c", str(path)]
        elif config is not None:
            argv += ["-c", str(config)]
        cli = _dispatch(argv + as_options(overrides))
    trainer = cli.trainer
    tracker = find_tracker(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 0)() == 1}
    return FitResult(tracker.run_id if tracker is not None else None, metrics)


def sweep(sweep_file: str | Path, *fit_options: str, **options: Any) -> Any:
    """Run (or resume) a sweep as ``lit-nn sweep FILE`` does and return its report (see :func:`report`).

    Args:
        sweep_file: e.g. ``experiments/compare_depth.yaml``.
        fit_options: ``lit-nn fit`` options for every point, as on the command line
            (``"--trainer.max_epochs", "1"``); keywords with ``__`` work too (``trainer__max_epochs=1``).
        options: ``lit-nn sweep``'s own options as keywords: ``workers=2``, ``force=True``...
    """
    _dispatch(["sweep", str(sweep_file), *as_options(options), *fit_options])
    return report(str(sweep_file), out=options.get("out"))  # the sweep's own report folder, not ./reports


def report(sweep: str | None = None, experiment: str | None = None, group_by: str | None = None,
           out: str | Path | None = None) -> Any:
    """The comparison report of a sweep (file or name) or of an experiment's runs by ``group_by``:
    a ``Report`` with ``rows`` (one per group: runs, best val_acc, test_acc...), ``markdown_path``,
    ``figure_path``, ``figure`` (a matplotlib figure a notebook shows) and ``ui`` (the MLflow UI URL)."""
    from lit_nn.sweeps.compare import compare

    return compare(sweep, experiment, group_by, Path(out) if out is not None else None)
