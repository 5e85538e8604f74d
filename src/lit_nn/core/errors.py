"""User-facing errors.

A mistake a user can fix (a bad name, a missing file, a value out of range) raises
``UserError`` with one sentence that names the bad value and what is valid. The CLI
prints that sentence and exits non-zero without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """An error caused by user input; its message is shown as-is, without a traceback."""

    exit_code = 2


def unknown_choice(what: str, value: object, valid: Iterable[str]) -> UserError:
    """Build the standard 'unknown X' error, with the valid choices and the nearest one."""
    valid = list(valid)
    near = difflib.get_close_matches(str(value), valid, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return UserError(f"unknown {what} {value!r}{hint}; valid: {', '.join(valid)}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Reject sizes and rates that must be > 0 (or >= 0), including NaN."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:  # NaN fails every comparison
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{name} must be {bound}, got {value!r}")


def check_fraction(name: str, value: float) -> None:
    """Reject probabilities/fractions outside [0, 1)."""
    if not 0 <= value < 1:
        raise UserError(f"{name} must be in [0, 1), got {value!r}")


def require_file(path: str | Path, what: str, example: str) -> Path:
    """``path`` as a Path if it is an existing file; else the sentence naming what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give {example}")
    return path
