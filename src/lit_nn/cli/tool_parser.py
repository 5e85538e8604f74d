"""Parsers for the tool commands (``generate``, ``sweep``, ``compare``, ``runs``, ``server``, ``lab``),
made from the typed signature and docstring of the function that implements each one.

Each parameter becomes one jsonargparse argument of its type, so every command has the same flag
style, a generated ``--help`` and typed values: a list takes several words (``--experiment a b``,
also repeated: ``--experiment a --experiment b``), a pair two (``--start 1 1.5``), a boolean stands
alone or takes a value (``--force``, ``--force false``, ``--no_report``). Each ``--name_with_underscores``
is also spelt ``--name-with-underscores`` (and ``--no-report``), as earlier versions documented: one
rule, not a table.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonargparse import ArgumentParser

from lit_nn.cli.parser_errors import parser_error


@dataclass(frozen=True)
class ToolCommand:
    """A tool command: the function that does the work, and how its command line reads.

    ``function``'s required arguments become positionals when ``positional`` is set (else
    required options); ``optional_positional`` names an optional argument given as a bare word
    (``lit-nn compare compare_depth``) rather than as an option.
    """

    name: str
    function: Callable[..., Any]
    summary: str
    positional: bool = True
    optional_positional: str | None = None


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None`` (``Optional[X]``), else ``annotation``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _spellings(name: str, prefix: str = "--") -> list[str]:
    """``--dry_run`` and ``--dry-run``."""
    return list(dict.fromkeys((f"{prefix}{name}", f"{prefix}{name.replace('_', '-')}")))


def _add_parameter(parser: ArgumentParser, parameter: inspect.Parameter, hint: Any, help: str,
                   command: ToolCommand) -> None:
    """One argument of ``parser`` for ``parameter`` (see the module docstring for the shapes)."""
    name, default = parameter.name, parameter.default
    required = default is inspect.Parameter.empty
    kind, origin = _without_none(hint), typing.get_origin(_without_none(hint))
    if command.positional and required or name == command.optional_positional:
        parser.add_argument(name, type=hint, help=help, **({} if required else {"nargs": "?", "default": default}))
    elif kind is bool:
        parser.add_argument(*_spellings(name), type=bool, nargs="?", const=True, default=default, help=help)
        parser.add_argument(*_spellings(f"no_{name}"), dest=name, action="store_false", default=default,
                            help=f"--{name} false")
    elif origin in (list, tuple, Sequence):
        items = typing.get_args(kind)
        pair = origin is tuple and Ellipsis not in items
        parser.add_argument(*_spellings(name), type=items[0] if items else str, nargs=len(items) if pair else "+",
                            action=None if pair or not required and default is not None else "extend",
                            default=list(default) if isinstance(default, (tuple, list)) else default,
                            required=required, help=help)
    else:
        parser.add_argument(*_spellings(name), type=hint, default=None if required else default,
                            required=required, help=help)


def build_parser(command: ToolCommand, prog: str | None = None) -> ArgumentParser:
    """A jsonargparse parser for ``command.function``: help from its docstring, types from its hints."""
    import docstring_parser

    doc = inspect.getdoc(command.function) or command.summary
    description = doc.split("\nArgs:")[0].split("\nReturns")[0].strip()  # the text above the arguments
    helps = {param.arg_name: " ".join((param.description or "").split()) for param in docstring_parser.parse(doc).params}
    parser = ArgumentParser(prog=prog or f"lit-nn {command.name}", description=description,
                            exit_on_error=False, default_env=False, allow_abbrev=False)
    hints = typing.get_type_hints(command.function)
    for parameter in inspect.signature(command.function).parameters.values():
        if parameter.name not in hints:
            raise TypeError(f"{command.function.__qualname__}: parameter {parameter.name!r} has no type hint")
        _add_parameter(parser, parameter, hints[parameter.name], helps.get(parameter.name, ""), command)
    return parser


def parse(command: ToolCommand, argv: list[str], parser: ArgumentParser | None = None) -> dict[str, Any]:
    """Parse ``argv`` for ``command``: its keyword arguments, or a UserError naming the mistake."""
    parser = parser or build_parser(command)
    try:
        namespace = parser.parse_args(argv)
    except Exception as err:  # noqa: BLE001 - jsonargparse raises ArgumentError and friends
        raise parser_error(err, parser, f"lit-nn {command.name}", argv) from None
    hints = typing.get_type_hints(command.function)
    values = {key: value for key, value in namespace.as_dict().items() if key != "__path__"}
    return {key: tuple(value) if typing.get_origin(_without_none(hints[key])) is tuple and value is not None
            else value for key, value in values.items()}
