"""Claiming a sweep before running it: one sweep of a name at a time, no point trained twice.

Before deciding what to run, RUNNING runs whose process is gone are reaped (marked KILLED); a
RUNNING run whose process is alive on this host is an orphan of a sweep that was just killed
(its worker is shutting down) and is waited for, so a point is never trained twice at once.
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
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.sweeps.plan import point_runs, sweep_filter
from lit_nn.tracking.lifecycle import RunStatus
from lit_nn.tracking.listing import search_all_runs
from lit_nn.tracking.liveness import reap_dead_runs, run_process_alive


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
        live = [r for r in runs if r.info.status == RunStatus.RUNNING and run_process_alive(r, host)]
        if not live or time.monotonic() >= deadline:
            return runs
        if not announced:
            print(f"sweep: waiting up to {timeout:.0f} s for {len(live)} run(s) of an earlier, stopped sweep "
                  "to finish shutting down", flush=True)
            announced = True
        time.sleep(poll)


def find_parent(client: Any, experiment_id: str, sweep: str) -> str | None:
    """The sweep's parent run (one per sweep name and experiment, the first one created), if any."""
    found = search_all_runs(client, [experiment_id], sweep_filter(sweep, "parent"),
                            order_by=["attributes.start_time ASC"])
    return found[0].info.run_id if found else None


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
