"""The verdict of a tuned comparison: which arms differ on held-out data, and what the rest would take.

Pure statistics over numbers read from the confirm runs (each arm's chosen setting re-run on
fresh seeds and scored on the test split) and the tuning trials:

- each arm's mean test score with its 95 % Student-t interval over the confirm seeds;
- every pair's difference with Tukey HSD simultaneous 95 % intervals (``scipy.stats.tukey_hsd``).
  Tukey, not Holm over Welch tests: the arms have equal seed counts, the question is every pair
  at once, and Tukey's intervals hold for all pairs together (Holm adjusts p-values, not
  intervals, so it could say "resolved" without an interval to show for it);
- for a pair the seeds leave unresolved, the seeds per arm that would resolve the observed
  difference with 80 % power, at the observed spread, by a two-sample t-test at a Bonferroni
  level 0.05 / (number of pairs) (the noncentral t; a slightly conservative stand-in for Tukey);
- the expected best validation score after k trials (Dodge et al. 2019's closed form), which
  shows how hard an arm is to tune, not only how well it tunes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

POWER = 0.8
ALPHA = 0.05
MAX_SEEDS = 10_000  # beyond this a difference is called not resolvable


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile for a ``level`` interval with ``df`` degrees of freedom
    (the one every interval of the reports uses)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class ArmScore:
    """An arm's confirm-run scores: mean and 95 % interval."""

    arm: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        from scipy import stats

        n = len(self.values)
        if n < 2:
            return (self.mean, self.mean)
        sd = float(stats.tstd(self.values))
        half = t_quantile(n - 1, level) * sd / math.sqrt(n)
        return (float(self.mean - half), float(self.mean + half))


@dataclass(frozen=True)
class Pair:
    """Arm ``a`` minus arm ``b`` (a ranked above b), with its simultaneous interval."""

    a: str
    b: str
    difference: float
    low: float
    high: float
    seeds_needed: int | None = None  # per arm, to resolve it at 80 % power; None when resolved or hopeless

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0


def tukey_pairs(arms: Sequence[ArmScore], higher_is_better: bool = True) -> list[Pair]:
    """Every pair, best arm first in each, with Tukey HSD 95 % intervals and, for pairs the
    interval does not resolve, the seeds per arm that would (see :func:`seeds_to_resolve`)."""
    from scipy import stats

    if len(arms) < 2:
        return []
    ranked = sorted(arms, key=lambda a: a.mean, reverse=higher_is_better)
    result = stats.tukey_hsd(*[list(a.values) for a in ranked])
    ci = result.confidence_interval(1 - ALPHA)
    pairs = []
    m = len(ranked) * (len(ranked) - 1) // 2
    for i, j in itertools.combinations(range(len(ranked)), 2):
        a, b = ranked[i], ranked[j]
        diff, low, high = float(result.statistic[i, j]), float(ci.low[i, j]), float(ci.high[i, j])
        pair = Pair(a.arm, b.arm, diff, low, high)
        if not pair.resolved:
            sd = pooled_sd(a.values, b.values)
            effect = abs(diff) / sd if sd > 0 else (math.inf if diff else 0.0)
            pair = Pair(a.arm, b.arm, diff, low, high, seeds_to_resolve(effect, ALPHA / m))
        pairs.append(pair)
    return pairs


def pooled_sd(x: Sequence[float], y: Sequence[float]) -> float:
    """The pooled standard deviation of two samples (what a two-sample t-test assumes)."""
    nx, ny = len(x), len(y)
    mx, my = sum(x) / nx, sum(y) / ny
    ss = sum((v - mx) ** 2 for v in x) + sum((v - my) ** 2 for v in y)
    return math.sqrt(ss / (nx + ny - 2)) if nx + ny > 2 else 0.0


def t_test_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided two-sample t-test with ``n`` per group at standardized effect ``effect``."""
    from scipy import stats

    df = 2 * n - 2
    critical = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n / 2)
    return float(stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc))


def seeds_to_resolve(effect: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The smallest ``n`` per group with :func:`t_test_power` ≥ ``power``; None beyond MAX_SEEDS
    (a difference too small against the spread to be worth resolving)."""
    if effect <= 0:
        return None
    if math.isinf(effect):
        return 2
    high = 2
    while t_test_power(effect, high, alpha) < power:  # double up to the first n that is enough ...
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = max(2, high // 2)
    while low < high:  # ... then bisect down to the smallest (power grows with n)
        mid = (low + high) // 2
        if t_test_power(effect, mid, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return low


def expected_best(values: Sequence[float], k: int, higher_is_better: bool = True) -> float:
    """The expected best of ``k`` trials drawn with replacement from ``values`` (Dodge et al. 2019):
    E[max of k] = Σᵢ vᵢ·((i/N)^k − ((i−1)/N)^k) over the N values sorted ascending."""
    ordered = sorted(values if higher_is_better else [-v for v in values])
    n = len(ordered)
    total = sum(v * ((i / n) ** k - ((i - 1) / n) ** k) for i, v in enumerate(ordered, 1))
    return total if higher_is_better else -total


def verdict_sentence(pairs: Sequence[Pair], arms: Sequence[ArmScore], metric: str, seeds: int) -> str:
    """One sentence: the pairs the confirm seeds resolve and the order they support."""
    resolved = [p for p in pairs if p.resolved]
    if not pairs:
        return "One arm: nothing to compare."
    if not resolved:
        return (f"With {seeds} confirm seeds per arm no pair is resolved: every Tukey interval of the "
                f"{metric} differences includes 0, so the seeds support no ranking yet.")
    listed = "; ".join(f"{p.a} > {p.b} ({p.difference:+.4f} [{p.low:+.4f}, {p.high:+.4f}])" for p in resolved)
    return (f"With {seeds} confirm seeds per arm, {len(resolved)} of {len(pairs)} pairs are resolved on "
            f"{metric}: {listed}; the other pairs' intervals include 0.")
