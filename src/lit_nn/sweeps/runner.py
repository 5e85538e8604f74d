"""Run sweep points on a pool of worker processes and settle how each one ended in MLflow.

The sweep process only coordinates: it hands one point at a time to each worker
(``lit_nn.sweeps.worker``), waits on their result pipes, and after every point makes sure the
point's MLflow run tells the truth: a point that failed before its run existed (a bad option)
gets a FAILED run with the reason; a run left RUNNING by a worker that died is marked FAILED
(or KILLED after an interrupt). So every attempted point ends as exactly one terminated run
with a ``config_hash`` tag, which is what resuming relies on.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lit_nn.core.errors import UserError, check_positive
from lit_nn.core.names import Tag
from lit_nn.core.signals import SIGTERM_EXIT, SIGTERM_REASON, Terminated, is_sigterm
from lit_nn.sweeps.grid import Point
from lit_nn.sweeps.sweep import Sweep
from lit_nn.sweeps.worker import SKIPPED
from lit_nn.tracking.lifecycle import RunStatus, end_run
from lit_nn.tracking.store import standard_tags

INTERRUPT_GRACE_S = 90.0


@dataclass
class Job:
    """A point on its way to a worker: the command-line arguments and where its output goes."""

    point: Point
    argv: list[str]
    log: Path
    own_process: bool
    experiment_id: str = ""
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = 0.0
    claim: dict[str, Any] | None = None  # how the worker claims the point (lit_nn.sweeps.worker.run_claimed)
    tune: dict[str, Any] | None = None  # a tuned sweep's slot: its study and space (lit_nn.sweeps.study.TrialSlot)

    def message(self) -> str:
        return json.dumps({"argv": self.argv, "log": str(self.log), "attempt": self.attempt,
                           "own_process": self.own_process, "experiment_id": self.experiment_id,
                           "claim": self.claim, "tune": self.tune})


@dataclass
class Outcome:
    """How a point ended: its run, final status, reason and headline metrics."""

    point: Point
    status: str
    run_id: str | None
    reason: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class Worker:
    """One worker process and the job it is running (if any)."""

    def __init__(self, command: list[str], env: dict[str, str], slot: int = 0) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1, env=env)
        self.slot = slot  # the worker's place in the pool: its GPUs; a replacement takes over the place
        self.job: Job | None = None

    @property
    def stdout(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def send(self, job: Job) -> None:
        assert self.proc.stdin is not None
        job.started = time.monotonic()
        self.job = job
        self.proc.stdin.write(job.message() + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass


def pin_gpus(workers: int, gpus: Sequence[str], per_point: int = 1) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES``: worker ``i`` gets the ``i``-th block of ``per_point``
    consecutive GPUs of ``gpus``, round-robin over the ``len(gpus) // per_point`` blocks when there
    are more workers than blocks (GPUs left over by the division go unused). Without GPUs every
    worker gets None: its environment is left as it is.

    ``gpus`` are ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs) of the GPUs the sweep may use.
    """
    check_positive("--gpus_per_point", per_point)
    if not gpus:
        return [None] * workers
    if per_point > len(gpus):
        raise UserError(f"--gpus_per_point {per_point} asks for more GPUs per point than the {len(gpus)} "
                        f"this machine has ({','.join(gpus)}); use at most {len(gpus)}")
    blocks = len(gpus) // per_point
    return [",".join(gpus[(i % blocks) * per_point:(i % blocks + 1) * per_point]) for i in range(workers)]


