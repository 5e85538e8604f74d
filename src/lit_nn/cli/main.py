"""The ``lit-nn`` command: dispatch to a trainer command or a tool command, and print mistakes as one line.

Training commands (``fit``, ``validate``, ``test``, ``predict``) are LightningCLI
(:mod:`lit_nn.cli.train`); the tools (``generate``, ``sweep``, ``compare``, ``lab``, ``runs``)
are typed functions (:mod:`lit_nn.cli.commands`). Both parse flags with jsonargparse, in one style.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.signals import SIGTERM_EXIT, is_sigterm, let_ctrl_c_interrupt, sigterm_handled
from lit_nn.core.streams import final_status, guard_standard_streams

TRAINER_COMMANDS = {
    "fit": "train a model, then evaluate it on the test set",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "classify the test split or your own images (--images), with a table and a CSV",
}
# commands whose product is an MLflow run (or a service), not their output: a broken stdout does not
# stop them (lit_nn.core.streams)
WORK_COMMANDS = {*TRAINER_COMMANDS, "sweep", "lab", "server", "lr_find"}


def works_past_closed_output(argv: list[str]) -> bool:
    """Whether the command line keeps working when its stdout breaks: a run's command, not its help."""
    return bool(argv) and argv[0] in WORK_COMMANDS and not {"-h", "--help"} & set(argv)


