"""jsonargparse (and argparse) internals lit-nn reads: a subcommand's parser, a parser's actions.

Checked against jsonargparse 4.53.0 on Python 3.11.
"""

from __future__ import annotations

from argparse import Action
from typing import Any

from jsonargparse import ArgumentParser


def subcommand_parsers(parser: ArgumentParser) -> dict[str, ArgumentParser]:
    """The parsers of ``parser``'s subcommands by name (empty when it has none).

    Why: jsonargparse builds a subcommand's parser inside ``add_subcommands`` and offers no public
    way to get it back; lit-nn needs LightningCLI's ``fit`` parser (sweep validation, option
    suggestions) and each lab's parser. jsonargparse keeps them in
    ``parser._subcommands_action._name_parser_map`` (argparse's own attribute of subparser actions).
    """
    action = parser._subcommands_action
    return dict(action._name_parser_map) if action is not None else {}


def parser_actions(parser: ArgumentParser) -> list[Action]:
    """Every action (option or positional) ``parser`` knows, its groups' and its ``-c`` included.

    Why: argparse has no public list of a parser's actions; ``parser._actions`` is the one place
    all of them live (lit-nn reads their ``option_strings`` to suggest the nearest option to a typo).
    """
    return list(parser._actions)


def action_typehint(parser: ArgumentParser, dest: str) -> Any:
    """The type hint of ``parser``'s argument ``dest`` (None when it has none or no such argument).

    Why: a value refused by a union of choices (Lightning's ``trainer.precision``) is reported by
    jsonargparse with the first alternative only; the hint gives every valid value. jsonargparse
    keeps it on its typed actions as ``_typehint`` and offers no public accessor.
    """
    action = next((a for a in parser._actions if a.dest == dest), None)
    return getattr(action, "_typehint", None)