def worker_env(threads: int | None, visible_gpus: str | None = None) -> dict[str, str]:
    """A worker's environment, with ``threads`` CPU threads (None: leave torch's default) and, when
    given, ``CUDA_VISIBLE_DEVICES=visible_gpus`` (None: the sweep's own setting, if any).

    Parallelism comes from the workers; on MNIST-sized models one thread per worker is as
    fast as several on an idle machine and far faster on a busy one (OpenMP threads that
    wait for a descheduled sibling spin: a 3-epoch MLP run took 51 s with 2 threads and 9 s
    with 1 on the 2 shared cores of the development machine).
    """
    env = {**os.environ, "LIT_NN_SWEEP_PID": str(os.getpid()), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if visible_gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_gpus
    return env


def run_jobs(jobs: list[Job], workers: int, settle: Callable[[Job, dict[str, Any]], None],
             worker_command: list[str], threads: int | None = 1,
             pins: Sequence[str | None] | None = None) -> bool:
    """Run ``jobs`` on up to ``workers`` processes; call ``settle(job, result)`` after each.

    ``worker_command`` starts one worker (a process serving :func:`lit_nn.sweeps.worker.serve`).
    ``pins[i]`` is the ``CUDA_VISIBLE_DEVICES`` of the ``i``-th worker (:func:`pin_gpus`); a worker
    started in place of one that died gets the same GPUs.

    Returns False when interrupted (Ctrl-C, SIGTERM): running points are stopped gracefully, by
    the same signal (their runs end KILLED), settled, and the remaining jobs are not started.
    """
    pending = deque(jobs)
    pool: list[Worker] = []
    selector = selectors.DefaultSelector()
    pins = list(pins) if pins is not None else [None] * workers

    def start_worker() -> Worker:
        slot = min(set(range(workers)) - {w.slot for w in pool})
        return Worker(worker_command, worker_env(threads, pins[slot]), slot)

    def retire(worker: Worker, result: dict[str, Any] | None) -> None:
        selector.unregister(worker.stdout)
        worker.close()
        code = worker.proc.wait()
        pool.remove(worker)
        if worker.job is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            died = ({"status": RunStatus.KILLED.value, "error": SIGTERM_REASON} if code in (SIGTERM_EXIT, -signal.SIGTERM)
                    else {"status": RunStatus.FAILED.value, "error": f"the worker process died ({how})"})
            settle(worker.job, result or died)
            worker.job = None

    def step(timeout: float) -> None:
        for key, _ in selector.select(timeout):
            worker: Worker = key.data
            line = worker.stdout.readline()
            if not line:
                retire(worker, None)
                continue
            result = json.loads(line)
            job, worker.job = worker.job, None
            if job is not None:
                settle(job, result)

    try:
        while pending or any(w.job for w in pool):
            # a worker per job waiting for one, at most ``workers``: never more processes than points
            while len(pending) > sum(w.job is None for w in pool) and len(pool) < workers:
                worker = start_worker()
                pool.append(worker)
                selector.register(worker.stdout, selectors.EVENT_READ, worker)
            for worker in pool:
                if worker.job is None and pending:
                    worker.send(pending.popleft())
            step(timeout=5.0)
        return True
    except (KeyboardInterrupt, Terminated) as stop:
        _interrupt(pool, step, signal.SIGTERM if is_sigterm(stop) else signal.SIGINT)
        return False
    finally:
        for worker in list(pool):
            worker.close()
        for worker in list(pool):
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        selector.close()


def _interrupt(pool: list[Worker], step: Callable[[float], None], sig: int = signal.SIGINT) -> None:
    """Stop the running points with ``sig`` (what stopped the sweep: Ctrl-C's SIGINT, or SIGTERM)
    in each worker; wait for them to record KILLED."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for worker in pool:
        if worker.proc.poll() is None:
            worker.proc.send_signal(sig)  # also reaches workers when only the sweep got it
    why = SIGTERM_REASON if sig == signal.SIGTERM else "interrupted"
    print(f"\nsweep: {why} — stopping the running points (Ctrl-C again to kill them at once)",
          file=sys.stderr, flush=True)
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    try:
        while any(w.job for w in pool) and time.monotonic() < deadline:
            step(1.0)
    except KeyboardInterrupt:
        pass
    for worker in pool:
        if worker.proc.poll() is None:
            worker.proc.kill()  # their runs stay RUNNING; the next sweep reaps them as KILLED


# -- settling outcomes in MLflow -------------------------------------------------------------
def find_attempt_run(client: Any, experiment_id: str, attempt: str) -> Any | None:
    """The run a point attempt created, found by its ``sweep_attempt`` tag."""
    runs = client.search_runs([experiment_id], f"tags.{Tag.SWEEP_ATTEMPT} = '{attempt}'", max_results=5)
    return runs[0] if runs else None


def settle_in_mlflow(client: Any, sweep: Sweep, job: Job, result: dict[str, Any]) -> Outcome:
    """Make the point's MLflow run (under ``sweep``'s parent run) match what happened; return the outcome."""
    point, experiment_id = job.point, sweep.experiment_id
    if result.get("status") == SKIPPED:  # another sweep has (or finished) the point: nothing of ours to settle
        return Outcome(point, SKIPPED, None, result.get("error", ""), time.monotonic() - job.started)
    status = RunStatus(result.get("status", RunStatus.FAILED))
    reason = result.get("error", "")
    ended = RunStatus.KILLED if status is RunStatus.KILLED else RunStatus.FAILED  # if the run never ended itself
    run = find_attempt_run(client, experiment_id, job.attempt)
    if run is None:
        status, reason = ended, reason or "the point ended before its MLflow run was created"
        tags = {**point.tags(sweep.name, sweep.parent_run_id), Tag.SWEEP_ATTEMPT: job.attempt, **standard_tags()}
        run_id = client.create_run(experiment_id, run_name=point.run_name, tags=tags).info.run_id
        end_run(client, run_id, status, reason)
    else:
        run_id = run.info.run_id
        if run.info.status == RunStatus.RUNNING:
            status, reason = ended, reason or "the run was left RUNNING"
            end_run(client, run_id, status, reason)
        else:
            status = RunStatus(run.info.status)
            reason = run.data.tags.get(Tag.FAILURE_REASON) or reason
    if job.log.is_file():
        try:
            client.log_artifact(run_id, str(job.log))
        except Exception:  # noqa: BLE001 - the log is a convenience; the status is what matters
            pass
    metrics = dict(run.data.metrics) if run is not None else {}
    if run is not None and status is RunStatus.FINISHED:
        metrics = dict(client.get_run(run_id).data.metrics)
    return Outcome(point, status, run_id, reason if status is not RunStatus.FINISHED else "",
                   time.monotonic() - job.started, metrics)


# -- the closing summary -----------------------------------------------------------------------
SHOWN_NAMES = 3  # run names listed per reason before "and N more"
SUMMARY_REASON_CHARS = 400


def summarize_failures(outcomes: Sequence[Outcome], total: int) -> str:
    """The sweep's closing line(s) about the points that did not finish, grouped by reason.

    Twenty-one points failing for one reason (data that is not there) is one line, "21 of 21
    points failed: <reason> (a-s0, a-s1, a-s2 and 18 more)", not the reason 21 times; points
    that failed for different reasons get one indented line per reason under a count, the most
    common first. FINISHED and SKIPPED outcomes are not failures. Empty when nothing failed.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for outcome in outcomes:
        if outcome.status in (RunStatus.FINISHED, SKIPPED):
            continue
        reason = " ".join(outcome.reason.split()) or "no reason recorded"
        if len(reason) > SUMMARY_REASON_CHARS:
            reason = reason[: SUMMARY_REASON_CHARS - 1] + "…"
        groups.setdefault((str(outcome.status), reason), []).append(outcome.point.run_name)
    if not groups:
        return ""
    failed = sum(len(names) for names in groups.values())
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))  # stable: first seen first among equals

    def said(status: str, count: int) -> str:
        return {"FAILED": "failed", "KILLED": "was killed" if count == 1 else "were killed"}.get(status, status)

    if len(ordered) == 1:
        (status, reason), names = ordered[0]
        return f"{failed} of {total} points {said(status, failed)}: {reason} ({few_names(names)})"
    lines = [f"{failed} of {total} points did not finish, for {len(ordered)} reasons:"]
    lines += [f"  {len(names)} {said(status, len(names))}: {reason} ({few_names(names)})"
              for (status, reason), names in ordered]
    return "\n".join(lines)


def few_names(names: Sequence[str], shown: int = SHOWN_NAMES) -> str:
    """``a, b, c and 18 more``: enough names of runs to find them, never a wall of them."""
    if len(names) <= shown + 1:  # "and 1 more" says no less than the name itself
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"
