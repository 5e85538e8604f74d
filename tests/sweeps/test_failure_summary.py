"""The sweep's closing summary groups failed points by reason (issue 24, item 3)."""

from __future__ import annotations

from types import SimpleNamespace

from lit_nn.sweeps.runner import Outcome, summarize_failures

MISSING = ("no Fashion-MNIST train files found (looked in data/FashionMNIST/raw, data, "
           "/usr/share/datasets/fashion-mnist); apt-get install dataset-fashion-mnist")


def outcome(name: str, status: str, reason: str = "") -> Outcome:
    return Outcome(SimpleNamespace(run_name=name), status, run_id=None, reason=reason)  # type: ignore[arg-type]


def test_one_reason_is_said_once_with_a_few_names():
    names = [f"{opt}-s{seed}" for opt in ("sgd", "adam", "adagrad", "rmsprop", "adadelta", "adamw", "nadam")
             for seed in range(3)]
    text = summarize_failures([outcome(n, "FAILED", MISSING) for n in names], total=21)
    assert text == f"21 of 21 points failed: {MISSING} (sgd-s0, sgd-s1, sgd-s2 and 18 more)"
    assert text.count("Fashion-MNIST") == 1 and "\n" not in text


def test_different_reasons_get_a_line_each_most_common_first():
    outcomes = [outcome("a-s0", "FINISHED"), outcome("b-s0", "FAILED", "loss diverged\n at epoch 2"),
                outcome("c-s0", "KILLED", "interrupted"), outcome("d-s0", "FAILED", "out of memory"),
                outcome("e-s0", "FAILED", "out of memory"), outcome("f-s0", "SKIPPED", "another sweep has it"),
                outcome("g-s0", "FAILED", "")]
    assert summarize_failures(outcomes, total=9).splitlines() == [
        "5 of 9 points did not finish, for 4 reasons:",
        "  2 failed: out of memory (d-s0, e-s0)",
        "  1 failed: loss diverged at epoch 2 (b-s0)",  # one line even for a multi-line reason
        "  1 was killed: interrupted (c-s0)",
        "  1 failed: no reason recorded (g-s0)",
    ]


def test_the_same_text_with_another_status_is_another_group():
    text = summarize_failures([outcome("a-s0", "KILLED", "x"), outcome("a-s1", "KILLED", "x"),
                               outcome("b-s0", "FAILED", "x")], total=3)
    assert text.splitlines()[1:] == ["  2 were killed: x (a-s0, a-s1)", "  1 failed: x (b-s0)"]


def test_nothing_failed_is_nothing_to_say_and_names_are_never_a_wall():
    assert summarize_failures([outcome("a-s0", "FINISHED"), outcome("b-s0", "SKIPPED")], total=2) == ""
    assert summarize_failures([], total=0) == ""
    four = summarize_failures([outcome(f"p{i}", "FAILED", "r") for i in range(4)], total=4)
    assert four.endswith("(p0, p1, p2, p3)"), "'and 1 more' would say no less than the name"
    long = summarize_failures([outcome("p", "FAILED", "x" * 5000)], total=1)
    assert len(long) < 500 and long.endswith("… (p)")
