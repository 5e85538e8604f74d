"""What a class's constructor accepts, the way jsonargparse (and so LightningCLI) reads it."""

from __future__ import annotations

import inspect


def init_arg_names(cls: type) -> list[str]:
    """The arguments ``cls`` takes: its own, then, while an ``__init__`` passes ``**kwargs`` on,
    those of the bases it passes them to (lit-nn models declare the optimizer arguments once)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names += [n for n, p in params.items()
                  if n != "self" and n not in names and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names
