"""The ``tune:`` section of a sweep file: the same tuning budget for every arm of a comparison.

An *arm* is one setting of the sweep (a point or a grid cell: an optimizer, a depth). Comparing
arms each run at one hand-picked learning rate ranks the picks, not the arms (Choi et al. 2019;
Sivaprasad et al. 2020), so a tuned sweep gives every arm ``trials`` runs over its own search
space, chosen by one sampler and judged by one validation objective.

Trial ``k`` of an arm is a budget *slot*, and a slot is a sweep point like any other: it has a
config hash, is claimed in the tracking store, runs on the sweep's workers or Ray, and a re-run
skips it once FINISHED. That is what makes the budget exact under ``kill -9`` and with several
drivers: there are ``trials`` slots per arm and the claims run each once. What a slot trains is

- for ``qmc`` (the default) and ``random``: row ``k`` of a design fixed by ``seed`` before
  anything runs (a scrambled Sobol sequence, ``scipy.stats.qmc``), so a resumed sweep or a
  second driver evaluates exactly the settings an uninterrupted one would; arms whose spaces
  have the same shape get the same design rows, so they are tried at the same settings;
- for ``tpe``: asked from the arm's Optuna study when the slot starts, given the trials so far.

Every slot is an Optuna trial too (ask, then tell: :mod:`lit_nn.sweeps.study`), so pruners and
TPE see the arm's history and the study records each trial's state, pruned ones as PRUNED.
This module is the spec and the design; it imports neither Optuna nor Lightning.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from lit_nn.core.errors import UserError, unknown_choice

SAMPLERS = ("qmc", "tpe", "random")
PRUNERS = ("none", "median", "hyperband")
EDGE = 0.05  # a best value in the outer 5 % of its range: the range may be too narrow


@dataclass(frozen=True)
class Dimension:
    """One searched config key: a float or int range (``low``, ``high``, ``log``), or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    def check(self, key: str) -> None:
        """One sentence naming ``key`` for a range that cannot be searched."""
        where = f"tune.space.{key}"
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise UserError(f"{where}: give either choices or low/high, not both")
            if not self.choices:
                raise UserError(f"{where}: choices must not be empty")
            return
        if self.low is None or self.high is None:
            raise UserError(f"{where}: a range needs both low and high (or give choices)")
        if not self.low < self.high:
            raise UserError(f"{where}: low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise UserError(f"{where}: a log range needs low > 0, got {self.low:g}")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise UserError(f"{where}: an integer range needs whole numbers, got {self.low:g}..{self.high:g}")

    def at(self, u: float) -> Any:
        """The value at ``u`` in [0, 1): uniform in the range (in log space for ``log``)."""
        if self.choices is not None:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        assert self.low is not None and self.high is not None
        if self.integer:
            lo, hi = int(self.low), int(self.high)
            if self.log:
                return min(hi, max(lo, round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))))
            return lo + min(int(u * (hi - lo + 1)), hi - lo)
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return float(f"{value:.6g}")  # readable params and run pages; far finer than any effect

    def position(self, value: Any) -> float | None:
        """Where ``value`` lies in the range, 0 (low) to 1 (high), in log space for ``log``; None for choices."""
        if self.choices is not None or self.low is None or self.high is None:
            return None
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def describe(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        kind = ("int " if self.integer else "") + ("log " if self.log else "")
        return f"{kind}[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Objective:
    """What a trial is judged by: a metric of its run (validation only) and whether higher is better.

    Args:
        metric: the run metric a trial is scored by; a validation metric (the test split is the
            confirm phase's), e.g. best_val_acc or best_val_loss.
        direction: maximize or minimize the metric.
    """

    metric: str = "best_val_acc"
    direction: Literal["maximize", "minimize"] = "maximize"

    @property
    def per_epoch(self) -> str:
        """The per-epoch metric a pruner watches: ``best_val_acc`` is judged by ``val_acc`` each epoch."""
        return self.metric.removeprefix("best_")

    @property
    def test_metric(self) -> str:
        """What the confirm runs are judged by: the objective's test-split twin (``test_acc``)."""
        return "test_" + self.per_epoch.removeprefix("val_")

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


@dataclass(frozen=True)
class Confirm:
    """The confirm phase: each arm's chosen setting re-run on fresh seeds, judged on the test split.

    Args:
        seeds: runs per arm on seeds disjoint from the tuning seeds (1000, 1001, ...); 0: no
            confirm phase, else at least 2 (an interval needs two).
    """

    seeds: int = 0


CONFIRM_SEED_BASE = 1000  # confirm seeds are 1000, 1001, ...: disjoint from the tuning seed


def confirm_seeds(count: int, tuning: list[int]) -> list[int]:
    """``count`` seeds for the confirm runs, none of them a seed of the tuning phase (weights,
    split and shuffle all come from the seed keys, so a disjoint seed is a fresh draw of each)."""
    out, seed = [], CONFIRM_SEED_BASE
    while len(out) < count:
        if seed not in tuning:
            out.append(seed)
        seed += 1
    return out


@dataclass(frozen=True)
class TuneSpec:
    """A sweep file's ``tune:`` section (documented in docs/sweeps.md and ``lit-nn sweep --help``).

    Args:
        trials: runs per arm, the same for every arm (the budget).
        space: dotted config key -> range or choices, searched for every arm; a point's own
            ``space:`` adds to it or replaces keys of it for that arm.
        sampler: qmc (scrambled Sobol, seeded), tpe (Optuna's TPE) or random (seeded).
        seed: the sampler's seed. Trials train with the sweep's first seed.
        objective: the validation metric each trial is judged by, and its direction.
        pruner: none, median or hyperband: stop a trial early when its per-epoch validation
            metric trails the arm's other trials (recorded as pruned, never as failed).
        storage: where the Optuna studies live; default: a journal file beside a local store,
            the same PostgreSQL database for a postgresql:// store.
        confirm: after an arm's budget is spent, its best setting runs on fresh seeds and
            the report's verdict compares the arms on the test split.
    """

    trials: int = 8
    space: dict[str, Dimension] = field(default_factory=dict)
    sampler: Literal["qmc", "tpe", "random"] = "qmc"
    seed: int = 0
    objective: Objective = field(default_factory=Objective)
    pruner: Literal["none", "median", "hyperband"] = "median"
    storage: str | None = None
    confirm: Confirm = field(default_factory=Confirm)

    def check(self) -> None:
        if self.trials < 1:
            raise UserError(f"tune.trials must be >= 1 (the runs each arm gets), got {self.trials}")
        if self.confirm.seeds < 0 or self.confirm.seeds == 1:
            raise UserError(f"tune.confirm.seeds must be 0 (no confirm phase) or >= 2 (an interval needs two "
                            f"seeds), got {self.confirm.seeds}")
        for key, dim in self.space.items():
            dim.check(key)
        if self.objective.direction not in ("maximize", "minimize"):
            raise UserError(f"tune.objective.direction must be maximize or minimize, got "
                            f"{self.objective.direction!r}")

    def identity(self) -> dict[str, Any]:
        """What makes a slot's result: everything but the budget (more trials keep the first ones)
        and where the study is stored."""
        out = asdict(self)
        for key in ("trials", "storage", "confirm"):
            out.pop(key)
        return out


def parse_tune(raw: Any, overrides: list[str] = (), where: str = "sweep") -> TuneSpec:
    """Check a ``tune:`` mapping (and ``--tune.KEY VALUE`` overrides) with jsonargparse: an unknown
    key or a wrong type is its one-line error, naming the key; ranges are checked here."""
    from jsonargparse import ArgumentParser

    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"{where}: 'tune' must be a mapping (trials, space, sampler, ...), got {raw!r}")
    parser = ArgumentParser(exit_on_error=False, prog="tune", allow_abbrev=False)
    parser.add_argument("--tune", type=TuneSpec, default=TuneSpec())
    try:
        config = parser.parse_object({"tune": copy.deepcopy(raw or {})})  # it fills in what it read
        if overrides:
            config = parser.parse_args(list(overrides), namespace=config)
        spec = parser.instantiate(config).tune
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - jsonargparse's ArgumentError and the dataclasses' ValueError
        groups = {"tune": TuneSpec, "tune.objective": Objective, "tune.confirm": Confirm}
        raise UserError(f"{where}: {jsonargparse_sentence(str(err), groups)}") from None
    spec.check()
    return spec


