"""The verdict's statistics against cases with known answers, and the confirm seeds."""

from __future__ import annotations

import pytest

from lit_nn.sweeps.tune import confirm_seeds
from lit_nn.sweeps.verdict import (
    ArmScore,
    expected_best,
    seeds_to_resolve,
    t_test_power,
    tukey_pairs,
    verdict_sentence,
)

# scipy.stats.tukey_hsd's docstring example
GROUPS = {"g0": (24.5, 23.5, 26.4, 27.1, 29.9), "g1": (28.4, 34.2, 29.5, 32.2, 30.1), "g2": (26.1, 28.3, 24.3, 26.2, 27.8)}


def test_tukey_intervals_match_scipys_documented_example():
    pairs = {(p.a, p.b): p for p in tukey_pairs([ArmScore(k, v) for k, v in GROUPS.items()])}
    p = pairs[("g1", "g0")]  # ranked best first: g1 − g0 = −(g0 − g1)
    assert p.difference == pytest.approx(4.600, abs=1e-3)
    assert (p.low, p.high) == (pytest.approx(0.951, abs=1e-3), pytest.approx(8.249, abs=1e-3))
    assert p.resolved and p.seeds_needed is None
    unresolved = pairs[("g2", "g0")]
    assert not unresolved.resolved and unresolved.seeds_needed is not None and unresolved.seeds_needed > 5


def test_power_of_a_two_sample_t_test_at_effect_half():
    assert t_test_power(0.5, 63) == pytest.approx(0.7952, abs=1e-4)
    assert t_test_power(0.5, 64) == pytest.approx(0.8015, abs=1e-4)
    assert seeds_to_resolve(0.5) == 64
    assert seeds_to_resolve(0.2) == 394  # Cohen's table: small effect
    assert seeds_to_resolve(0.0) is None and seeds_to_resolve(1e-4) is None  # not resolvable


def test_expected_best_after_k_trials():
    assert expected_best([1, 2, 3, 4], 2) == pytest.approx(3.125)
    assert expected_best([4, 1, 3, 2], 1) == pytest.approx(2.5)  # one draw: the mean
    assert expected_best([1, 2, 3, 4], 50) == pytest.approx(4, abs=1e-5)  # many draws: the max
    assert expected_best([1, 2, 3, 4], 2, higher_is_better=False) == pytest.approx(1.875)


def test_the_interval_of_an_arm_and_the_sentence():
    arm = ArmScore("a", (0.8, 0.82, 0.84))
    low, high = arm.interval()
    assert low < arm.mean < high and arm.mean == pytest.approx(0.82)
    same = [ArmScore("a", (0.8, 0.81, 0.82)), ArmScore("b", (0.805, 0.8, 0.815))]
    assert "no pair is resolved" in verdict_sentence(tukey_pairs(same), same, "test_acc", 3)
    apart = [ArmScore("a", (0.90, 0.91, 0.92)), ArmScore("b", (0.50, 0.51, 0.52))]
    assert "1 of 1 pairs are resolved on test_acc: a > b" in verdict_sentence(tukey_pairs(apart), apart,
                                                                                       "test_acc", 3)


def test_confirm_seeds_are_disjoint_from_the_tuning_seeds():
    assert confirm_seeds(3, [0]) == [1000, 1001, 1002]
    assert confirm_seeds(3, [1001, 7]) == [1000, 1002, 1003]
