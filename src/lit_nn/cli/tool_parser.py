"""Parsers for the tool commands (``generate``, ``sweep``, ``compare``, ``runs``, ``lab``), made
from the typed signature and docstring of the function that implements each one.

jsonargparse (which LightningCLI uses for ``fit``) builds the parser, so every command has
the same flag style (``--dry_run``, ``--group_by``), a generated ``--help``, and typed values.
Before parsing, :func:`normalize_argv` accepts the spellings a user types from habit or from
older docs: ``--dry-run`` for ``--dry_run``, a bare ``--force`` for ``--force true``,
``--no-report`` for ``--report false``, ``--functions round stretched`` or a repeated
``--experiment a --experiment b`` for a list, ``--start 1 1.5`` for a pair.
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonargparse import ArgumentParser

from lit_nn.cli.config_checks import condense_parser_error
from lit_nn.compat.jsonargparse import parser_actions
from lit_nn.core.errors import UserError

TRUE_FALSE = ("true", "false", "yes", "no", "on", "off", "1", "0")


@dataclass(frozen=True)
class ToolCommand:
    """A tool command: the function that does the work, and how its command line reads.

    ``function``'s required arguments become positionals when ``positional`` is set (else
    required options); ``optional_positional`` names an optional argument that may also be
    given as a bare word (``lit-nn compare compare_depth``).
    """

    name: str
    function: Callable[..., Any]
    summary: str
    positional: bool = True
    optional_positional: str | None = None


def _kind(annotation: Any) -> str:
    """'bool', 'list' (lists and tuples) or 'value', ignoring ``| None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return "bool"
    if typing.get_origin(annotation) in (list, tuple, Sequence) or annotation in (list, tuple):
        return "list"
    return "value"


def _text_items(annotation: Any) -> bool:
    """A list of str (``list[str] | None``): its items stay text, so that ``--run 12345678`` (a run id's
    prefix) or ``--experiment 2024`` is not read as a number."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return typing.get_args(annotation) in ((str,), (str, ...))


def option_kinds(function: Callable[..., Any]) -> dict[str, str]:
    """Each parameter of ``function`` and its kind (see :func:`_kind`)."""
    hints = typing.get_type_hints(function)
    return {name: _kind(hints.get(name, str)) for name in inspect.signature(function).parameters}


def build_parser(command: ToolCommand, prog: str | None = None) -> ArgumentParser:
    """A jsonargparse parser for ``command.function``: help from its docstring, types from its hints."""
    doc = inspect.getdoc(command.function) or command.summary
    description = doc.split("\nArgs:")[0].split("\nReturns")[0].strip()  # the text above the arguments
    parser = ArgumentParser(prog=prog or f"lit-nn {command.name}", description=description,
                            exit_on_error=False, default_env=False, allow_abbrev=False)
    parser.add_function_arguments(command.function, as_positional=command.positional, as_group=False,
                                  fail_untyped=True)
    return parser


def normalize_argv(argv: list[str], function: Callable[..., Any], optional_positional: str | None = None
                   ) -> list[str]:
    """Rewrite habitual spellings into jsonargparse's ``--name=value`` (see the module docstring).

    Unknown options are left as they are: the parser refuses them with a suggestion.
    """
    kinds = option_kinds(function)
    out: list[str] = []
    lists: dict[str, list[str]] = {}
    positional_taken = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--") or arg == "--":
            if optional_positional and not positional_taken:
                out.append(f"--{optional_positional}={arg}")
                positional_taken = True
            else:
                out.append(arg)
            continue
        name, has_value, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        if key.startswith("no_") and kinds.get(key[3:]) == "bool" and key not in kinds and not has_value:
            out.append(f"--{key[3:]}=false")
            continue
        kind = kinds.get(key)
        if kind is None:
            out.append(arg)
            continue
        if kind == "bool" and not has_value:
            value = "true"
            if i < len(argv) and argv[i].lower() in TRUE_FALSE:
                value, i = argv[i], i + 1
            out.append(f"--{key}={value}")
        elif kind == "list" and not has_value:
            items = []
            while i < len(argv) and not argv[i].startswith("--"):
                items.append(argv[i])
                i += 1
            if len(items) == 1 and items[0].startswith("["):
                out.append(f"--{key}={items[0]}")
            else:
                lists.setdefault(key, []).extend(items)
        elif kind == "list":
            if value.startswith("["):
                out.append(f"--{key}={value}")
            else:
                lists.setdefault(key, []).append(value)
        elif has_value:
            out.append(f"--{key}={value}")
        else:
            out.append(f"--{key}")
            if i < len(argv):
                out.append(argv[i])
                i += 1
    texts = {name for name, hint in typing.get_type_hints(function).items() if _text_items(hint)}
    for key, items in lists.items():
        out.append(f"--{key}={json.dumps([item if key in texts else _scalar(item) for item in items])}")
    return out


def _scalar(text: str) -> Any:
    """``"1.5"`` → 1.5, ``"3"`` → 3, anything else stays text (for lists given as separate words)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parser_error(err: Exception, parser: ArgumentParser, prog: str, argv: list[str]) -> UserError:
    """One sentence for a jsonargparse error, with the nearest option for a typo."""
    message = str(err)
    if message.startswith("unrecognized arguments:"):
        words = message.split(":", 1)[1].split()
        unknown = next((w.split("=", 1)[0] for w in words if w.startswith("-")), None)
        if unknown is None:
            return UserError(f"{prog}: unexpected argument {words[0]!r}; see '{prog} --help'")
        return unknown_option(unknown, option_names(parser), prog)
    return needs_a_value(message, prog, argv) or UserError(f"{prog}: {condense_parser_error(message)}")


