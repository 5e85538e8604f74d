"""Reading a YAML file a user wrote (a run config, a sweep file): one sentence for each way it can
be wrong — missing, a directory, unreadable, not UTF-8, a syntax error with its line and column,
not a mapping — shared by ``lit-nn fit -c`` and ``lit-nn sweep``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lit_nn.core.errors import UserError, require_file


def read_yaml_mapping(name: str | Path, what: str, example: str) -> dict[str, Any]:
    """The mapping in YAML file ``name`` (``{}`` for an empty file); ``what`` names the file in the
    sentence ("config file", "sweep file"), ``example`` says what to give instead of a directory."""
    path = require_file(name, what, example)
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise UserError(f"{what} {name} is not readable (permission denied)") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {name} is not UTF-8 text (bad byte at offset {err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{what} {name} is not valid YAML: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {name} must hold a mapping of keys, not a {type(data).__name__}")
    return data
