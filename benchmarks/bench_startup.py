"""``make train`` from start to finish, and how much of it is start-up rather than training.

Runs the real command — ``lit-nn fit -c experiments/mnist_cnn.yaml`` — as a subprocess
against a temporary MLflow store, and splits its wall time with the timestamps MLflow itself
recorded (run start, each epoch's metrics, the test metrics, run end), then scores the run's
best checkpoint once on the official 10,000-image MNIST test set when ``../shared/data/mnist-t10k``
is there (the run itself trains and validates on the embedded sample). The same command then runs
with seeds 1-4 (``--seed_everything s --data.init_args.seed s``: weights, train/val split and
augmentation), so the official-test accuracy is reported over 5 seeds as mean, min and max: one
seed's figure is not a property of the default run. Separately it times a
bare interpreter and ``import lit_nn.cli.train`` in fresh processes, the fixed cost of every
``lit-nn`` command.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, fmt_s, log, markdown_table

OFFICIAL_TEST = REPO.parent / "shared" / "data" / "mnist-t10k"  # t10k-{images,labels}-idx?-ubyte.gz
SEEDS = (0, 1, 2, 3, 4)  # seed 0 is make train itself (the config's seed_everything and data seed)


def _wall(args: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = 900) -> tuple[float, str]:
    start = time.time()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def lit_nn_command() -> list[str]:
    """The console script ``make train`` calls, beside this interpreter (``-m lit_nn`` as a fallback)."""
    script = Path(sys.executable).parent / "lit-nn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lit_nn"]


IMPORT_PROBES = {
    "python_s": "pass",
    "import_cli_s": "import lit_nn.cli.train",
    # the same, but the heap is frozen before exit: the interpreter's final garbage collections
    # then skip the ~10^5-10^6 objects torch, Lightning and MLflow leave behind
    "import_cli_freeze_s": "import gc, lit_nn.cli.train; gc.freeze()",
    # how the lit-nn command ends: atexit handlers, then no interpreter finalization at all
    "import_cli_exit_now_s": ("from lit_nn.cli.main import skip_finalization_at_exit; skip_finalization_at_exit(); "
                              "import lit_nn.cli.train"),
}
# whole commands a user types before any training, timed as processes (issue: <= 1.5 s for help)
COMMANDS = {
    "lit-nn --help": ["--help"],
    "lit-nn generate --help": ["generate", "--help"],
    "lit-nn sweep --help": ["sweep", "--help"],
    "lit-nn compare --help": ["compare", "--help"],
    "lit-nn runs --help": ["runs", "--help"],
    "lit-nn lab --help": ["lab", "--help"],
    "lit-nn lab gates --help": ["lab", "gates", "--help"],
    "lit-nn runs (store of 50 runs)": ["runs"],
}


def command_times(env: dict[str, str], repeats: int) -> dict[str, float]:
    """Median wall times of :data:`COMMANDS` as fresh processes; ``runs`` lists a store of 50 runs."""
    from lit_nn.tracking.lifecycle import RunStatus, end_run
    from lit_nn.tracking.store import ensure_experiment, tracking_client

    experiment = ensure_experiment("bench-runs", env["MLFLOW_TRACKING_URI"])
    client = tracking_client(env["MLFLOW_TRACKING_URI"])
    for i in range(50 - len(client.search_runs([experiment], max_results=50))):
        run_id = client.create_run(experiment, run_name=f"run-{i}").info.run_id
        client.log_metric(run_id, "val_acc", 0.9, step=0)
        end_run(client, run_id, RunStatus.FINISHED)
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, args in COMMANDS.items():
            walls[name].append(_wall([*lit_nn_command(), *args], env)[0])
    return {name: statistics.median(values) for name, values in walls.items()}



def import_times(env: dict[str, str], repeats: int) -> dict[str, float]:
    """Median wall times, in fresh processes, of: a bare interpreter; ``import lit_nn.cli.train``; the
    same with ``gc.freeze()`` before exit; and how much of ``import lit_nn.cli.train``'s wall is exit."""
    walls: dict[str, list[float]] = {k: [] for k in IMPORT_PROBES}
    exits: list[float] = []
    for _ in range(repeats):  # interleaved, like everything else
        for key, code in IMPORT_PROBES.items():
            walls[key].append(_wall([sys.executable, "-c", code], env)[0])
        _, out = _wall([sys.executable, "-c", "import time, lit_nn.cli.train; print(time.time(), flush=True)"], env)
        exits.append(time.time() - float(out.split()[0]))
    result = {k: statistics.median(v) for k, v in walls.items()}
    result["exit_after_import_s"] = statistics.median(exits)
    return result


