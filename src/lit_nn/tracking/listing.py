"""Reading runs back from the store: every page of a search, and the plain-text runs table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from lit_nn.core.names import Metric, Tag
from lit_nn.tracking.lifecycle import RunStatus

STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")


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
        acc = {k: f"{metrics[k]:.4f}" if k in metrics else "-" for k in (Metric.VAL_ACC, Metric.TEST_ACC)}
        note = tags.get(Tag.FAILURE_REASON, "") if run.info.status in (RunStatus.FAILED, RunStatus.KILLED) else ""
        if tags.get(Tag.SWEEP_ROLE) == "parent":
            note = f"sweep parent of '{tags.get(Tag.SWEEP)}'"
        rows.append((run.info.run_id[:8], experiment_names.get(run.info.experiment_id, "?"),
                     (run.info.run_name or "")[:32], run.info.status, _fmt_time(run.info.start_time),
                     _fmt_duration(run), acc[Metric.VAL_ACC], acc[Metric.TEST_ACC], note[:70]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
