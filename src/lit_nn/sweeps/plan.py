"""What a (re-)run of a sweep must do with each point: run it, or skip it as done or running.

A point is identified by its ``config_hash`` tag. A re-run skips a point with a FINISHED run
of the same hash and runs it again when its runs are FAILED, KILLED or missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lit_nn.core.names import Tag
from lit_nn.sweeps.grid import Point
from lit_nn.tracking.lifecycle import RunStatus


@dataclass(frozen=True)
class Decision:
    """What to do with one point, and why."""

    point: Point
    action: str          # "run" | "done" | "running"
    note: str = ""       # e.g. "FINISHED run 1a2b3c4d", "previous: FAILED"
    run_id: str | None = None


DIVERGED = "training diverged"  # how lit_nn.models.base words a NaN or exploding loss


def diverged(run: Any) -> bool:
    """A run that FAILED because its loss diverged: for a tuning trial, a result (its setting is
    too aggressive), not a fault to retry."""
    return run.info.status == RunStatus.FAILED and run.data.tags.get(Tag.FAILURE_REASON, "").startswith(DIVERGED)


def decide(points: list[Point], runs: list[Any], force: bool = False) -> list[Decision]:
    """Skip FINISHED and live RUNNING points (FINISHED ones too unless ``force``); run the rest."""
    by_hash: dict[str, list[Any]] = {}
    for run in runs:
        by_hash.setdefault(run.data.tags.get(Tag.CONFIG_HASH, ""), []).append(run)
    decisions = []
    for point in points:
        found = sorted(by_hash.get(point.config_hash, []), key=lambda r: r.info.start_time or 0)
        running = [r for r in found if r.info.status == RunStatus.RUNNING]
        finished = [r for r in found if r.info.status == RunStatus.FINISHED
                    or (point.phase == "tune" and diverged(r))]  # a diverged trial is a trial's result
        if running:
            r = running[-1]
            where = f"pid {r.data.tags.get(Tag.PID, '?')} on {r.data.tags.get(Tag.HOST, '?')}"
            decisions.append(Decision(point, "running", f"RUNNING run {r.info.run_id[:8]} ({where})",
                                      r.info.run_id))
        elif finished and not force:
            r = finished[-1]
            decisions.append(Decision(point, "done", f"{'diverged' if diverged(r) else 'FINISHED'} run "
                                                     f"{r.info.run_id[:8]}", r.info.run_id))
        else:
            note = f"previous: {found[-1].info.status}" if found else "new"
            if finished and force:
                note = "forced"
            decisions.append(Decision(point, "run", note))
    return decisions


def done_summary(decisions: list[Decision]) -> str:
    """How many points a re-run skips as done, e.g. "14 already FINISHED", or "14 already done (13
    FINISHED, 1 diverged trial)" when some are diverged tuning trials (done, but not FINISHED)."""
    done = [d for d in decisions if d.action == "done"]
    failed = sum(d.note.startswith("diverged") for d in done)
    if not failed:
        return f"{len(done)} already FINISHED"
    return f"{len(done)} already done ({len(done) - failed} FINISHED, {failed} diverged trial{'s' * (failed > 1)})"
