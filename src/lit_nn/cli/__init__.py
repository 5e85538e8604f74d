"""The ``lit-nn`` command line: the LightningCLI trainer commands, the tool commands, their parsers,
error messages and progress bar. Nothing below this package imports it."""

from lit_nn.cli.main import main

__all__ = ["main"]
