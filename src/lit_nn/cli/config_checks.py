"""What lit-nn reads of a trainer command line before LightningCLI parses it, and why.

LightningCLI loads ``--ckpt_path`` with ``torch.load`` while it parses, and a run id given there
(``lit-nn test --ckpt_path RUN_ID``) must first become that run's checkpoint and config. So the
``fit``/``test``/``predict`` command line is scanned once, before parsing, for its ``-c`` files
(checked here: existence, YAML syntax with the line, NaN values, which jsonargparse reports in
less direct terms), its ``--ckpt_path`` and its ``--resume`` (:func:`lit_nn.cli.main.run_trainer_command`).
Everything else is jsonargparse's to parse; its errors become sentences in
:mod:`lit_nn.cli.parser_errors`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.yaml_files import read_yaml_mapping


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
