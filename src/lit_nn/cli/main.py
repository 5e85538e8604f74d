"""The ``lit-nn`` command: dispatch to a trainer command or a tool command, and print mistakes as one line.

Training commands (``fit``, ``validate``, ``test``, ``predict``) are LightningCLI
(:mod:`lit_nn.cli.train`); the tools (``generate``, ``sweep``, ``compare``, ``lab``, ``runs``)
are typed functions (:mod:`lit_nn.cli.commands`). Both parse flags with jsonargparse, in one style.
"""

from __future__ import annotations

import gc
import sys
import warnings

from lit_nn.core.errors import UserError

TRAINER_COMMANDS = {
    "fit": "train a model, then evaluate it on the test set",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "predict classes for the test split",
}


def _print_overview() -> None:
    from lit_nn.cli.commands import COMMANDS

    lines = ["usage: lit-nn COMMAND [options]   (lit-nn COMMAND --help for each)", "",
             "training (LightningCLI: -c experiments/<file>.yaml, --model.*, --data.*, --trainer.*):"]
    lines += [f"  {name:<10} {desc}" for name, desc in TRAINER_COMMANDS.items()]
    lines += ["", "tools:"]
    lines += [f"  {name:<10} {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "example: lit-nn fit -c experiments/mnist_cnn.yaml --trainer.max_epochs 5"]
    print("\n".join(lines))


def _run_trainer_command(argv: list[str], from_console: bool) -> None:
    from jsonargparse import ArgumentError

    from lit_nn.cli.config_checks import check_config_file, condense_parser_error, config_paths, option_values
    from lit_nn.cli.train import LitNNCLI
    from lit_nn.tracking.checkpoints import load_checkpoint

    for config in config_paths(argv):
        check_config_file(config)
    for ckpt in option_values(argv, "--ckpt_path"):
        if ckpt not in ("last", "best", "hpc", "registry"):
            load_checkpoint(ckpt)  # LightningCLI reads it while parsing: check it first
    try:
        LitNNCLI(args=None if from_console else argv)
    except ArgumentError as err:
        message = str(err)
        if message.startswith("unrecognized arguments:"):
            from lit_nn.cli.tool_parser import option_names, unknown_option
            from lit_nn.cli.train import trainer_parser

            option = next((w.split("=", 1)[0] for w in message.split(":", 1)[1].split() if w.startswith("-")), "")
            if option:
                raise unknown_option(option, option_names(trainer_parser(argv[0])), f"lit-nn {argv[0]}") from None
        raise UserError(condense_parser_error(message)) from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lit-nn`` console script (``argv`` defaults to ``sys.argv[1:]``)."""
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        if not argv or argv[0] in ("-h", "--help"):
            _print_overview()
            return
        command = argv[0]
        if command in TRAINER_COMMANDS:
            _run_trainer_command(argv, from_console)
            return
        from lit_nn.cli.commands import COMMANDS, run_tool

        if command not in COMMANDS:
            from lit_nn.core.errors import unknown_choice

            raise unknown_choice("command", command, [*TRAINER_COMMANDS, *COMMANDS])
        run_tool(command, argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    finally:
        if from_console:
            # the process ends next: spare the interpreter's final garbage collections over the
            # ~10^6 objects torch, Lightning and MLflow created (seconds on 2 cores)
            gc.freeze()
