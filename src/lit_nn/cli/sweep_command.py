"""``lit-nn sweep FILE [sweep options] [fit options]``: the sweep command's signature (its ``--help``),
and the splitting of its command line into the sweep's own options, the ``--tune.*`` overrides and
the ``lit-nn fit`` options every point gets; each point is checked against the fit parser before
anything runs. The sweep itself lives in :mod:`lit_nn.sweeps`.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lit_nn.cli.parser_errors import option_names, unknown_option
from lit_nn.cli.tool_parser import ToolCommand, build_parser, parse
from lit_nn.core.errors import UserError


def sweep(sweep_file: str, workers: int = 1, force: bool = False, dry_run: bool = False, report: bool = True,
          out: Path | None = None, process_per_point: bool = False, threads: int | None = None,
          gpus_per_point: int | None = None, orphan_wait: float = 120.0, launcher: str = "local",
          address: str | None = None, claim_timeout: float = 300.0) -> None:
    """Run a comparison sweep: every point of the file's grid × seeds as a lit-nn fit run nested under one
    MLflow parent run; finished points are skipped on a re-run.

    Any option of `lit-nn fit` after the file (--trainer.max_epochs 3, --trainer.accelerator gpu,
    --model.init_args.lr 0.01) is passed to every point and is part of each point's config hash.

    A file with a `tune:` section gives every arm (point or grid cell) the same budget of tuning
    trials over its search space (Optuna); --tune.KEY VALUE after the file overrides a key of it,
    e.g. --tune.trials 3 or --tune.sampler tpe. The file's keys are listed below the options (and
    explained with examples in docs/sweeps.md).

    Args:
        sweep_file: the sweep file, e.g. experiments/compare_optimizers.yaml.
        workers: points trained at the same time, each in its own worker process.
        force: re-run points that already have a FINISHED run with the same config.
        dry_run: list the points and which would be skipped; run nothing, change nothing.
        report: write the comparison report (curves.png, report.md) at the end.
        out: folder for the report and the per-point logs (default: reports/<sweep name>).
        process_per_point: start a fresh `lit-nn fit` process for every point (automatic when a point
            uses more than one device, since DDP re-launches the command).
        threads: CPU threads per worker (default 1, or $OMP_NUM_THREADS when set; raise it for CNNs on
            an idle many-core machine).
        gpus_per_point: on a machine with GPUs, each worker sees only its own (CUDA_VISIBLE_DEVICES):
            this many consecutive ones, round-robin when there are more workers than GPUs (default:
            the points' --trainer.devices when it is a number, else 1). Without GPUs nothing is pinned.
        orphan_wait: seconds to wait for runs of a just-killed sweep that are still shutting down.
        launcher: local (worker processes on this machine) or ray (one Ray task per point, on a Ray
            cluster: CPUs per point from --threads, GPUs from --gpus_per_point).
        address: the Ray cluster to run on (its head, host:6379); default: a local Ray for this sweep.
        claim_timeout: seconds after which the point of a sweep that stopped renewing its claim (its
            machine died) is taken over by another sweep of the same file and store.
    """


SWEEP = ToolCommand("sweep", sweep, "run a comparison grid from experiments/compare_*.yaml")


def split_fit_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """``lit-nn sweep``'s own arguments, and the ``lit-nn fit`` options it passes to every point.

    Which options belong to ``fit`` is read from the fit parser itself (``--model...``,
    ``--data...``, ``--trainer...``, ``--seed_everything``...), not from a hand-kept list.
    """
    from lit_nn.cli.train import fit_parser

    own = set(inspect.signature(sweep).parameters)
    fit_roots = {o[2:].split(".")[0] for o in option_names(fit_parser())} - {"help", "print_config", "config"}
    mine: list[str] = []
    theirs: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        root = arg[2:].split("=", 1)[0].split(".")[0] if arg.startswith("--") else ""
        if root and root.replace("-", "_") not in own and root in fit_roots:
            theirs.append(arg)
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                theirs.append(argv[i + 1])
                i += 1
        else:
            mine.append(arg)
        i += 1
    return mine, theirs


def split_tune_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--tune.trials 3`` and the like set the sweep file's ``tune:`` section (checked with it)."""
    mine: list[str] = []
    tune: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i].startswith("--tune."):
            tune.append(argv[i])
            if "=" not in argv[i] and i + 1 < len(argv):
                tune.append(argv[i + 1])
                i += 1
        else:
            mine.append(argv[i])
        i += 1
    return mine, tune