def jsonargparse_sentence(message: str, groups: dict[str, type]) -> str:
    """jsonargparse's (multi-line) message as one sentence naming the key, e.g.
    ``tune.trials must be an int, got 'x'``; ``groups``: the dataclass behind each group, for
    the valid keys of an unknown one (``""``: the top level)."""
    if m := re.search(r"Group '([\w.]+)' does not accept option '([\w.]+)'", message):
        full = ".".join(m.groups())  # the deepest group the key lies in: tune.confirm for tune.confirm.sedes
        group = max((g for g in groups if g and full.startswith(g + ".")), key=len, default=m.group(1))
        key = full[len(group) + 1:].split(".")[0]
        return str(unknown_choice("key", f"{group}.{key}",
                                  [f"{group}.{f.name}" for f in fields(groups.get(group, Dimension))]))
    if m := re.search(r"Option '([\w.]+)' is not accepted", message):
        key = m.group(1).split(".")[0]
        if "Dimension" in message or "" not in groups:
            return str(unknown_choice("key in a tune.space entry", key, [f.name for f in fields(Dimension)]))
        return str(unknown_choice("key", key, [f.name for f in fields(groups[""])]))
    key = m.group(1) if (m := re.search(r'Parser key "([\w.]+)"', message)) else "tune"
    given = m.group(1).strip() if (m := re.search(r"Got value: (.+)", message)) else "?"
    if m := re.search(r"Literal\[([^\]]*)\]", message):
        return f"{key} must be one of {m.group(1)}, got {given!r}"
    if m := re.search(r"Expected a <class '(\w+)'>", message):
        group, _, name = key.rpartition(".")
        hint = {f.name: str(f.type) for f in fields(groups[group])}.get(name, "") if group in groups else ""
        within = ("each value of " if hint.startswith("dict[") and m.group(1) != "dict" else
                  "each entry of " if hint.startswith("list[") and m.group(1) != "list" else "")
        kind = {"dict": "mapping"}.get(m.group(1), m.group(1))
        return f"{within}{key} must be {'an' if kind == 'int' else 'a'} {kind}, got {given!r}"
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def merged_space(tune: TuneSpec, own: dict[str, Dimension] | None) -> dict[str, Dimension]:
    """An arm's search space: the shared one with the arm's own ``space`` over it."""
    return {**tune.space, **(own or {})}


