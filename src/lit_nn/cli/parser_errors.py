"""One sentence for a command line or config that jsonargparse (and so LightningCLI) refused.

jsonargparse raises each level of a nested value from the one below it (``model`` → its class →
``lr``), so the error that names the bad value is the innermost of the exception's ``__cause__``
chain, and a lit-nn check that a model's or data module's ``__init__`` raised is a
:class:`~lit_nn.core.errors.UserError` in that chain. :func:`explain` walks the chain instead of
rewording the text: the innermost message as jsonargparse wrote it, after the dotted key it is
about, and the nearest valid name, which jsonargparse does not suggest. What it reads of the text
is only what jsonargparse quotes: the key of each level (``Parser key "lr"``) and the name that was
refused (``Option 'depht' is not accepted``).
"""

from __future__ import annotations

import difflib
import importlib
import typing
from collections.abc import Callable, Iterable

from jsonargparse import ArgumentParser

from lit_nn.cli.config_checks import option_values
from lit_nn.compat.jsonargparse import action_typehint, parser_actions
from lit_nn.core.errors import UserError
from lit_nn.core.signatures import init_arg_names


def exception_chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def user_error_in(err: BaseException) -> UserError | None:
    """The lit-nn UserError ``err`` was raised from (a model's or data module's check), if any."""
    return next((e for e in exception_chain(err) if isinstance(e, UserError)), None)


def _keys(chain: list[BaseException]) -> list[str]:
    """The key of each level of a nested value, outermost first (``Parser key "model"`` → ``model``)."""
    return [_message(e).split('"')[1] for e in chain if _message(e).startswith('Parser key "')]


def explain(err: BaseException) -> UserError:
    """The sentence for a jsonargparse error (see the module docstring)."""
    if (user := user_error_in(err)) is not None:
        return user
    chain = exception_chain(err)
    keys = _keys(chain)
    text = " ".join(_type_names(_message(chain[-1])).split())
    where = ".".join(dict.fromkeys(keys))
    return UserError(f"{where + ': ' if where else ''}{text}{_nearest(_quoted(text)[-1:], _candidates(chain))}")


def _message(err: BaseException) -> str:
    """The text an exception was raised with (``str`` of a KeyError adds quotes around it)."""
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def _type_names(text: str) -> str:
    """``Expected a <class 'int'>`` → ``Expected int``, ``typing.Literal`` → ``Literal``: Python's reprs of
    types, written as a user writes them."""
    return text.replace("a <class '", "<class '").replace("<class '", "").replace("'>", "").replace("typing.", "")


def _quoted(text: str) -> list[str]:
    """The names in single quotes in ``text``."""
    return text.split("'")[1::2]


def init_args_of(class_path: str) -> list[str]:
    """The arguments the class at ``class_path`` takes; for a class its module lacks, the module's
    public names (empty when nothing can be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        imported = importlib.import_module(module)
    except (ImportError, ValueError):
        return []
    return init_arg_names(getattr(imported, name)) if hasattr(imported, name) else getattr(imported, "__all__", [])


def _candidates(chain: list[BaseException]) -> list[str]:
    """The names valid where the innermost error happened: a class's arguments (or its module's
    classes), else the top-level config keys."""
    for err in chain:
        if _message(err).startswith("Problem with given class_path"):
            return init_args_of(_quoted(_message(err))[0])
    return config_keys()


def config_keys() -> list[str]:
    """The top-level keys of a fit config file, read from `lit-nn fit`'s own parser (so a new option
    is a candidate for the nearest name without being listed here)."""
    from lit_nn.cli.train import fit_parser

    return sorted({key.split(".")[0] for key in fit_parser().get_defaults().keys()} - {"config"})


def _nearest(words: Iterable[str], choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the first of ``words`` (or its first or last dotted part) near a choice."""
    for word in words:
        for part in dict.fromkeys((word, word.split(".")[0], word.split(".")[-1])):
            if near := difflib.get_close_matches(part, choices, n=1, cutoff=0.5):
                return f" (did you mean {near[0]!r}?)"
    return ""


