"""The benchmarks run and produce well-formed numbers (never how fast anything is: that is
``make bench``'s job, on a quiet machine)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not part of the installed package
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def _restore_logger_levels():
    """The benchmarks silence Lightning's loggers process-wide (``quiet_lightning``); put the
    levels back so later in-process CLI tests still see the messages they check."""
    import logging

    names = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_training_benchmark_runs_on_tiny_data(tmp_path: Path) -> None:
    from benchmarks.common import machine_info

    from benchmarks import bench_training, run_all

    chosen = ["cnn_trainer_bar", "cnn_plain", "cnn32_tutorial", "cnn32_trainer_bar"]
    result = bench_training.run(quick=True, rounds=1, epochs=2, only=chosen, n_train=48, workdir=tmp_path,
                                warmup=False)

    assert set(result["variants"]) == set(chosen)
    for name, v in result["variants"].items():
        assert len(v["epochs"]) == 1 and len(v["epochs"][0]) == 2, name
        assert all(_positive(e) for e in v["epochs"][0]), name
        assert _positive(v["epoch_s"]) and _positive(v["samples_per_s"]), name
        assert v["samples"] == 48
    labels = {c["label"]: c for c in result["comparisons"]}
    cnn = labels["CNN: Trainer (as `make train`) / plain loop"]
    assert _positive(cnn["value"]) and cnn["met"] in (True, False) and cnn["target"] == "≤ 1.1×"
    tutorial = labels["CNN batch 32: tutorial loop / lit-nn Trainer"]
    assert _positive(tutorial["value"]) and tutorial["target"] == "≥ 2×"
    # the tutorial loop found the IDX files written for torchvision (it would have tried to download)
    assert (tmp_path / "torchvision" / "MNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 16 + 48 * 784

    section = bench_training.report(result)
    assert "| `cnn_plain` |" in section and "nan" not in section
    args = run_all.parse_args(["--quick", "--out", str(tmp_path / "B.md")])
    text = run_all.render(args, machine_info(1), {"training": result}, {"training": section}, {}, 1.0)
    assert text.startswith("# lit-nn benchmarks") and "QUICK RUN" in text and "## Targets" in text


@pytest.mark.slow  # ~40 s: six tiny fits with an MLflow store
def test_dynamics_benchmark_prices_the_callback_on_tiny_data() -> None:
    from benchmarks import bench_dynamics, run_all

    result = bench_dynamics.run(quick=True, rounds=1, epochs=2, models=("mlp",), intervals=(1,), n_train=64)
    assert set(result["variants"]) == {"mlp_off", "mlp_on", "mlp_every1"}
    assert all(_positive(v["epoch_s"]) for v in result["variants"].values())
    assert set(result["ratios"]) == {"mlp_on", "mlp_every1"}
    assert all(_positive(r["value"]) and _positive(r["wall"]) for r in result["ratios"].values())
    ((label, ratio, met),) = bench_dynamics.targets(result)
    assert "every 50 steps" in label and ratio == result["ratios"]["mlp_on"]["value"] and met in (True, False)
    assert "| `mlp_every1` | every 1 |" in bench_dynamics.report(result)
    assert "per-layer dynamics on" in run_all.summary({"dynamics": result})


@pytest.mark.slow
def test_make_bench_quick_end_to_end(tmp_path: Path) -> None:
    """``python -m benchmarks --quick`` (what ``make bench`` runs, on tiny sizes) writes its files."""
    out, raw = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--threads", "1", "--out", str(out), "--json", str(raw),
         "--only", "training,overhead,accuracy,startup"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    for heading in ("## Targets", "## Training speed", "## Where the Trainer's overhead goes", "## Time to accuracy",
                    "## `make train` from start to finish"):
        assert heading in text
    assert "FAILED" not in text
    numbers = json.loads(raw.read_text())
    assert numbers["machine"]["torch_threads"] == 1
    assert numbers["results"]["startup"]["make_train"]["wall_s"] > 0
    training = numbers["results"]["training"]
    mlflow_cost = [c for c in training["comparisons"] if c["label"].startswith("MLflow logging (per-epoch")]
    assert mlflow_cost and math.isfinite(mlflow_cost[0]["value"])
    assert training["variants"]["cnn_val_mlflow"]["epoch_s"] > 0


def test_char_rnn_throughput_falls_back_to_the_embedded_corpus(tmp_path: Path) -> None:
    """``make bench`` on a clone without ../shared still measures chars/s (on pydoc_data.topics)."""
    from benchmarks import bench_char_rnn

    result = bench_char_rnn.run(text=tmp_path / "absent.txt", steps=2, reps=1, skip_quality=True,
                                overrides=["model.init_args.hidden=32", "data.init_args.batch_size=4"])
    tp = result["throughput"]
    assert "embedded corpus" in result["text"]
    assert _positive(tp["plain_chars_per_s"]) and _positive(tp["lightning_chars_per_s"])
    assert tp["chars_per_step"] == 4 * 64  # batch × seq_len: the overrides reached the batches
    with pytest.raises(SystemExit, match="absent.txt not found"):  # the quality curve needs the real text
        bench_char_rnn.run(text=tmp_path / "absent.txt", skip_throughput=True)


@pytest.mark.slow
def test_tuning_benchmark_times_both_ways_and_counts_trial_epochs() -> None:
    """``python -m benchmarks --only tuning`` on tiny sizes: both ratios are measured, and without
    a pruner every trial trains every epoch."""
    from benchmarks import bench_tuning

    result = bench_tuning.run(quick=True)
    assert math.isfinite(result["ratio"]) and result["ratio"] > 0
    per_arm = result["trials"] // len(bench_tuning.ARMS)
    for arm in ("sgd", "adam"):
        assert result["pruning"]["none"][arm]["epochs"] == per_arm * result["max_epochs"]
        assert result["pruning"]["none"][arm]["pruned"] == 0
        assert result["pruning"]["median"][arm]["epochs"] <= result["pruning"]["none"][arm]["epochs"]
    section = bench_tuning.report(result)
    assert section.startswith("## Tuned sweeps") and "| sgd |" in section and "nan" not in section


def test_default_run_is_scored_over_seeds_as_mean_min_max() -> None:
    """``make bench`` states the default run's official-test accuracy over 5 seeds, not one run's."""
    from benchmarks import bench_startup, run_all

    assert bench_startup.SEEDS == (0, 1, 2, 3, 4)
    seeds = [{"seed": s, "wall_s": 20.0 + s, "official_test": {"accuracy": acc, "images": 10000}}
             for s, acc in enumerate((0.99, 0.985, 0.995, 0.99, 0.99))]
    dist = bench_startup.over_seeds(seeds)
    assert dist["n"] == 5 and dist["mean"] == pytest.approx(0.99) and (dist["min"], dist["max"]) == (0.985, 0.995)
    assert bench_startup.over_seeds([{"seed": 0, "wall_s": 1.0, "official_test": None}]) is None
    startup = {"make_train": {"wall_s": 30.0, "phases": [("start-up", 5.0), ("exit", 1.0)]},
               "official_over_seeds": dist}
    row = next(line for line in run_all.summary({"startup": startup}).splitlines() if "over 5 seeds" in line)
    assert "mean 99.00%, min 98.50%, max 99.50%" in row and "**not met**" in row  # min < 98.8 %
