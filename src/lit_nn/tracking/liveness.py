"""Is a RUNNING run still alive? Marking runs whose process died as KILLED.

A run that is killed hard (``kill -9``, an OOM kill, a power cut) cannot tell MLflow that it
ended, so it stays RUNNING forever and a resumed sweep would wait for it or skip it. Every
lit-nn run carries ``host`` and ``pid`` tags (see ``tracking.process_tags``); on the same
host a RUNNING run whose process is gone, or whose pid now belongs to a process that started
after the run did (pid reuse), is dead. Runs of other hosts are left alone: from here we
cannot tell whether they are alive.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from lit_nn.core.names import Tag
from lit_nn.tracking.lifecycle import RunStatus, end_run
from lit_nn.tracking.listing import search_all_runs

REAPED_REASON = "process {pid} on {host} is gone; marked KILLED by lit-nn runs --cleanup"


# -- is a process alive? --------------------------------------------------------------------
@cache
def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where unknown."""
    boot = _boot_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    if boot is None or len(fields) < 20:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int, started_before: float | None = None) -> bool:
    """True if ``pid`` runs on this host (and, when known, started before ``started_before``).

    A zombie counts as dead; a pid that was reused by a process started after the run began
    is not the run's process. ``started_before`` is seconds since the epoch.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    if started_before is not None:
        started = process_start_time(pid)
        if started is not None and started > started_before + 2.0:  # clock-tick slack
            return False
    return True


def run_process_alive(run: Any, host: str | None = None) -> bool | None:
    """Is the process writing ``run`` alive? None when it cannot be told (other host, no tags)."""
    tags = run.data.tags
    host = host or socket.gethostname()
    pid = tags.get(Tag.PID, "")
    if tags.get(Tag.HOST) != host or not pid.isdigit():
        return None
    started_ms = max(run.info.start_time, int(tags.get(Tag.RESUMED_AT, "0") or 0))  # a resume has a new pid
    return process_alive(int(pid), started_before=started_ms / 1000.0)


def reap_dead_runs(client: Any, experiment_ids: Iterable[str]) -> list[str]:
    """Mark this host's RUNNING runs whose process is gone as KILLED; return their ids.

    The reason goes into the ``failure_reason`` tag. Called by ``lit-nn runs --cleanup`` and
    by ``lit-nn sweep`` before it decides which points are done, running or to be re-run.
    """
    host = socket.gethostname()
    reaped = []
    for run in search_all_runs(client, list(experiment_ids), f"attributes.status = '{RunStatus.RUNNING.value}'"):
        if run_process_alive(run, host) is False:
            run_id = run.info.run_id
            reason = REAPED_REASON.format(pid=run.data.tags.get(Tag.PID), host=host)
            end_run(client, run_id, RunStatus.KILLED, reason)
            reaped.append(run_id)
    return reaped
