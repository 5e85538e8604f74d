"""A tracking server that stops answering: how long lit-nn waits for it, and what it says then.

MLflow's REST client already retries every request that gets no answer (connection refused or
reset, a timeout) or a transient error (HTTP 408, 429, 5xx): urllib3's ``Retry``, the first retry
at once, then waits of ``backoff_factor`` × 2, 4, 8 … s (each at most 120 s, urllib3's cap, plus
up to ``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` s), ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` times
(MLflow's defaults, 7 and 2: about 4 minutes). A fit whose server comes back within that time goes
on where it was; a retried ``log-batch`` writes no row twice (the server drops a metric row equal
to one it has, key, step, value and timestamp). What was missing, and what this module adds:

* the wait is one setting, ``LIT_NN_TRACKING_RETRY_S`` (seconds), mapped onto MLflow's: backoff
  factor 1 (waits of 0, 2, 4, 8 … 120 s, so a server back from a short restart is seen within
  seconds) and as many retries as it takes for the waits to add up to the setting. Unset, MLflow's
  own settings stand (its defaults, or ``MLFLOW_HTTP_REQUEST_*`` set by the user), and the wait
  they add up to is the one lit-nn reports;
* one ``warning:`` line when a request first finds the server gone, instead of minutes of silence;
* once the wait is over, one sentence (:class:`TrackingServerDown`) instead of a traceback, and
  no second wait to record the run's end: the logger tries that once (:func:`no_retries`), and a run
  left RUNNING is what ``lit-nn runs --cleanup`` marks KILLED.

Each attempt itself may take up to ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (MLflow's default 120 s) when
the server's machine does not even refuse the connection (it is off, or the network is cut);
lit-nn leaves that timeout alone, since a slow upload must not be cut short.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from lit_nn.compat.mlflow import allow_http_retries
from lit_nn.core.errors import UserError

RETRY_ENV = "LIT_NN_TRACKING_RETRY_S"
MAX_RETRY_S = 24 * 3600
BACKOFF_CAP_S = 120.0  # urllib3's Retry.DEFAULT_BACKOFF_MAX, which MLflow does not change


class TrackingServerDown(UserError):
    """The tracking server did not answer for the whole retry window; the message says what to do.

    Exit status 1, not a user's mistake's 2: the same command works once the server is back."""

    exit_code = 1


def backoff_total(retries: int, factor: float) -> float:
    """Seconds urllib3 waits over ``retries`` retries (jitter aside): 0, then factor × 2, 4 … capped at 120."""
    return sum(min(factor * 2**k, BACKOFF_CAP_S) for k in range(1, retries))


def retries_for(window_s: float) -> int:
    """The fewest retries whose waits (backoff factor 1) add up to at least ``window_s``."""
    retries = 0
    while backoff_total(retries, 1) < window_s:
        retries += 1
    return retries


def retry_window_s() -> float:
    """How long a request waits for the server with MLflow's settings as they are now."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    return backoff_total(MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get())


def configure_retries(uri: str) -> float:
    """Before talking to the server at ``uri``: MLflow's retries from ``LIT_NN_TRACKING_RETRY_S``
    (when set), and the one-line notice of a server gone; returns the wait in seconds."""
    raw = os.environ.get(RETRY_ENV, "").strip()
    if raw:
        try:
            window = float(raw)
        except ValueError:
            window = -1.0
        if not 0 <= window <= MAX_RETRY_S:
            raise UserError(f"{RETRY_ENV}={raw!r} is not a number of seconds from 0 to {MAX_RETRY_S} "
                            "(how long to wait for a tracking server that stops answering; default: MLflow's ~4 min)")
        retries = retries_for(window)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
        allow_http_retries(retries)  # above MLflow's cap of 10, which it enforces otherwise
    window = retry_window_s()
    _install_notice(uri, window)
    return window


