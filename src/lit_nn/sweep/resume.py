"""What a (re-)run of a sweep must do: its parent run, which points are done, which to run.

A point is identified by its ``config_hash`` tag. A re-run skips a point with a FINISHED run
of the same hash and runs it again when its runs are FAILED, KILLED or missing. Before
deciding, RUNNING runs whose process is gone are reaped (marked KILLED); a RUNNING run whose
process is alive on this host is an orphan of a sweep that was just killed (its worker is
shutting down) and is waited for, so a point is never trained twice at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_nn.errors import UserError
from lit_nn.runs import reap_dead_runs, run_process_alive, search_all_runs
from lit_nn.sweep.grid import Point
from lit_nn.tracking import process_tags


@dataclass(frozen=True)
class Decision:
    """What to do with one point, and why."""

    point: Point
    action: str          # "run" | "done" | "running"
    note: str = ""       # e.g. "FINISHED run 1a2b3c4d", "previous: FAILED"
    run_id: str | None = None


def sweep_filter(sweep: str, role: str) -> str:
    return f"tags.sweep = '{sweep}' and tags.sweep_role = '{role}'"


def point_runs(client: Any, experiment_id: str, sweep: str) -> list[Any]:
    """Every (active) point run of the sweep in the experiment, under any parent."""
    return search_all_runs(client, [experiment_id], sweep_filter(sweep, "point"))


def decide(points: list[Point], runs: list[Any], force: bool = False) -> list[Decision]:
    """Skip FINISHED and live RUNNING points (FINISHED ones too unless ``force``); run the rest."""
    by_hash: dict[str, list[Any]] = {}
    for run in runs:
        by_hash.setdefault(run.data.tags.get("config_hash", ""), []).append(run)
    decisions = []
    for point in points:
        found = sorted(by_hash.get(point.config_hash, []), key=lambda r: r.info.start_time or 0)
        running = [r for r in found if r.info.status == "RUNNING"]
        finished = [r for r in found if r.info.status == "FINISHED"]
        if running:
            r = running[-1]
            where = f"pid {r.data.tags.get('pid', '?')} on {r.data.tags.get('host', '?')}"
            decisions.append(Decision(point, "running", f"RUNNING run {r.info.run_id[:8]} ({where})",
                                      r.info.run_id))
        elif finished and not force:
            r = finished[-1]
            decisions.append(Decision(point, "done", f"FINISHED run {r.info.run_id[:8]}", r.info.run_id))
        else:
            note = f"previous: {found[-1].info.status}" if found else "new"
            if finished and force:
                note = "forced"
            decisions.append(Decision(point, "run", note))
    return decisions


def wait_for_orphans(client: Any, experiment_id: str, sweep: str, timeout: float,
                     poll: float = 1.0) -> list[Any]:
    """Reap dead RUNNING runs; wait (up to ``timeout``) for this host's live ones to end.

    Called while holding the sweep lock, so a live RUNNING point run on this host belongs to
    a sweep that was killed a moment ago and whose worker is still recording KILLED.
    Returns the point runs afterwards.
    """
    host = socket.gethostname()
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        reap_dead_runs(client, [experiment_id])
        runs = point_runs(client, experiment_id, sweep)
        live = [r for r in runs if r.info.status == "RUNNING" and run_process_alive(r, host)]
        if not live or time.monotonic() >= deadline:
            return runs
        if not announced:
            print(f"sweep: waiting up to {timeout:.0f} s for {len(live)} run(s) of an earlier, stopped sweep "
                  "to finish shutting down", flush=True)
            announced = True
        time.sleep(poll)


def get_or_create_parent(client: Any, experiment_id: str, sweep: str, tags: dict[str, str]) -> str:
    """The sweep's parent run (one per sweep name and experiment), reopened as RUNNING."""
    found = search_all_runs(client, [experiment_id], sweep_filter(sweep, "parent"),
                            order_by=["attributes.start_time ASC"])
    all_tags = {**tags, **process_tags(), "sweep": sweep, "sweep_role": "parent"}
    if found:
        run_id = found[0].info.run_id
        for key, value in all_tags.items():
            client.set_tag(run_id, key, value)
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(experiment_id, run_name=sweep, tags=all_tags).info.run_id


@contextlib.contextmanager
def sweep_lock(uri: str, experiment: str, sweep: str) -> Iterator[None]:
    """One run of a given sweep at a time on this machine (an flock; freed when we die)."""
    key = hashlib.sha256(f"{uri}\0{experiment}\0{sweep}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"lit-nn-sweep-{key}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"sweep {sweep!r} of experiment {experiment!r} is already running here "
                            f"({holder}); wait for it or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