def make_train(env: dict[str, str], quick: bool, seed: int | None = None) -> dict[str, Any]:
    """Run ``lit-nn fit -c experiments/mnist_cnn.yaml`` and split its wall time by MLflow's timestamps;
    with ``seed``, the same run with ``--seed_everything seed --data.init_args.seed seed``."""
    from mlflow.tracking import MlflowClient

    from lit_nn.core.names import Tag
    from lit_nn.tracking.store import ensure_experiment

    # a user's first run creates the SQLite schema once; time that apart, then measure a later run
    schema_start = time.perf_counter()
    ensure_experiment("mnist", env["MLFLOW_TRACKING_URI"])
    schema_s = time.perf_counter() - schema_start
    args = [*lit_nn_command(), "fit", "-c", "experiments/mnist_cnn.yaml"]
    if seed is not None:
        args += ["--seed_everything", str(seed), "--data.init_args.seed", str(seed)]
    if quick:
        args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
                 "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
    launched = time.time()
    wall, output = _wall(args, env)
    ended = launched + wall
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("mnist")
    if experiment is None:
        raise RuntimeError(f"lit-nn fit wrote no 'mnist' experiment:\n{output[-2000:]}")
    run = client.search_runs([experiment.experiment_id], max_results=1, order_by=["attributes.start_time DESC"])[0]
    ms = 1000.0
    run_start, run_end = run.info.start_time / ms, run.info.end_time / ms
    train = sorted(m.timestamp / ms for m in client.get_metric_history(run.info.run_id, "train_loss"))
    test = [m.timestamp / ms for m in client.get_metric_history(run.info.run_id, "test_acc")]
    val = sorted((m.step, m.timestamp / ms, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc"))
    first_98 = next(((step + 1, ts - launched) for step, ts, acc in val if acc >= 0.98), None)
    last_train = train[-1] if train else run_start
    test_at = test[-1] if test else last_train
    epochs = len(train)
    per_epoch = (train[-1] - train[0]) / (epochs - 1) if epochs > 1 else None
    phases = [
        ("start-up: interpreter, imports, CLI parsing, data loading, Trainer and MLflow run set-up",
         run_start - launched),
        (f"training: {epochs} epoch(s), each with validation, metrics logging and checkpointing",
         last_train - run_start),
        ("after training: best checkpoint to MLflow, test-set evaluation", test_at - last_train),
        ("confusion-matrix figure, finishing the MLflow run", run_end - test_at),
        ("process exit", ended - run_end),
    ]
    official = official_test_accuracy(run.data.tags.get(Tag.CHECKPOINT_DIR))
    return {"command": " ".join(["lit-nn", *args[len(lit_nn_command()):]]), "wall_s": wall, "epochs": epochs,
            "per_epoch_s": per_epoch, "phases": phases, "run_id": run.info.run_id,
            "test_acc": run.data.metrics.get("test_acc"), "val_acc": [acc for _, _, acc in val],
            "first_98": first_98, "schema_s": schema_s, "official_test": official}


def official_test_accuracy(checkpoint_dir: str | None) -> dict[str, Any] | None:
    """The accuracy of the run's ``best.ckpt`` on the official MNIST test set: its own images and
    labels (IDX), normalized as the run's config says, the predicted class the model's argmax."""
    import torch
    import yaml

    from lit_nn.data.idx import read_idx
    from lit_nn.data.images import DATASETS, normalization
    from lit_nn.models.cnn import CNN

    if not OFFICIAL_TEST.is_dir() or not checkpoint_dir:
        return None
    ckpt = Path(checkpoint_dir) / "best.ckpt"
    config = yaml.safe_load((REPO / "experiments" / "mnist_cnn.yaml").read_text())
    data_args = config["data"]["init_args"]
    mean, std = normalization(DATASETS[data_args.get("dataset", "mnist")], data_args.get("normalize"))
    images = read_idx(OFFICIAL_TEST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(OFFICIAL_TEST / "t10k-labels-idx1-ubyte.gz").long()
    x = (images.unsqueeze(1).float() / 255.0 - mean) / std
    model = CNN.load_from_checkpoint(ckpt, map_location="cpu").eval()
    with torch.no_grad():
        predicted = torch.cat([model(batch).argmax(1) for batch in x.split(1000)])
    return {"accuracy": float((predicted == labels).float().mean()), "images": len(labels),
            "checkpoint": "best.ckpt", "source": str(OFFICIAL_TEST)}


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Time ``make train``'s command and the import cost; ``threads`` sets OMP_NUM_THREADS for them."""
    with tempfile.TemporaryDirectory(prefix="lit-nn-bench-") as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "MPLBACKEND": "Agg",
               "PYTHONWARNINGS": "ignore"}
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        log("start-up: interpreter and `import lit_nn.cli.train`")
        imports = import_times(env, repeats=1 if quick else 2)
        log("start-up: --help of every command and `lit-nn runs`, as processes")
        commands = command_times(env, repeats=1 if quick else 5)
        log("start-up: `lit-nn fit -c experiments/mnist_cnn.yaml`" + (" (quick: 1 epoch, 3 batches)" if quick else ""))
        train = make_train(env, quick)
        seeds = [{"seed": SEEDS[0], "wall_s": train["wall_s"], "official_test": train["official_test"]}]
        for seed in SEEDS[1:3] if quick else SEEDS[1:]:
            log(f"the default run with seed {seed}: --seed_everything {seed} --data.init_args.seed {seed}")
            other = make_train(env, quick, seed)
            seeds.append({"seed": seed, "wall_s": other["wall_s"], "official_test": other["official_test"]})
    return {"quick": quick, "threads": threads, **imports, "commands": commands, "make_train": train,
            "seeds": seeds, "official_over_seeds": over_seeds(seeds)}


def over_seeds(seeds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean, min and max of the official-test accuracy over the seeds' runs (None when not scored)."""
    accs = [s["official_test"]["accuracy"] for s in seeds if s.get("official_test")]
    if not accs:
        return None
    return {"n": len(accs), "mean": statistics.mean(accs), "min": min(accs), "max": max(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "seeds": [s["seed"] for s in seeds if s.get("official_test")]}


def report(result: dict[str, Any]) -> str:
    """The Markdown section for BENCHMARKS.md."""
    mt = result["make_train"]
    wall = mt["wall_s"]
    lines = ["## `make train` from start to finish", "",
             f"`{mt['command']}` in a subprocess against a temporary MLflow store whose schema already exists "
             "(as after a first run), output to a pipe: what `make train` runs, without make's own check of the "
             "venv. Phases from the timestamps MLflow recorded.", ""]
    rows = [[name, fmt_s(s), f"{100 * s / wall:.0f} %"] for name, s in mt["phases"]]
    rows.append(["**total**", f"**{fmt_s(wall)}**", "100 %"])
    lines.append(markdown_table(["phase", "time", "share"], rows))
    overhead = mt["phases"][0][1] + mt["phases"][-1][1]
    training = mt["phases"][1][1]
    lines += ["",
              f"- Fixed cost of any `lit-nn` command: interpreter {fmt_s(result['python_s'])}, "
              f"`import lit_nn.cli.train` {fmt_s(result['import_cli_s'])} in total "
              f"(so the imports and the exit are {fmt_s(result['import_cli_s'] - result['python_s'])}; "
              f"exit alone {fmt_s(result['exit_after_import_s'])}).",
              f"- The same with `gc.freeze()` before exit: {fmt_s(result['import_cli_freeze_s'])} — Python's final "
              "garbage collections walk every object torch, Lightning and MLflow created; frozen, they are skipped "
              "(but with torch >= 2.15 nanobind then reports them as leaked). How `lit-nn` ends instead, atexit "
              f"handlers and no finalization (`skip_finalization_at_exit`): {fmt_s(result['import_cli_exit_now_s'])}.",
              f"- Start-up and exit: {fmt_s(overhead)} ({100 * overhead / wall:.0f} % of the run); training "
              f"{fmt_s(training)} ({100 * training / wall:.0f} %)"
              + (f", {fmt_s(mt['per_epoch_s'])} per epoch." if mt["per_epoch_s"] else ".")]
    lines.append(f"- A first run on a fresh store also creates the MLflow SQLite schema: {fmt_s(mt['schema_s'])}.")
    if result.get("commands"):
        lines += ["", "Commands before any training, whole processes (median):", "",
                  markdown_table(["command", "wall"], [[f"`{n}`", fmt_s(s)] for n, s in result["commands"].items()]),
                  ""]
    if mt.get("val_acc"):
        reached = (f"first ≥ 98 % after epoch {mt['first_98'][0]}, {fmt_s(mt['first_98'][1])} after launch"
                   if mt.get("first_98") else "never ≥ 98 %")
        lines.append(f"- The run's val_acc per epoch: {', '.join(f'{a:.3f}' for a in mt['val_acc'])} ({reached}).")
    if mt.get("test_acc") is not None:
        lines.append(f"- The run's test accuracy: {mt['test_acc']:.4f}.")
    official = mt.get("official_test")
    if official:
        lines.append(f"- **The default run on the official MNIST test set**: its best.ckpt scores "
                     f"**{official['accuracy']:.2%}** on the {official['images']:,} official test images "
                     f"(`{Path(official['source']).name}`, scored once, by this benchmark; never used to choose "
                     f"settings), `make train`'s command taking **{fmt_s(wall)}** end to end.")
    dist = result.get("official_over_seeds")
    if dist:
        per_seed = ", ".join(f"seed {s['seed']}: {s['official_test']['accuracy']:.2%} ({fmt_s(s['wall_s'])})"
                             for s in result["seeds"] if s.get("official_test"))
        lines.append(f"- **Over {dist['n']} seeds** (`--seed_everything s --data.init_args.seed s`, s = "
                     f"{', '.join(map(str, dist['seeds']))}: weights, train/val split and augmentation), the official "
                     f"test accuracy of each run's best.ckpt: **mean {dist['mean']:.2%}, min {dist['min']:.2%}, "
                     f"max {dist['max']:.2%}** (std {dist['std']:.2%}); {per_seed}.")
    elif mt.get("official_test", 0) is None:
        lines.append(f"- Official MNIST test set: not scored ({OFFICIAL_TEST} missing).")
    return "\n".join(lines)