def design(space: dict[str, Dimension], trials: int, sampler: str, seed: int) -> list[dict[str, Any]] | None:
    """The settings of slots ``0 .. trials-1`` for a fixed-design sampler (None for tpe).

    The Sobol sequence is drawn in powers of two (its balance property) and cut to ``trials``:
    the first rows of a longer design are those of a shorter one, so raising the budget keeps
    the trials already run. Its first point is scrambled away from the lower corner.
    """
    if sampler == "tpe" or not space:
        return None if sampler == "tpe" else [{} for _ in range(trials)]
    import numpy as np

    names = sorted(space)
    if sampler == "qmc":
        from scipy.stats import qmc

        rows = qmc.Sobol(len(names), scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(trials))))
    else:
        rows = np.random.default_rng(seed).random((trials, len(names)))
    return [{name: space[name].at(float(rows[k, i])) for i, name in enumerate(names)} for k in range(trials)]


def edge_warnings(space: dict[str, Dimension], best: dict[str, Any]) -> list[str]:
    """Parameters whose best value lies in the outer 5 % of their range: widen the range."""
    out = []
    for key, value in best.items():
        dim = space.get(key)
        pos = dim.position(value) if dim is not None else None
        if pos is None:
            continue
        if pos <= EDGE or pos >= 1 - EDGE:
            side = "low" if pos <= EDGE else "high"
            out.append(f"{key} = {value:g} is at the {side} end of {dim.describe()}: widen the range")
    return out
