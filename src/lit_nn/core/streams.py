"""A closed or broken standard stream ends a ``lit-nn`` command as it ends a Unix tool: quietly.

``lit-nn generate | head -1``: once ``head`` has its line it exits, and the next write to the
pipe fails (EPIPE; Python ignores SIGPIPE, so it is a ``BrokenPipeError``). Python's recipe
(docs.python.org, library/signal, "Note on SIGPIPE") points the descriptor at /dev/null, so that
nothing else fails on it, and exits. The console script does that for stdout and stderr
(:func:`guard_standard_streams`); what comes next depends on what the command makes:

* a command whose product is its output (``generate``, ``runs``, ``compare``, any ``--help``)
  stops at the first write to a broken stdout and exits :data:`PIPE_EXIT` (141 = 128 + SIGPIPE),
  the status a shell reports for a Unix tool that SIGPIPE ended: ``set -o pipefail`` sees
  ``lit-nn runs | head -1`` as it sees ``yes | head -1``.
* a command whose product is an MLflow run (``fit``, ``validate``, ``test``, ``predict``,
  ``sweep``, ``lab``, ``server``) keeps working: its further output goes to /dev/null, its run
  ends as it would have, and the exit status is the work's. Closing a pager or ``head`` does not
  ask to throw away an hour of training (Ctrl-C does), and the results are in MLflow, not on stdout.

A broken stderr never stops a command: it carries diagnostics, not the product. A standard
stream that is already closed when the process starts (``lit-nn runs >&-``) is opened on
/dev/null, as a daemon does: the command runs and exits 0 (nothing it printed was cut short:
it went where ``>/dev/null`` sends it), and no file opened later (the SQLite store) can get
descriptor 1 or 2 and be written into by a print.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Final, TextIO

PIPE_EXIT: Final = 128 + signal.SIGPIPE  # 141


class PipeClosed(SystemExit):
    """stdout's reader went away in a command whose product is its output: stop, status 141.

    A ``SystemExit`` like :class:`lit_nn.core.signals.Terminated`: ``except Exception`` never
    swallows it, and the console script exits with its code without a word."""

    def __init__(self) -> None:
        super().__init__(PIPE_EXIT)


_keep_working = False  # the policy of this process's command, see the module's docstring
_stdout_cut = False  # stdout broke while the command's product was its output


class GuardedStream:
    """A standard stream whose broken pipe is a quiet event instead of an error.

    The first ``BrokenPipeError`` points the stream's descriptor at /dev/null (so the buffered
    rest, and every later write, succeed there) and, for stdout of a command that stops on it,
    raises :class:`PipeClosed` (in the main thread only: elsewhere it would end just a thread, a
    progress bar's refresh). Everything else is the wrapped stream's own.
    """

    def __init__(self, stream: TextIO, stops_command: bool) -> None:
        self.stream = stream
        self.stops_command = stops_command
        self.broken = False

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.broke()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.broke()

    def broke(self) -> None:
        global _stdout_cut
        if self.broken:
            return
        self.broken = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())
        finally:
            os.close(devnull)
        if self.stops_command and not _keep_working:
            _stdout_cut = True
            if threading.current_thread() is threading.main_thread():
                raise PipeClosed

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer...: the stream's
        return getattr(self.stream, name)


def open_closed_standard_streams() -> None:
    """Open /dev/null on each of descriptors 0, 1 and 2 that is closed, and give Python a stream
    on it where it has none (``sys.stdout`` is None when fd 1 was closed at start)."""
    for fd, name, flags, mode in ((0, "stdin", os.O_RDONLY, "r"), (1, "stdout", os.O_WRONLY, "w"),
                                  (2, "stderr", os.O_WRONLY, "w")):
        closed = not _is_open(fd)
        if closed:
            null = os.open(os.devnull, flags)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            # closed at start but open now: a file opened since took the descriptor; leave it be
            target = fd if closed else os.open(os.devnull, flags)
            stream = open(target, mode, encoding="utf-8", errors="backslashreplace", closefd=not closed)
            setattr(sys, name, stream)
            setattr(sys, f"__{name}__", stream)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def guard_standard_streams(keep_working: bool) -> None:
    """For the console script, before any library is imported (their loggers keep the stream
    they find): closed standard descriptors opened on /dev/null, stdout and stderr guarded.

    ``keep_working``: the command's product is a run, not its output (see the module's docstring).
    """
    global _keep_working
    _keep_working = keep_working
    open_closed_standard_streams()
    if not isinstance(sys.stdout, GuardedStream):
        sys.stdout = GuardedStream(sys.stdout, stops_command=True)
    if not isinstance(sys.stderr, GuardedStream):
        sys.stderr = GuardedStream(sys.stderr, stops_command=False)


def final_status(code: int) -> int:
    """The process's exit status: ``code``, or :data:`PIPE_EXIT` when the command ended normally
    but its output was cut (a broken pipe found only by the last flush)."""
    return PIPE_EXIT if code == 0 and _stdout_cut else code
