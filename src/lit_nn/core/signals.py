"""SIGTERM — what Slurm, Kubernetes, systemd and ``timeout`` send — stops lit-nn as Ctrl-C does.

Inside :func:`sigterm_handled` the first SIGTERM raises :class:`Terminated` wherever the process
is, except while Lightning's own SIGTERM handler is installed (a Trainer stage is running):
Lightning calls the handler it found, this one, after its own, and stops its loops at the next
batch boundary with its ``SIGTERMException``, so no step is cut in half and the last completed
epoch's checkpoint stays the last one. Either way the run ends KILLED with
:data:`SIGTERM_REASON`, and the command exits with :data:`SIGTERM_EXIT`, as a shell reports a
process that SIGTERM ended.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final

SIGTERM_REASON: Final = "terminated by SIGTERM"
SIGTERM_EXIT: Final = 128 + signal.SIGTERM  # 143


class Terminated(SystemExit):
    """SIGTERM as an exception. A ``SystemExit`` (status 143) like Lightning's ``SIGTERMException``:
    ``except Exception`` never swallows it, and Lightning treats both alike (the run's loggers and
    callbacks hear of it, then it propagates)."""

    def __init__(self) -> None:
        super().__init__(SIGTERM_EXIT)


_received = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _received
    first = not _received
    _received = True
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        return  # called by the handler installed over this one (Lightning's): it stops at a safe point
    if first:  # a second SIGTERM must not break the shutdown the first one started
        raise Terminated


def sigterm_received() -> bool:
    """Whether SIGTERM arrived inside :func:`sigterm_handled` (also one Lightning is acting on)."""
    return _received


def install_sigterm_handler() -> Any:
    """Make SIGTERM raise :class:`Terminated` (call it in the main thread); return the handler it
    replaces, to put back with ``signal.signal``. Installed anew, it forgets an earlier SIGTERM."""
    global _received
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not _on_sigterm:
        _received = False
        signal.signal(signal.SIGTERM, _on_sigterm)
    return signal.SIG_DFL if previous is None else previous  # None: set outside Python, i.e. the default


@contextmanager
def sigterm_handled() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the block (in the main thread; elsewhere Python
    runs no signal handler anyway); the previous handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = install_sigterm_handler()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_sigterm(error: BaseException | None) -> bool:
    """Whether ``error`` is SIGTERM stopping the process: :class:`Terminated` or Lightning's
    ``SIGTERMException`` (looked up only if Lightning is loaded: otherwise nothing raised one)."""
    if isinstance(error, Terminated):
        return True
    lightning_errors = sys.modules.get("lightning.pytorch.utilities.exceptions")
    sigterm_exception = getattr(lightning_errors, "SIGTERMException", None)
    return sigterm_exception is not None and isinstance(error, sigterm_exception)


def let_ctrl_c_interrupt() -> None:
    """Make SIGINT raise KeyboardInterrupt even if this process inherited it ignored.

    A process started in the background by a shell without job control (a CI script, ``cmd &`` in a
    script) inherits SIGINT ignored, and Python then installs no handler for it: lit-nn's own SIGINTs
    (a sweep stopping its workers, a worker whose sweep died, a test stopping the team server as
    Ctrl-C would) were lost. A background job never gets the terminal's Ctrl-C anyway (only the
    foreground group does), so restoring the handler changes nothing for a user."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

