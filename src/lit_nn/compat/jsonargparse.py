"""jsonargparse (and argparse) internals lit-nn reads: a subcommand's parser, a parser's actions.

Checked against jsonargparse 4.53.0 on Python 3.11.
"""

from __future__ import annotations

from argparse import Action

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
