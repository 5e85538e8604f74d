"""One MLflow run lifecycle for every lit-nn command.

A run is opened with its tags and ends with exactly one of FINISHED, FAILED or KILLED, and a
run that ends other than FINISHED always says why (the ``failure_reason`` tag). Fits end
through the Lightning logger (:class:`lit_nn.tracking.logger.MLflowTracker`), labs and the
sweep's parent run through :func:`tracked_run`, sweep points and dead runs through the
sweep and :func:`lit_nn.tracking.liveness.reap_dead_runs`; all of them through :func:`end_run`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.tracking.store import standard_tags

MAX_REASON = 5000  # MLflow tag values are limited; a reason is a sentence, not a log
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


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
        """How a run that raised ``error`` ends: KILLED for an interrupt, FAILED otherwise."""
        if error is None:
            return cls.FINISHED
        return cls.KILLED if isinstance(error, KeyboardInterrupt) else cls.FAILED


def failure_reason(error: BaseException) -> str:
    """One line saying why a run failed: a lit-nn ``UserError`` anywhere in the chain wins
    (jsonargparse and Lightning wrap the errors raised inside them)."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
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


def reopen_run(client: Any, run_id: str) -> None:
    """Mark an ended run RUNNING again (resuming it): the old failure reason no longer holds."""
    client.update_run(run_id, status=RunStatus.RUNNING.value)
    if Tag.FAILURE_REASON in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, Tag.FAILURE_REASON)


class TrackedRun:
    """An open run: its id, its client, and the outcome to record when the block ends.

    The block's own exceptions decide the outcome (FAILED, or KILLED for Ctrl-C); a block that
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
    Ctrl-C, FAILED with the error as reason otherwise; the exception is re-raised.
    """
    all_tags = {**standard_tags(), **(tags or {})}
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
    else:
        for key, value in all_tags.items():
            client.set_tag(run_id, key, value)
        reopen_run(client, run_id)
    run = TrackedRun(client, run_id)
    try:
        yield run
    except BaseException as err:
        end_run(client, run_id, RunStatus.of(err), failure_reason(err))
        raise
    end_run(client, run_id, run.status, run.reason)
