"""Tuned sweeps: what the tuning engine costs per trial, and what the default pruner saves.

* **Driver overhead.** The same trainings run twice through ``lit-nn sweep``: as a plain sweep
  whose points are the settings the tuned sweep's design draws, and as the tuned sweep (pruner
  ``none``), which also asks and tells each arm's Optuna study and writes the trial's config.
  Neither runs the test split (tuning trials never do).
  Per-trial time is the sweep's own per-point time (claim, training, settling); rounds alternate
  the two so that load on a shared machine hits both alike.
* **Pruning.** The same tuned sweep with the default pruner (``median``) and with none: the
  trial-epochs each trained, and each arm's best validation score both ways.

Every sweep runs in a fresh store with one worker, on the embedded MNIST sample.
"""

from __future__ import annotations

import copy
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import fmt_s, log, markdown_table, verdict

ARMS = [{"name": "sgd", "model.optimizer": "sgd"}, {"name": "adam", "model.optimizer": "adam"}]
SPACE = {"model.lr": {"low": 1.0e-4, "high": 1.0, "log": True}}
LINE = re.compile(r"^\[\s*\d+/\d+\]\s+(\S+)\s+(\w+)\s.*\(([\d.]+) s\)$")


def base(quick: bool) -> dict[str, Any]:
    return {
        "config": {
            "seed_everything": 0,
            "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1, "hidden": 64}},
            "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
            "trainer": {"devices": 1, "accelerator": "cpu", "max_epochs": 2 if quick else 4,
                        "limit_train_batches": 5 if quick else 30, "log_every_n_steps": 10},
        },
        "seeds": [0],
    }


def sweep_files(folder: Path, trials: int, quick: bool) -> dict[str, Path]:
    """The tuned sweep (with and without pruner) and the plain sweep of the same settings."""
    from lit_nn.sweeps.grid import expand, parse_sweep

    tuned = {**base(quick), "name": "tuned", "points": ARMS, "tune": {"trials": trials, "space": SPACE}}
    files = {}
    for pruner in ("none", "median"):
        sweep = copy.deepcopy(tuned)
        sweep["tune"]["pruner"] = pruner
        files[f"tuned_{pruner}"] = folder / f"tuned_{pruner}.yaml"
        files[f"tuned_{pruner}"].write_text(yaml.safe_dump(sweep, sort_keys=False))
    points = [{**arm, "name": f"{p.label}_t{p.trial}", **p.params}
              for p in expand(parse_sweep(tuned)) for arm in ARMS if arm["name"] == p.label]
    files["plain"] = folder / "plain.yaml"
    files["plain"].write_text(yaml.safe_dump({**base(quick), "name": "tuned", "points": points}, sort_keys=False))
    return files


def run_sweep(path: Path, folder: Path) -> dict[str, Any]:
    """``lit-nn sweep PATH`` in a fresh store; per-point seconds and the store it left."""
    store = Path(tempfile.mkdtemp(prefix="store-", dir=folder))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-m", "lit_nn", "sweep", str(path), "--workers", "1", "--report", "false",
                           "--out", str(folder / "out"), "--log_checkpoint", "false", "--log_model", "false",
                           "--test_after_fit", "false"],  # tuning trials never test: nor do the plain points here
                          cwd=folder, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"lit-nn sweep {path.name} failed: {done.stderr[-2000:]}")
    seconds = {m.group(1): float(m.group(3)) for line in done.stdout.splitlines() if (m := LINE.match(line))}
    return {"seconds": seconds, "uri": env["MLFLOW_TRACKING_URI"]}


def trial_epochs(uri: str) -> dict[str, Any]:
    """Per arm: epochs trained by all trials, trials pruned, and the best best_val_acc of an unpruned trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tuned")
    out: dict[str, Any] = {}
    for run in client.search_runs([exp.experiment_id], "tags.phase = 'tune'", max_results=1000):
        arm = out.setdefault(run.data.tags["tune_arm"], {"epochs": 0, "pruned": 0, "best": None})
        pruned = run.data.tags.get("tune_state") == "pruned"
        arm["epochs"] += len(client.get_metric_history(run.info.run_id, "val_acc"))
        arm["pruned"] += pruned
        score = run.data.metrics.get("best_val_acc")
        if not pruned and score is not None and (arm["best"] is None or score > arm["best"]):
            arm["best"] = score
    return out


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    trials = 2 if quick else 8
    rounds = rounds or (1 if quick else 2)
    with tempfile.TemporaryDirectory(prefix="lit-nn-bench-tuning-") as tmp:
        folder = Path(tmp)
        files = sweep_files(folder, trials, quick)
        per_round = []
        pruning: dict[str, Any] = {}
        for r in range(rounds):
            order = ("plain", "tuned_none") if r % 2 == 0 else ("tuned_none", "plain")
            timed = {}
            for name in order:
                log(f"tuning: round {r + 1}/{rounds}, {name}")
                timed[name] = run_sweep(files[name], folder)
            plain = sum(timed["plain"]["seconds"].values())
            tuned = sum(timed["tuned_none"]["seconds"].values())
            per_round.append({"plain_s": plain, "tuned_s": tuned, "ratio": tuned / plain})
            if r == 0:
                pruning["none"] = trial_epochs(timed["tuned_none"]["uri"])
        log("tuning: the same tuned sweep with the median pruner")
        pruning["median"] = trial_epochs(run_sweep(files["tuned_median"], folder)["uri"])
    n = trials * len(ARMS)
    return {"trials": n, "rounds": per_round, "ratio": statistics.median(r["ratio"] for r in per_round),
            "per_trial_plain_s": statistics.median(r["plain_s"] for r in per_round) / n,
            "per_trial_tuned_s": statistics.median(r["tuned_s"] for r in per_round) / n,
            "pruning": pruning, "max_epochs": base(quick)["config"]["trainer"]["max_epochs"]}


def report(result: dict[str, Any]) -> str:
    overhead = result["ratio"] - 1
    rounds = ", ".join(f"{r['ratio']:.3f}" for r in result["rounds"])
    lines = ["## Tuned sweeps: driver overhead and pruning", "",
             f"{result['trials']} trials (2 arms, MLP on the MNIST sample, {result['max_epochs']} epochs), one worker, "
             "`python -m benchmarks --only tuning`.", "",
             markdown_table(["measure", "plain sweep points", "tuned sweep trials", "tuned / plain", "target", "met"],
                            [["time per trial (the sweep's per-point time, median of rounds)",
                              fmt_s(result["per_trial_plain_s"]), fmt_s(result["per_trial_tuned_s"]),
                              f"{result['ratio']:.3f} ({overhead:+.1%}; rounds {rounds})", "≤ +3 %",
                              verdict(overhead <= 0.03)]]), ""]
    rows = []
    for arm in sorted(result["pruning"]["none"]):
        none, median = result["pruning"]["none"][arm], result["pruning"]["median"][arm]
        saved = 1 - median["epochs"] / none["epochs"] if none["epochs"] else 0.0
        rows.append([arm, none["epochs"], f"{median['epochs']} ({median['pruned']} pruned)", f"{saved:.0%}",
                     _score(none["best"]), _score(median["best"])])
    lines += [markdown_table(["arm", "trial-epochs, no pruner", "trial-epochs, median pruner", "saved",
                              "best val_acc, no pruner", "best val_acc, median pruner"], rows)]
    return "\n".join(lines)


def _score(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "—"