def _print_overview() -> None:
    from lit_nn.cli.commands import COMMANDS

    lines = ["usage: lit-nn COMMAND [options]   (lit-nn COMMAND --help for each)", "",
             "training (LightningCLI: -c experiments/<file>.yaml, --model.*, --data.*, --trainer.*):"]
    lines += [f"  {name:<10} {desc}" for name, desc in TRAINER_COMMANDS.items()]
    lines += ["", "tools:"]
    lines += [f"  {name:<10} {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "example: lit-nn fit -c experiments/mnist_cnn.yaml --trainer.max_epochs 5"]
    print("\n".join(lines))


def run_trainer_command(argv: list[str]) -> Any:
    """Run a trainer command line; return the finished LitNNCLI (its trainer, model, logger)."""
    import tempfile

    from lit_nn.cli.config_checks import check_config_file, config_paths, option_values
    from lit_nn.tracking.checkpoints import (
        fetch_run_checkpoint,
        fetch_run_config,
        is_run_reference,
        load_checkpoint,
        model_class_of,
    )

    with tempfile.TemporaryDirectory(prefix="lit-nn-run-") as fetched:
        for ckpt in option_values(argv, "--ckpt_path"):
            if argv[0] != "fit" and is_run_reference(ckpt):  # a run id: its best checkpoint and its config
                path, config = fetch_run_checkpoint(ckpt, Path(fetched))
                argv = [str(path) if a == ckpt else a.replace(f"={ckpt}", f"={path}") for a in argv]
                if config is not None and not list(config_paths(argv)):
                    argv = [argv[0], "-c", str(config), *argv[1:]]
        resume = list(option_values(argv, "--resume"))
        configured = list(config_paths(argv)) or list(option_values(argv, "--model"))
        if argv[0] == "fit" and resume and not configured:  # a run elsewhere: its config too
            argv = [argv[0], "-c", str(fetch_run_config(resume[0], Path(fetched))), *argv[1:]]
        if argv[0] != "fit" and not configured and not list(option_values(argv, "--ckpt_path")):
            raise UserError(f"lit-nn {argv[0]} needs the model to use: --ckpt_path with a checkpoint file or a "
                            f"run id (`lit-nn runs` lists them), e.g. lit-nn {argv[0]} --ckpt_path RUN_ID")
        model_classes = [check_config_file(config).get("model", {}) for config in config_paths(argv)]
        model_classes = [m.get("class_path") for m in model_classes if isinstance(m, dict) and m.get("class_path")]
        model_classes += list(option_values(argv, "--model"))
        for ckpt in option_values(argv, "--ckpt_path"):
            if ckpt not in ("last", "best", "hpc", "registry"):
                # LightningCLI reads it while parsing, and takes its model from it: check both first
                saved = model_class_of(load_checkpoint(ckpt, trainer=True))
                if saved and model_classes and _short(model_classes[-1]) != _short(saved):
                    raise UserError(f"checkpoint {ckpt} holds a {_short(saved)} model, but the config builds a "
                                    f"{_short(model_classes[-1])}; use the config the checkpoint was trained "
                                    "with, or the run id instead of the file (it brings its config)")
                if not model_classes:
                    raise UserError(f"lit-nn {argv[0]} --ckpt_path {ckpt} needs the config the checkpoint was "
                                    "trained with (-c FILE), or the run id instead of the file (it brings its "
                                    "config; `lit-nn runs` lists them)")
        return _run_lightning_cli(argv)


def _short(class_path: str) -> str:
    """``lit_nn.models.cnn.CNN`` → ``CNN``."""
    return class_path.rsplit(".", 1)[-1]


def _run_lightning_cli(argv: list[str]) -> Any:
    """LitNNCLI on ``argv``; a parser error becomes one sentence (an unknown flag with the nearest one)."""
    from jsonargparse import ArgumentError

    from lit_nn.cli.parser_errors import parser_error
    from lit_nn.cli.train import LitNNCLI, trainer_parser

    try:
        return LitNNCLI(args=argv)
    except ArgumentError as err:
        raise parser_error(err, lambda: trainer_parser(argv[0]), f"lit-nn {argv[0]}", argv) from None


# Lightning's info lines that are advertisement or say nothing on the machine at hand; its
# warnings (and every other info line) are kept
BANNERS = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:")


class _DropBanners(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(BANNERS)


def quiet_libraries() -> None:
    """Keep library chatter out of a command's output (none of these loggers imports its library)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropBanners())
    # "Creating initial MLflow database tables...": the first run in a fresh store is no news
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    # its errors are logged with their traceback and then raised: lit_nn.tracking.faults words them
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one file: no bar
    # "🏃 View run ... at: URL" after the result on a tracking server: lit-nn's last line says where
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # evaluating a checkpoint needs none of the callbacks that wrote it
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")


def dispatch(argv: list[str]) -> None:
    """Run one ``lit-nn`` command line; a user's mistake becomes one ``error:`` line and SystemExit.

    SIGTERM stops the command as Ctrl-C does (:mod:`lit_nn.core.signals`), and neither leaves a
    run of the command RUNNING.
    """
    from lit_nn.tracking.lifecycle import end_runs_on_interrupt

    quiet_libraries()
    with sigterm_handled(), end_runs_on_interrupt():
        _dispatch(argv)


def _dispatch(argv: list[str]) -> None:
    try:
        if not argv or argv[0] in ("-h", "--help"):
            _print_overview()
            return
        command = argv[0]
        if command in TRAINER_COMMANDS:
            run_trainer_command(argv)
            return
        from lit_nn.cli.commands import COMMANDS, run_tool

        if command not in COMMANDS:
            from lit_nn.core.errors import unknown_choice

            raise unknown_choice("command", command, [*TRAINER_COMMANDS, *COMMANDS])
        run_tool(command, argv[1:])
    except UserError as err:
        _fail(err)
    except Exception as err:  # a tracking store that failed under the command: one sentence too
        from lit_nn.tracking.faults import store_fault
        from lit_nn.tracking.lifecycle import RunStatus, end_open_runs, failure_reason
        from lit_nn.tracking.store import resolve_tracking_uri

        fault = store_fault(err, resolve_tracking_uri())
        if fault is None:
            end_open_runs(RunStatus.FAILED, failure_reason(err))
            raise
        _fail(fault)


def _fail(err: UserError) -> None:
    """Print the sentence and exit with its status, after ending the runs the command left RUNNING
    (FAILED with the sentence; a store that refuses even that is said in the same sentence)."""
    from lit_nn.tracking.lifecycle import RunStatus, end_open_runs

    left = end_open_runs(RunStatus.FAILED, str(err))
    sentence = str(err)
    if left:
        sentence += (f"; run {', '.join(left)} is left RUNNING (the store could not record its end): "
                     "`lit-nn runs --cleanup` ends it once the store works")
    print(f"error: {sentence}", file=sys.stderr)
    sys.exit(err.exit_code)


_exit_status = 0


def skip_finalization_at_exit() -> None:
    """Make a normal exit of this process end right after its exit handlers (:func:`_end_process`);
    call it before importing torch, Lightning or MLflow, so that their handlers still run."""
    atexit.register(_end_process)


def _end_process() -> None:
    """End the process once the exit handlers have run, skipping the interpreter's finalization.

    Registered before torch, Lightning and MLflow are imported, so it runs after their handlers
    (they run last registered, first run). Finalizing would then only garbage-collect the ~10^6
    objects those libraries created (over a second on 2 cores); freezing them instead
    (``gc.freeze``) made nanobind, loaded with triton by torch >= 2.15, report every surviving
    object as leaked, after the result.
    """
    logging.shutdown()  # its handler was registered before this one (lit-nn imports logging first)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, SystemExit):  # SystemExit: a broken pipe found by this last flush
            pass
    os._exit(final_status(_exit_status))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lit-nn`` console script (``argv`` defaults to ``sys.argv[1:]``).

    Called with ``argv`` (tests, notebooks) it returns or raises SystemExit as usual; as the
    console script it exits with the command's status through a normal exit, whose last step
    (:func:`_end_process`) skips the interpreter's finalization. As the console script, a closed
    or broken stdout ends it as it ends a Unix tool (:mod:`lit_nn.core.streams`): quietly, with
    status 141 where the output was the product, or after the work where a run is.
    """
    global _exit_status
    if argv is not None:
        dispatch(list(argv))
        return
    skip_finalization_at_exit()
    let_ctrl_c_interrupt()
    guard_standard_streams(keep_working=works_past_closed_output(sys.argv[1:]))
    code = 0
    try:
        dispatch(sys.argv[1:])
    except SystemExit as exit_:
        if is_sigterm(exit_):
            code = SIGTERM_EXIT
        elif isinstance(exit_.code, int) or exit_.code is None:
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # a bug: keep its traceback
        traceback.print_exc()
        code = 1
    _exit_status = code
    sys.exit(code)
