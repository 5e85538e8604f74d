"""The tool commands: ``generate``, ``sweep``, ``compare``, ``runs`` and ``lab``.

Each command is a typed function whose docstring is its ``--help`` (``lit_nn.cli.tool_parser``
turns the signature into the parser); the work itself lives in the packages below the CLI.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lit_nn.cli.lr_find import run_lr_find
from lit_nn.cli.tool_parser import ToolCommand, build_parser, option_names, parse, unknown_option
from lit_nn.core.errors import UserError, check_positive, unknown_choice


# -- generate ------------------------------------------------------------------------------
def generate(ckpt: str, prime: str = "\n", length: int = 500, temperature: float = 0.8, top_k: int = 40,
             seed: int | None = None) -> None:
    """Sample text from a char-RNN checkpoint (lit-nn fit -c experiments/char_rnn.yaml) and stream it to stdout.

    Args:
        ckpt: char-RNN checkpoint (.ckpt) written by `lit-nn fit`, or the MLflow run id of that fit (its
            best checkpoint), or a runs:/<run id>/<path> URI.
        prime: text the sample starts from; it is printed first and every character must be in the
            model's vocabulary (default: a newline).
        length: characters to generate after the prime.
        temperature: divides the logits: <1 is more conservative, >1 more random, 0 is greedy
            (always the most likely character).
        top_k: draw only among the k most likely characters; 0 means all.
        seed: seed of the random draws: the same seed gives the same text (default: a different sample each time).
    """
    import torch

    from lit_nn.models.char_rnn import CharRNN
    from lit_nn.tracking.checkpoints import fetch_run_checkpoint, is_run_reference, load_checkpoint

    check_positive("--length", length)
    check_positive("--temperature", temperature, allow_zero=True)
    check_positive("--top_k", top_k, allow_zero=True)
    if seed is not None and not 0 <= seed < 2**64:  # what torch.Generator.manual_seed takes
        raise UserError(f"--seed {seed} is out of range; give a number from 0 to 2**64 - 1")
    with tempfile.TemporaryDirectory(prefix="lit-nn-run-") as fetched:
        path = fetch_run_checkpoint(ckpt, Path(fetched))[0] if is_run_reference(ckpt) else ckpt
        model = CharRNN.from_checkpoint_dict(load_checkpoint(path), ckpt)
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    chars = model.sample(prime, length, temperature, top_k or None, generator)
    first = next(chars)  # the prime is checked against the vocabulary here, before anything is printed
    out = sys.stdout
    out.write(prime + first)
    for ch in chars:
        out.write(ch)
        out.flush()  # stream: a learner watches the text appear
    out.write("\n")
    out.flush()


# -- sweep ---------------------------------------------------------------------------------
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

    from lit_nn.cli.config_checks import condense_parser_error
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
                raise UserError(f"sweep point {point.run_name}: {condense_parser_error(str(err))}") from None
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

    command = COMMANDS["sweep"]
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
    from lit_nn.cli.config_checks import init_args_of

    name = option.lstrip("-").split("=", 1)[0].replace("-", "_")
    for section, class_path in (("model", "lit_nn.models.MLP"), ("model", "lit_nn.models.CharRNN"),
                                ("data", "lit_nn.data.ImageDataModule"), ("data", "lit_nn.data.TextDataModule")):
        if name in init_args_of(class_path):
            return f"; to set it for every point use --{section}.init_args.{name} VALUE"
    return ""


# -- compare -------------------------------------------------------------------------------
def compare(sweep: str | None = None, experiment: str | None = None, group_by: str | None = None,
            out: Path | None = None) -> None:
    """Plot val_acc and train_loss against epoch (one line per group, band over seeds) and tabulate best
    val_acc, test_acc, epochs, wall time and parameters, from MLflow runs; for char-RNN runs (no accuracy)
    val_loss in nats per character instead, with each group's last generated text sample.

    Args:
        sweep: a sweep file (experiments/compare_*.yaml) or a sweep name; omit it to compare all runs of
            --experiment.
        experiment: MLflow experiment to read (default: the sweep's experiment).
        group_by: tag or param whose value makes a line/row, e.g. optimizer, depth, activation, model,
            sweep_point (default: the sweep's group_by).
        out: folder for curves.png and report.md (default: reports/<sweep or experiment>).
    """
    from lit_nn.sweeps.compare import compare as compare_runs

    report = compare_runs(sweep, experiment, group_by, out)
    print(report.markdown_path.read_text())
    print(f"report: {report.markdown_path} and {report.figure_path}")
    if report.ui:
        print(report.ui)


# -- runs ----------------------------------------------------------------------------------
def runs(experiment: list[str] | None = None, status: str | None = None, limit: int = 50,
         cleanup: bool = False, copy_to: str | None = None, run: list[str] | None = None) -> None:
    """List MLflow runs; with --cleanup, mark runs whose process died as KILLED (a kill -9 leaves them
    RUNNING forever); with --copy_to, copy them to another tracking store, e.g. the team server.

    Args:
        experiment: experiment names (repeatable; default: every experiment).
        status: only runs with this status: RUNNING, FINISHED, FAILED, KILLED or SCHEDULED.
        limit: show at most this many runs, newest first (the listing only: --copy_to copies them all).
        cleanup: mark RUNNING runs of this host whose process is gone as KILLED, then list (or copy).
        copy_to: copy the runs of --experiment/--status/--run from this store to the tracking server
            at this address (http://HOST:5000; credentials from MLFLOW_TRACKING_USERNAME/PASSWORD) or to
            another SQLite store (sqlite:///PATH): metric histories, params, tags, artifacts and logged
            models, under experiments of the same names, sweeps nested as here. Only ended runs are
            copied; a second copy skips what the first one copied.
        run: with --copy_to, only these runs (ids, or the 8 characters 'lit-nn runs' shows; repeatable)
            and the runs nested under them; the parents of nested runs always go along.
    """
    from lit_nn.tracking.listing import STATUSES, format_runs
    from lit_nn.tracking.liveness import reap_dead_runs
    from lit_nn.tracking.store import resolve_tracking_uri, tracking_client

    if limit <= 0:
        raise UserError(f"--limit must be > 0, got {limit}")
    if run and copy_to is None:
        raise UserError("--run picks the runs to copy: use it with --copy_to URI (the listing is filtered by "
                        "--experiment and --status)")
    wanted = status.upper() if status else None
    if wanted and wanted not in STATUSES:
        raise unknown_choice("status", status, STATUSES)
    client = tracking_client()
    experiments = client.search_experiments()
    names = {e.experiment_id: e.name for e in experiments}
    if experiment:
        by_name = {e.name: e.experiment_id for e in experiments}
        for name in experiment:
            if name not in by_name:
                raise unknown_choice("experiment", name, sorted(by_name) or ["(none yet)"])
        ids = [by_name[name] for name in experiment]
    else:
        ids = list(names)
    if not ids:
        print("no experiments yet: train something first (lit-nn fit -c experiments/mnist_cnn.yaml)")
        return
    if cleanup:
        reaped = reap_dead_runs(client, ids)
        print(f"cleanup: marked {len(reaped)} dead RUNNING run(s) as KILLED"
              + (f": {', '.join(r[:8] for r in reaped)}" if reaped else ""))
    if copy_to is not None:
        from lit_nn.tracking.copy import copy_runs

        copy_runs(client, resolve_tracking_uri(), copy_to, ids, wanted, run)
        return
    filter_string = f"attributes.status = '{wanted}'" if wanted else ""
    found = client.search_runs(ids, filter_string, max_results=limit, order_by=["attributes.start_time DESC"])
    if not found:
        print("no runs" + (f" with status {wanted}" if wanted else ""))
        return
    print(format_runs(found, names))


# -- lab -----------------------------------------------------------------------------------
def lab_parser(with_options: bool = True) -> Any:
    """``lit-nn lab``'s parser: one subcommand per lab, its options from the lab's ``run`` signature
    (``with_options=False``: the labs' names only, without importing them, for ``lit-nn lab --help``)."""
    import importlib

    from jsonargparse import ArgumentParser

    from lit_nn.lab import LABS

    parser = ArgumentParser(prog="lit-nn lab", description="The fundamentals, one small experiment each; every "
                            "lab is an MLflow run in experiment 'lab' ('lit-nn lab NAME --help' lists its options).",
                            exit_on_error=False, default_env=False, allow_abbrev=False)
    labs = parser.add_subcommands(dest="lab", required=True)
    for name, summary in LABS.items():
        if with_options:
            run = importlib.import_module(f"lit_nn.lab.{name}").run
            sub = build_parser(ToolCommand(name, run, summary), prog=f"lit-nn lab {name}")
        else:
            sub = ArgumentParser(prog=f"lit-nn lab {name}", description=summary)
        labs.add_subcommand(name, sub, help=summary)
    labs.add_subcommand("all", ArgumentParser(prog="lit-nn lab all", description="Run every lab with its "
                                              "defaults, one MLflow run each."), help="every lab with its defaults")
    return parser


# -- server --------------------------------------------------------------------------------
def server(folder: Path = Path("team-server"), host: str = "127.0.0.1", port: int = 5000, auth: bool = False,
           allowed_hosts: str | None = None, open_parents: bool = False) -> None:
    """Start a team tracking server: PostgreSQL (this machine's server binaries, on 127.0.0.1) behind
    `mlflow server` with proxied artifacts; serve until Ctrl-C. Point lit-nn at it with
    MLFLOW_TRACKING_URI=http://HOST:PORT.

    Args:
        folder: where the database cluster, the artifacts and the logs live (created on first start).
        host: the address the tracking server listens on; 0.0.0.0 for other machines (then also
            --allowed_hosts, --auth, and TLS in front: see the README).
        port: the tracking server's port.
        auth: MLflow's basic-auth app: users and permissions, credentials from
            MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (admin password: $LIT_NN_ADMIN_PASSWORD).
        allowed_hosts: host names the server answers to (MLflow's --allowed-hosts), e.g. tracking.lab.org.
        open_parents: as root, PostgreSQL runs as the postgres user, which must pass through every
            folder above --folder: add the search bit (x, not read) to each folder that stops it,
            printing each change. Without it such a folder is an error that names it.
    """
    from lit_nn.tracking.server import ServerPlan, serve

    serve(ServerPlan(folder=folder, host=host, port=port, auth=auth, allowed_hosts=allowed_hosts,
                     open_parents=open_parents))


def run_lab_command(argv: list[str]) -> None:
    """``lit-nn lab LAB [options]``: each lab's options come from its ``run`` function's signature."""
    import importlib

    from lit_nn.lab import LABS, run_all, run_lab

    names = [*LABS, "all"]
    if not argv or argv[0] in ("-h", "--help"):
        lab_parser(with_options=False).print_help()
        return
    name = argv[0]
    if name not in names:
        raise unknown_choice("lab", name, names)
    if name == "all":
        if argv[1:]:
            raise UserError(f"lit-nn lab all takes no options, got {' '.join(argv[1:])}")
        run_all()
        return
    run = importlib.import_module(f"lit_nn.lab.{name}").run
    command = ToolCommand(f"lab {name}", run, LABS[name], positional=False)
    run_lab(name, **parse(command, argv[1:]))


COMMANDS: dict[str, ToolCommand] = {
    "generate": ToolCommand("generate", generate, "sample text from a char-RNN checkpoint", positional=False),
    "sweep": ToolCommand("sweep", sweep, "run a comparison grid from experiments/compare_*.yaml"),
    "compare": ToolCommand("compare", compare, "plot and tabulate the runs of a sweep or experiment",
                           optional_positional="sweep"),
    "lab": ToolCommand("lab", run_lab_command,
                       "fundamentals labs: gates, activations, losses, trajectories, scratch"),
    "runs": ToolCommand("runs", runs, "list runs; mark dead ones KILLED (--cleanup); copy them to a team server "
                        "(--copy_to)"),
    "server": ToolCommand("server", server, "a team tracking server: PostgreSQL + mlflow server, artifacts proxied",
                          positional=False),
    "lr_find": ToolCommand("lr_find", run_lr_find, "Lightning's learning-rate finder on a fit config: the loss "
                           "against lr, a suggestion"),
}


def run_tool(name: str, argv: list[str]) -> None:
    """Run tool command ``name`` with its command-line arguments."""
    if name == "sweep":
        run_sweep_command(argv)
    elif name == "lab":
        run_lab_command(argv)
    elif name == "lr_find":
        run_lr_find(argv)
    else:
        command = COMMANDS[name]
        command.function(**parse(command, argv))
