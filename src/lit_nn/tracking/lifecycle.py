"""One MLflow run lifecycle for every lit-nn command.

A run is opened with its tags and ends with exactly one of FINISHED, FAILED or KILLED, and a
run that ends other than FINISHED always says why (the ``failure_reason`` tag). Fits end
through the Lightning logger (:class:`lit_nn.tracking.logger.MLflowTracker`), labs and the
sweep's parent run through :func:`tracked_run`, sweep points and dead runs through the
sweep and :func:`lit_nn.tracking.liveness.reap_dead_runs`; all of them through :func:`end_run`.
Ctrl-C and SIGTERM end a run KILLED, each with its own reason; :func:`end_runs_on_interrupt`
makes sure no interrupt leaves a run of the command RUNNING.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.core.signals import SIGTERM_REASON, is_sigterm
from lit_nn.tracking.outage import no_retries
from lit_nn.tracking.store import standard_tags

MAX_REASON = 5000  # MLflow tag values are limited; a reason is a sentence, not a log
INTERRUPTED = "interrupted (Ctrl-C)"
# runs this process opened (or reopened) and has not ended yet: what end_runs_on_interrupt ends
_open_runs: dict[str, Any] = {}


class RunStatus(str, Enum):
    """MLflow's run statuses that lit-nn writes (``str`` so MLflow's client takes them as is)."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def of(cls, error: BaseException | None) -> RunStatus:
        """How a run that raised ``error`` ends: KILLED for an interrupt (Ctrl-C, SIGTERM), FAILED otherwise."""
        if error is None:
            return cls.FINISHED
        return cls.KILLED if is_interrupt(error) else cls.FAILED


def is_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a signal stopping the process (Ctrl-C, SIGTERM) rather than a failure."""
    return isinstance(error, KeyboardInterrupt) or is_sigterm(error)


def failure_reason(error: BaseException, uri: str | None = None) -> str:
    """One line saying why a run failed: a lit-nn ``UserError`` anywhere in the chain wins
    (jsonargparse and Lightning wrap the errors raised inside them), then, given the store's
    ``uri``, the sentence for a fault of the store (:mod:`lit_nn.tracking.faults`)."""
    if uri is not None:
        from lit_nn.tracking.faults import describe_fault

        if (fault := describe_fault(error, uri)) is not None:
            return fault
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if is_sigterm(error):
        return SIGTERM_REASON
    seen: set[int] = set()
    cur: BaseException | None = error
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return str(cur)
        cur = cur.__cause__ or cur.__context__
    return f"{type(error).__name__}: {error}"[:MAX_REASON]


def end_run(client: Any, run_id: str, status: RunStatus | str, reason: str = "",
            end_time: int | None = None) -> None:
    """Write how a run ended: the one place lit-nn sets a run's end status.

    Every status but FINISHED carries a ``failure_reason`` (``reason``, or a generic one).
    ``end_time`` (ms) defaults to now; a copied run keeps its source's.
    """
    status = RunStatus(status)
    if status is RunStatus.RUNNING:
        raise ValueError("end_run needs an end status: FINISHED, FAILED or KILLED")
    if status is not RunStatus.FINISHED:
        text = reason.strip() or f"ended {status.value} without a recorded reason"
        client.set_tag(run_id, Tag.FAILURE_REASON, text[:MAX_REASON])
    client.set_terminated(run_id, status.value, end_time)
    _open_runs.pop(run_id, None)


def reopen_run(client: Any, run_id: str) -> None:
    """Mark an ended run RUNNING again (resuming it): the old failure reason no longer holds."""
    client.update_run(run_id, status=RunStatus.RUNNING.value)
    watch_run(client, run_id)
    if Tag.FAILURE_REASON in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, Tag.FAILURE_REASON)


def watch_run(client: Any, run_id: str) -> None:
    """Note that this process has ``run_id`` open until :func:`end_run` ends it, so that an interrupt
    arriving where nothing else would end the run (a resumed fit before its Trainer starts, a signal
    in the middle of ending it) still does not leave it RUNNING."""
    _open_runs[run_id] = client


@contextmanager
def end_runs_on_interrupt() -> Iterator[None]:
    """Around a whole command: when Ctrl-C or SIGTERM stops it, every run it opened that is still
    RUNNING ends KILLED with the interrupt's reason (one try each: the process is on its way out)."""
    _open_runs.clear()
    try:
        yield
    except BaseException as err:
        if is_interrupt(err):
            end_open_runs(RunStatus.KILLED, failure_reason(err))
        raise
    finally:
        _open_runs.clear()


def end_open_runs(status: RunStatus, reason: str) -> list[str]:
    """End every run this process opened that is still RUNNING (one try each: the command is on its
    way out, on an interrupt or an error); return the ids of those the store would not let end."""
    left = []
    for run_id, client in list(_open_runs.items()):
        try:
            with no_retries():
                if client.get_run(run_id).info.status == RunStatus.RUNNING:
                    end_run(client, run_id, status, reason)
        except Exception:  # noqa: BLE001 - a store that is down or read-only cannot be helped here
            left.append(run_id)
        _open_runs.pop(run_id, None)
    return left


class TrackedRun:
    """An open run: its id, its client, and the outcome to record when the block ends.

    The block's own exceptions decide the outcome (FAILED, or KILLED for Ctrl-C and SIGTERM); a block that
    ends normally but did not succeed says so with :meth:`end_as`.
    """

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.status, self.reason = RunStatus.FINISHED, ""

    def end_as(self, status: RunStatus, reason: str = "") -> None:
        """Record ``status`` (and why) instead of FINISHED when the block ends without an exception."""
        self.status, self.reason = RunStatus(status), reason

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))


@contextmanager
def tracked_run(client: Any, experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None,
                run_id: str | None = None) -> Iterator[TrackedRun]:
    """Open a new run (or reopen ``run_id``) with lit-nn's standard tags; end it on exit.

    FINISHED when the block completes (unless it called ``end_as``), KILLED with a reason on
    Ctrl-C or SIGTERM, FAILED with the error as reason otherwise; the exception is re-raised.
    """
    all_tags = {**standard_tags(), **(tags or {})}
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
        watch_run(client, run_id)
    else:
        for key, value in all_tags.items():
            client.set_tag(run_id, key, value)
        reopen_run(client, run_id)
    run = TrackedRun(client, run_id)
    try:
        yield run
    except BaseException as err:
        end_run(client, run_id, RunStatus.of(err), failure_reason(err, client.tracking_uri))
        raise
    end_run(client, run_id, run.status, run.reason)
