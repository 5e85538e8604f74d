"""One sweep in one tracking store: the value the driver, the claims, the runner and the report take.

A sweep is known in the store by its experiment and its name. Its parent run, its point runs,
the claims on its points and the Optuna studies of its arms are all named from that pair, here
and nowhere else, so no part of a sweep's path can act on another sweep's runs by deriving the
pair differently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lit_nn.core.names import Tag

if TYPE_CHECKING:
    from lit_nn.sweeps.grid import SweepSpec
    from lit_nn.sweeps.tune import TuneSpec

PARENT, POINT = "parent", "point"  # the sweep_role tag of the parent run and of the point runs


def runs_filter(sweep: str, role: str = POINT, phase: str | None = None) -> str:
    """The MLflow search filter for a sweep's parent run or its point runs (of one phase)."""
    found = f"tags.{Tag.SWEEP} = '{sweep}' and tags.{Tag.SWEEP_ROLE} = '{role}'"
    return found + (f" and tags.{Tag.PHASE} = '{phase}'" if phase else "")


@dataclass(frozen=True)
class Sweep:
    """A sweep in the tracking store: its name and experiment, its checked file (``spec``; None
    when it is known by name only, as ``lit-nn compare NAME`` and the workers know it) and its
    parent run once there is one."""

    name: str
    experiment_id: str
    spec: SweepSpec | None = None
    parent_run_id: str | None = None

    @classmethod
    def of(cls, spec: SweepSpec, experiment_id: str) -> Sweep:
        return cls(spec.name, experiment_id, spec)

    def with_parent(self, run_id: str) -> Sweep:
        return replace(self, parent_run_id=run_id)

    @property
    def key(self) -> str:
        """The short, store-wide key of (experiment, name): claims and studies are named under it."""
        return hashlib.sha256(f"{self.experiment_id}\0{self.name}".encode()).hexdigest()[:16]

    @property
    def tune(self) -> TuneSpec:
        """The tuning section of a tuned sweep's file (a caller that asks knows the sweep is tuned)."""
        assert self.spec is not None and self.spec.tune is not None, f"sweep {self.name!r} is not tuned"
        return self.spec.tune

    def study_name(self, arm: str) -> str:
        """The Optuna study of one arm: one study per arm, so each arm's sampler and pruner see only
        its own trials, and its budget is counted on its own."""
        return f"lit-nn/{self.key}/{arm}"

    def filter(self, role: str = POINT, phase: str | None = None) -> str:
        return runs_filter(self.name, role, phase)

    def point_runs(self, client: Any, phase: str | None = None) -> list[Any]:
        """Every (active) point run of the sweep (of one phase of a tuned sweep), under any parent."""
        from lit_nn.tracking.listing import search_all_runs

        return search_all_runs(client, [self.experiment_id], self.filter(POINT, phase))
