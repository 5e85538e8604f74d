"""``lit-nn lab LAB [options]``: one subcommand per lab of :mod:`lit_nn.lab`, its options read from
the lab's ``run`` signature (``lit-nn lab all`` runs every lab with its defaults)."""

from __future__ import annotations

from typing import Any

from lit_nn.cli.tool_parser import ToolCommand, build_parser, parse
from lit_nn.core.errors import UserError, unknown_choice


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