def check_points(points: list[Any], extra: list[str], data: bool = False) -> None:
    """Check every point as ``lit-nn fit`` would, before any point runs: parse it with the fit parser
    (a grid key or pass-through option fit does not know fails here, with the nearest valid one), then
    build its model and data module, which check their values (``unknown optimizer 'adamm'``);
    nothing is trained and no data is read.

    With ``data``, also look up the data of each distinct data section (files found, not read): a sweep
    whose points would all fail with "no Fashion-MNIST train files found" says it once, before any run.
    """
    import importlib
    import json

    from lit_nn.cli.parser_errors import explain
    from lit_nn.cli.train import fit_parser
    from lit_nn.data.datamodule import LitDataModule

    parser = fit_parser()
    built: set[str] = set()
    needed: dict[str, tuple[LitDataModule, set[str], list[str]]] = {}  # data section → module, stages, points
    with tempfile.TemporaryDirectory(prefix="lit-nn-sweep-check-") as tmp:
        for point in points:
            path = Path(tmp) / f"{point.config_hash}.yaml"
            path.write_text(yaml.safe_dump(point.config, sort_keys=False))
            try:
                config = parser.parse_args(["--config", str(path), *extra]).as_dict()
            except Exception as err:  # noqa: BLE001 - jsonargparse's ArgumentError and its wrappers
                raise UserError(f"sweep point {point.run_name}: {explain(err)}") from None
            for section in ("model", "data"):
                spec = config.get(section)
                key = json.dumps(spec, sort_keys=True, default=str)
                if not isinstance(spec, dict) or key in built:
                    continue
                built.add(key)
                module, _, name = spec["class_path"].rpartition(".")
                try:
                    instance = getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))
                except UserError as err:
                    raise UserError(f"sweep point {point.run_name}: {err}") from None
                if section == "data" and isinstance(instance, LitDataModule):
                    needed[key] = (instance, set(), [])
            if entry := needed.get(json.dumps(config.get("data"), sort_keys=True, default=str)):
                datamodule, stages, names = entry
                stages.add("fit")
                if config.get("test_after_fit", True) and datamodule.has_test_split:
                    stages.add("test")
                names.append(point.run_name)
    if not data:
        return
    from lit_nn.sweeps.runner import few_names

    missing: dict[str, list[str]] = {}  # the sentence a fit would end with → the points it would end
    for datamodule, stages, names in needed.values():
        for stage in sorted(stages):  # "fit" before "test": the train split is the one a fit misses first
            try:
                datamodule.check_available(stage)
            except UserError as err:
                missing.setdefault(str(err), []).extend(names)  # sections differing by seed only: one sentence
                break
    if missing:
        sentence, names = max(missing.items(), key=lambda item: len(item[1]))
        which = f"all {len(points)} sweep points" if len(names) == len(points) else \
            f"{len(names)} of {len(points)} sweep points ({few_names(names)})"
        raise UserError(f"{which} would fail, so none was run: {sentence}")


def run_sweep_command(argv: list[str]) -> None:
    """Parse ``lit-nn sweep``'s arguments, check every point, then dry-run or run the sweep."""
    from lit_nn.sweeps.driver import SweepOptions, dry_run, run_sweep
    from lit_nn.sweeps.grid import expand, load_sweep

    command = SWEEP
    if "-h" in argv or "--help" in argv:  # the help needs no fit parser (seconds of imports)
        from lit_nn.sweeps.grid import file_reference

        build_parser(command).print_help()
        print("\n" + file_reference())
        return
    mine, extra = split_fit_options(argv)
    mine, tune_args = split_tune_options(mine)
    parser = build_parser(command)
    try:
        args = parse(command, mine, parser)
    except UserError as err:
        if str(err).startswith("unknown option '--"):
            option = str(err).split("'")[1]
            raise unknown_option(option, option_names(parser), "lit-nn sweep", _fit_hint(option)) from None
        raise
    spec = load_sweep(args["sweep_file"], tune_args)
    points = expand(spec, extra)
    # the data is looked up here, unless the points run on other machines (a Ray cluster's nodes) or
    # nothing runs (a dry run lists what would)
    remote = args["launcher"] == "ray" and args["address"]
    check_points(points, extra, data=not (remote or args["dry_run"]))
    if args["dry_run"]:
        dry_run(spec, points, extra, args["force"])
        return
    options = SweepOptions(workers=args["workers"], force=args["force"], report=args["report"], out=args["out"],
                           process_per_point=args["process_per_point"], threads=args["threads"],
                           gpus_per_point=args["gpus_per_point"], orphan_wait=args["orphan_wait"],
                           launcher=args["launcher"], address=args["address"],
                           claim_timeout=args["claim_timeout"])
    worker = [sys.executable, "-m", "lit_nn.cli.sweep_worker"]
    try:
        code = run_sweep(spec, points, extra, options, worker)
    except KeyboardInterrupt:  # outside the point loop (which handles its own): nothing to clean up
        print("\nsweep: interrupted", file=sys.stderr)
        code = 130
    if code:
        sys.exit(code)


def _fit_hint(option: str) -> str:
    """For an option ``fit`` knows under a section (``--optimizer`` → ``--model.init_args.optimizer``)."""
    from lit_nn.cli.parser_errors import init_args_of

    name = option.lstrip("-").split("=", 1)[0].replace("-", "_")
    for section, class_path in (("model", "lit_nn.models.MLP"), ("model", "lit_nn.models.CharRNN"),
                                ("data", "lit_nn.data.ImageDataModule"), ("data", "lit_nn.data.TextDataModule")):
        if name in init_args_of(class_path):
            return f"; to set it for every point use --{section}.init_args.{name} VALUE"
    return ""
