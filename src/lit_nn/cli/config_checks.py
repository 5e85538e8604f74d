"""Turning bad command lines and config files into one clear sentence.

LightningCLI (through jsonargparse) reports mistakes as a usage block plus a nested
"Does not validate against any of the Union subtypes" explanation. lit-nn checks config
files itself first (existence, YAML syntax with the line, NaN values) and condenses the
parser's messages to the part that names the bad key or value, with the nearest valid key.
"""

from __future__ import annotations

import difflib
import importlib
import math
import re
from collections.abc import Iterator
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.signatures import init_arg_names
from lit_nn.core.yaml_files import read_yaml_mapping

TOP_LEVEL_KEYS = ("seed_everything", "trainer", "model", "data", "ckpt_path", "weights_only", "experiment",
                  "run_name", "tags", "log_checkpoint", "log_model", "register", "test_after_fit", "resume", "images",
                  "dynamics", "dynamics_every", "system_metrics")


def option_values(argv: list[str], *names: str) -> Iterator[str]:
    """The values given to any of the options ``names`` in ``argv`` (``--opt v`` or ``--opt=v``)."""
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            yield argv[i + 1]
        elif "=" in arg and arg.split("=", 1)[0] in names:
            yield arg.split("=", 1)[1]


def config_paths(argv: list[str]) -> Iterator[str]:
    """The values of every ``-c``/``--config`` option in ``argv``."""
    return option_values(argv, "-c", "--config")


def _nan_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _nan_keys(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nan_keys(value, f"{prefix}{i}.")
    elif isinstance(node, float) and (math.isnan(node) or math.isinf(node)):
        yield prefix[:-1]


def check_config_file(name: str) -> dict[str, Any]:
    """Read a YAML config the way a user needs it checked: exists, is a file, parses, holds no NaN."""
    data = read_yaml_mapping(name, "config file", "a YAML file such as experiments/mnist_cnn.yaml")
    bad = list(_nan_keys(data))
    if bad:
        raise UserError(f"config file {name}: {bad[0]} is NaN or infinite; give a finite number")
    return data


def _nearest(word: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


def init_args_of(class_path: str) -> list[str]:
    """The arguments the class at ``class_path`` takes (empty when it cannot be imported)."""
    try:
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    return init_arg_names(cls)


def condense_parser_error(message: str) -> str:
    """The one sentence a user needs out of a jsonargparse error message."""
    if m := re.search(r"does not accept option '([\w.]+)'", message):
        key = m.group(1)
        top = key.split(".")[0]
        hint = _nearest(top, list(TOP_LEVEL_KEYS))
        return f"unknown config key {key!r}{hint}; valid top-level keys: {', '.join(TOP_LEVEL_KEYS)}"
    if m := re.search(r"class_path '([\w.]+)':\s+Option '(\w+)' is not accepted", message):
        class_path, option = m.groups()
        valid = init_args_of(class_path)
        return (f"unknown option {option!r} for {class_path}{_nearest(option, valid)}; "
                f"valid: {', '.join(valid)}")
    if (m := re.search(r'Parser key "([\w.]+)":', message)) and "Literal[" in message:
        key = m.group(1)
        given = re.search(r"Given value: (.+)", message)
        values = [v.strip().strip("'") for lits in re.findall(r"Literal\[([^\]]*)\]", message.split("Errors:")[0])
                  for v in lits.split(",")]
        valid = ", ".join(dict.fromkeys(values))
        return f"{key} must be one of: {valid}; got {given.group(1).strip()!r}" if given else f"{key}: one of {valid}"
    if "Union subtypes" in message and (keys := re.findall(r'Parser key "([\w.]+)":', message)):
        # a value of the wrong type for an optional argument (int | None...), maybe inside a class
        subtypes = re.findall(r"Subtypes: \[(.*?)\]\n", message)[-1]
        types = [t for t in re.findall(r"<class '([\w.]+)'>", subtypes) if t != "NoneType"]
        given = re.search(r"Given value: (?!NestedArg)(.+)", message)
        key = keys[0] if len(keys) == 1 else f"{keys[0]}.init_args.{keys[-1]}"
        if types and given and "class_path" not in types[0] and "Module" not in types[0]:
            optional = " (or null)" if "NoneType" in subtypes else ""
            return f"{key} expects {' or '.join(types)}{optional}, got {given.group(1).strip()!r}"
    if m := re.search(r'Parser key "([\w.]+)":\s+Expected a (.+?)\. Got value: (.+)', message):
        key, expected, got = m.groups()
        expected = re.sub(r"<class '(\w+)'>", r"\1", expected)
        if expected == "float" and got.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            return f"{key} must be a finite number, got {got.strip()!r}"
        return f"{key} expects {expected}, got {got.strip()!r}"
    if m := re.search(r"class_path '([\w.]+)':\s+module '[\w.]+' has no attribute", message):
        return (f"unknown class {m.group(1)!r}; use lit_nn.models.MLP, lit_nn.models.CNN or "
                "lit_nn.models.CharRNN (data: lit_nn.data.ImageDataModule or lit_nn.data.TextDataModule)")
    if m := re.search(r"Import path ([\w.]+) does not correspond|No module named '([\w.]+)'|"
                      r"'([\w.]+)' is not a subclass|class_path '?([\w.]+)'? .*not found", message):
        name = next(g for g in m.groups() if g)
        return f"unknown class {name!r}; use lit_nn.models.MLP, lit_nn.models.CNN or lit_nn.models.CharRNN"
    if m := re.search(r'Parser key "config": (.+)', message):
        return f"config file: {m.group(1).strip()}"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Subtypes:", "Given value", "Errors:",
                                                              "- Expected a <class 'NoneType'>"))]
    return " ".join(useful[-2:] if len(useful) > 1 else useful) or message