def parser_error(err: Exception, parser: ArgumentParser | Callable[[], ArgumentParser], prog: str,
                 argv: list[str]) -> UserError:
    """One sentence for any error of ``parser`` on ``argv``: an unknown option with the nearest one,
    an option missing its value, or :func:`explain`'s. ``parser`` may be a function that builds it
    (LightningCLI's: built again only for a typo)."""
    def built() -> ArgumentParser:
        return parser if isinstance(parser, ArgumentParser) else parser()

    message = _message(err)
    if message.startswith("unrecognized arguments:"):
        words = message.split(":", 1)[1].split()
        unknown = next((w.split("=", 1)[0] for w in words if w.startswith("-")), None)
        if unknown is None:
            return UserError(f"{prog}: unexpected argument {words[0]!r}; see '{prog} --help'")
        return unknown_option(unknown, option_names(built()), prog)
    if (missing := needs_a_value(message, prog, argv)) is not None:
        return missing
    if (choices := _choices_refused(err, built, argv)) is not None:
        return UserError(f"{prog}: {choices}")
    explained = explain(err)
    return explained if explained is user_error_in(err) else UserError(f"{prog}: {explained}")


def _choices_refused(err: Exception, parser: Callable[[], ArgumentParser], argv: list[str]) -> str | None:
    """``key must be one of: ...; got 'v'`` for an option whose type is a union of ``Literal`` choices,
    whose every valid value jsonargparse does not list."""
    keys = _keys(exception_chain(err))
    if not keys:
        return None
    hint = action_typehint(parser(), keys[0])
    alternatives = [a for a in typing.get_args(hint) or (hint,) if a is not type(None)]
    if not alternatives or any(typing.get_origin(a) is not typing.Literal for a in alternatives):
        return None
    valid = ", ".join(dict.fromkeys(str(value) for a in alternatives for value in typing.get_args(a)))
    given = next(option_values(argv, f"--{keys[0]}"), None)
    return f"{keys[0]} must be one of: {valid}" + (f"; got {given!r}" if given is not None else "")


def needs_a_value(message: str, prog: str, argv: list[str]) -> UserError | None:
    """argparse's "argument -c/--config: expected one argument": an option given last, or followed by
    a value that starts with a dash (``-c -cfg.yaml``), which argparse takes for another option."""
    if not (message.startswith("argument -") and ": expected " in message):
        return None
    names = message.split()[1].rstrip(":").split("/")  # ['-c', '--config'], or ['--data'] for --data.init_args.x
    for i, typed in enumerate(argv):
        if typed in names or typed.startswith(tuple(f"{name}." for name in names)):
            if i + 1 < len(argv) and argv[i + 1].startswith("-"):
                return UserError(f"{prog}: {typed} {argv[i + 1]}: a value that starts with '-' must be joined to "
                                 f"its option: {typed}={argv[i + 1]}")
            if i + 1 == len(argv):
                break
    return UserError(f"{prog}: {'/'.join(names)} needs {message.split(': expected ')[-1].replace('argument', 'value')}; "
                     f"see '{prog} --help'")


def option_names(parser: ArgumentParser) -> list[str]:
    """The long options a parser accepts."""
    return sorted({o for action in parser_actions(parser) for o in action.option_strings if o.startswith("--")})


def unknown_option(option: str, valid: list[str], prog: str, hint: str = "") -> UserError:
    """The 'unknown option' sentence every command uses, with the nearest valid option."""
    spelled = "--" + option.lstrip("-").replace("-", "_")
    near = difflib.get_close_matches(spelled, valid, n=1, cutoff=0.6)
    suggestion = f" (did you mean {near[0]!r}?)" if near else ""
    return UserError(f"unknown option {option!r} for {prog}{suggestion}{hint}; see '{prog} --help'")