# -- the notice ------------------------------------------------------------------------------
class _RetryNotice(logging.Filter):
    """urllib3 logs each retry after a failed connection as a warning (with the host in the record
    attribute ``__urllib3-retry-warning``, put there for pip to rewrite it); nothing shows it
    (urllib3's logger has a NullHandler). For the tracking server's host this prints one line per
    request when the server first refuses or misses a new connection (not for a kept-alive
    connection the server closed, which urllib3 reopens at once), and drops urllib3's record."""

    def __init__(self, uri: str, window: float) -> None:
        super().__init__()
        self.uri, self.window = uri.rstrip("/"), window
        self.host = urlsplit(uri).hostname

    def filter(self, record: logging.LogRecord) -> bool:
        info = getattr(record, "__urllib3-retry-warning", None)
        if not isinstance(info, dict) or info.get("host") != self.host:
            return True
        retry = record.args[0] if isinstance(record.args, tuple) and record.args else None
        failed_connects = [h for h in getattr(retry, "history", ()) if _is_new_connection_failure(h.error)]
        if len(failed_connects) == 1 and failed_connects[0] is retry.history[-1]:
            print(f"warning: the tracking server at {self.uri} is not answering ({_why(failed_connects[0].error)}); "
                  f"waiting up to {self.window:.0f} s for it ({RETRY_ENV})", file=sys.stderr, flush=True)
        return False


def _install_notice(uri: str, window: float) -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    for old in [f for f in logger.filters if isinstance(f, _RetryNotice)]:
        logger.removeFilter(old)
    logger.addFilter(_RetryNotice(uri, window))


def _is_new_connection_failure(error: BaseException | None) -> bool:
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    return isinstance(error, NewConnectionError | ConnectTimeoutError)


def _why(error: BaseException | None) -> str:
    """A few words for a failed request: 'connection refused', 'timed out', 'HTTP 503 responses'."""
    text = str(error)
    for needle, words in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("No route to host", "no route to host"),
                          ("Connection reset", "connection reset"), ("RemoteDisconnected", "connection closed")):
        if needle in text:
            return words
    for code in ("500", "502", "503", "504", "408", "429"):
        if f"too many {code} error responses" in text:
            return f"HTTP {code} responses"
    return type(error).__name__ if error is not None else "no answer"


# -- after the wait --------------------------------------------------------------------------
def unanswered(error: BaseException | None, uri: str) -> str | None:
    """If ``error`` (or an error it wraps) is MLflow giving up on the tracking server at ``uri``
    after its retries, a few words saying how it failed; else None."""
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    server = urlsplit(uri).netloc
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, requests.ConnectionError | requests.Timeout | requests.exceptions.RetryError):
            request = getattr(error, "request", None)
            if request is None or urlsplit(request.url or "").netloc == server:
                return _why(error)
        error = error.__cause__ or error.__context__
    return None


def server_down_reason(uri: str, why: str) -> str:
    """The first half of the sentence: which server, for how long, how it failed."""
    return (f"the tracking server at {uri.rstrip('/')} did not answer for {retry_window_s():.0f} s ({why}; "
            f"{RETRY_ENV} sets the wait)")


def server_down(error: BaseException, uri: str, run_id: str | None = None,
                last_checkpoint: Path | None = None) -> TrackingServerDown | None:
    """The sentence for a command that ``error`` ended because the server at ``uri`` stopped
    answering (None for any other error): for a fit, where its last checkpoint is and how to
    resume it once the server is back."""
    why = unanswered(error, uri)
    if why is None:
        return None
    sentence = server_down_reason(uri, why)
    if run_id is not None and last_checkpoint is not None and last_checkpoint.is_file():
        folder = last_checkpoint.parent.parent.parent  # <folder>/checkpoints/<run id>/last.ckpt
        where = "" if folder == Path.cwd().resolve() else f"cd {folder} && "
        sentence += (f"; the run's last checkpoint is {last_checkpoint}; once the server answers, resume the run "
                     f"with: {where}lit-nn fit --resume {run_id}")
    elif run_id is not None:
        sentence += (f"; run {run_id} had written no checkpoint yet; once the server answers, run the same command "
                     "again")
    else:
        sentence += "; run the command again once the server answers"
    return TrackingServerDown(sentence)


@contextmanager
def no_retries(timeout_s: int = 5) -> Iterator[None]:
    """MLflow requests inside the block are tried once, each for at most ``timeout_s``: after a
    whole retry window without an answer, recording the run's end must not wait a second one."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