def needs_a_value(message: str, prog: str, argv: list[str]) -> UserError | None:
    """argparse's "argument -c/--config: expected one argument": an option given last, or followed by
    a value that starts with a dash (``-c -cfg.yaml``), which argparse takes for another option."""
    if not (message.startswith("argument -") and "expected one argument" in message):
        return None
    names = message.split()[1].rstrip(":").split("/")  # ['-c', '--config'], or ['--data'] for --data.init_args.x
    for i, typed in enumerate(argv):
        if typed in names or typed.startswith(tuple(f"{name}." for name in names)):
            if i + 1 < len(argv) and argv[i + 1].startswith("-"):
                return UserError(f"{prog}: {typed} {argv[i + 1]}: a value that starts with '-' must be joined to "
                                 f"its option: {typed}={argv[i + 1]}")
            if i + 1 == len(argv):
                break
    return UserError(f"{prog}: {'/'.join(names)} needs a value; see '{prog} --help'")


def option_names(parser: ArgumentParser) -> list[str]:
    """The long options a parser accepts."""
    return sorted({o for action in parser_actions(parser) for o in action.option_strings if o.startswith("--")})


def unknown_option(option: str, valid: list[str], prog: str, hint: str = "") -> UserError:
    """The 'unknown option' sentence every tool command uses, with the nearest valid option."""
    spelled = "--" + option.lstrip("-").replace("-", "_")
    near = difflib.get_close_matches(spelled, valid, n=1, cutoff=0.6)
    suggestion = f" (did you mean {near[0]!r}?)" if near else ""
    return UserError(f"unknown option {option!r} for {prog}{suggestion}{hint}; see '{prog} --help'")


def parse(command: ToolCommand, argv: list[str], parser: ArgumentParser | None = None) -> dict[str, Any]:
    """Parse ``argv`` for ``command``: its keyword arguments, or a UserError naming the mistake."""
    parser = parser or build_parser(command)
    prog = f"lit-nn {command.name}"
    try:
        namespace = parser.parse_args(normalize_argv(argv, command.function, command.optional_positional))
    except Exception as err:  # noqa: BLE001 - jsonargparse raises ArgumentError and friends
        raise parser_error(err, parser, prog, argv) from None
    return {key: value for key, value in namespace.as_dict().items() if key != "__path__"}
