"""``lit-nn runs``: list MLflow runs, and mark runs whose process died as KILLED.

A run that is killed hard (``kill -9``, an OOM kill, a power cut) cannot tell MLflow that it
ended, so it stays RUNNING forever and a resumed sweep would wait for it or skip it. Every
lit-nn run carries ``host`` and ``pid`` tags (see ``tracking.process_tags``); on the same
host a RUNNING run whose process is gone, or whose pid now belongs to a process that started
after the run did (pid reuse), is dead. Runs of other hosts are left alone: from here we
cannot tell whether they are alive.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from lit_nn.errors import UserError, unknown_choice

STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")
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
    pid = tags.get("pid", "")
    if tags.get("host") != host or not pid.isdigit():
        return None
    started_ms = max(run.info.start_time, int(tags.get("resumed_at", "0") or 0))  # a resume has a new pid
    return process_alive(int(pid), started_before=started_ms / 1000.0)


# -- reading runs ----------------------------------------------------------------------------
def search_all_runs(client: Any, experiment_ids: Sequence[str], filter_string: str = "",
                    order_by: list[str] | None = None) -> list[Any]:
    """Every active run matching the filter, following MLflow's page tokens."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string, max_results=1000,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def reap_dead_runs(client: Any, experiment_ids: Iterable[str]) -> list[str]:
    """Mark this host's RUNNING runs whose process is gone as KILLED; return their ids.

    The reason goes into the ``failure_reason`` tag. Called by ``lit-nn runs --cleanup`` and
    by ``lit-nn sweep`` before it decides which points are done, running or to be re-run.
    """
    host = socket.gethostname()
    reaped = []
    for run in search_all_runs(client, list(experiment_ids), "attributes.status = 'RUNNING'"):
        if run_process_alive(run, host) is False:
            run_id = run.info.run_id
            reason = REAPED_REASON.format(pid=run.data.tags.get("pid"), host=host)
            client.set_tag(run_id, "failure_reason", reason)
            client.set_terminated(run_id, "KILLED")
            reaped.append(run_id)
    return reaped


# -- the command ---------------------------------------------------------------------------
def _fmt_time(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _fmt_duration(run: Any) -> str:
    start, end = run.info.start_time, run.info.end_time
    if not start:
        return "-"
    seconds = ((end or time.time() * 1000) - start) / 1000
    return f"{seconds:.0f}s" if seconds < 600 else f"{seconds / 60:.0f}m"


def format_runs(runs: Sequence[Any], experiment_names: dict[str, str]) -> str:
    """A plain-text table: id, experiment, name, status, start, duration, accuracies, reason."""
    header = ("run", "experiment", "name", "status", "started", "took", "val_acc", "test_acc", "note")
    rows = [header]
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        acc = {k: f"{metrics[k]:.4f}" if k in metrics else "-" for k in ("val_acc", "test_acc")}
        note = tags.get("failure_reason", "") if run.info.status in ("FAILED", "KILLED") else ""
        if tags.get("sweep_role") == "parent":
            note = f"sweep parent of '{tags.get('sweep')}'"
        rows.append((run.info.run_id[:8], experiment_names.get(run.info.experiment_id, "?"),
                     (run.info.run_name or "")[:32], run.info.status, _fmt_time(run.info.start_time),
                     _fmt_duration(run), acc["val_acc"], acc["test_acc"], note[:70]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-nn runs", description="List MLflow runs; with --cleanup, mark runs whose process died "
        "as KILLED (a kill -9 leaves them RUNNING forever).")
    parser.add_argument("--experiment", action="append", default=None,
                        help="experiment name (repeatable; default: every experiment)")
    parser.add_argument("--status", default=None, help=f"only runs with this status: {', '.join(STATUSES)}")
    parser.add_argument("--limit", type=int, default=50, help="show at most this many runs, newest first")
    parser.add_argument("--cleanup", action="store_true",
                        help="mark RUNNING runs of this host whose process is gone as KILLED, then list")
    return parser


def main(argv: list[str] | None = None) -> None:
    """``lit-nn runs [--experiment NAME] [--status S] [--limit N] [--cleanup]``."""
    args = _parser().parse_args(argv)
    if args.limit <= 0:
        raise UserError(f"--limit must be > 0, got {args.limit}")
    status = args.status.upper() if args.status else None
    if status and status not in STATUSES:
        raise unknown_choice("status", args.status, STATUSES)
    from mlflow.tracking import MlflowClient

    from lit_nn.tracking import prepare_store

    client = MlflowClient(prepare_store())
    experiments = client.search_experiments()
    names = {e.experiment_id: e.name for e in experiments}
    if args.experiment:
        by_name = {e.name: e.experiment_id for e in experiments}
        for name in args.experiment:
            if name not in by_name:
                raise unknown_choice("experiment", name, sorted(by_name) or ["(none yet)"])
        ids = [by_name[name] for name in args.experiment]
    else:
        ids = list(names)
    if not ids:
        print("no experiments yet: train something first (lit-nn fit -c experiments/mnist_cnn.yaml)")
        return
    if args.cleanup:
        reaped = reap_dead_runs(client, ids)
        print(f"cleanup: marked {len(reaped)} dead RUNNING run(s) as KILLED"
              + (f": {', '.join(r[:8] for r in reaped)}" if reaped else ""))
    filter_string = f"attributes.status = '{status}'" if status else ""
    runs = client.search_runs(ids, filter_string, max_results=args.limit, order_by=["attributes.start_time DESC"])
    if not runs:
        print("no runs" + (f" with status {status}" if status else ""))
        return
    print(format_runs(runs, names))
