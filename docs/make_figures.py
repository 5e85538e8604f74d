"""Regenerate the figures of docs/learning-path.md and docs/learning-path.ja.md (``make figures``).

Every figure comes from the command a learner types (``lit-nn lab ...``, ``lit-nn fit ...``,
``lit-nn sweep ...``, ``lit-nn compare ...``), run through the ``lit-nn`` command's own dispatch
with a smaller budget than the documents' defaults (fewer epochs and batches), so the whole set
takes a few minutes on 2 CPU cores. The runs go to a throwaway MLflow store
(``MLFLOW_TRACKING_URI=sqlite:///<tmp>/mlflow.db``, reports in ``<tmp>/reports``); the figures
are copied from the runs' artifacts and the report folders as palette PNGs under 150 KB.

    python docs/make_figures.py                  # into docs/figures/ (make figures)
    python docs/make_figures.py --out /tmp/figs  # anywhere else
    python docs/make_figures.py --quick          # tiny budgets: checks that every figure is made
    python docs/make_figures.py --only compare_linear_curves.png   # only the commands of these figures
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 150_000
WIDTH = 1000  # pixels: readable on a page, and well under MAX_BYTES as a 256-colour PNG
LAB = "artifacts/lab/*/artifacts/"
TINY_FIT = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1"]
DYNAMICS = "artifacts/mnist/*/artifacts/dynamics/"  # a fit's per-layer histogram heatmaps
WATCH = ["--trainer.max_epochs", "5", "--dynamics_every", "10"]  # step 12's runs: ~20 s each
WATCH_QUICK = ["--trainer.max_epochs", "2", *TINY_FIT]  # two epochs: two rows in each heatmap
VANISHING = ["--model.init_args.depth", "3", "--model.init_args.optimizer", "sgd", "--model.init_args.lr", "0.1",
             "--model.init_args.activation"]

# (command, its --quick extras, [(figure under the throwaway folder, file in docs/figures/)]).
# {repo} is the repository: the commands run in the throwaway folder, so reports/ land there.
STEPS: list[tuple[list[str], list[str], list[tuple[str, str]]]] = [
    (["lab", "gates"], ["--epochs", "50"],
     [(LAB + "decision_boundaries.png", "gates_decision_boundaries.png")]),
    (["lab", "activations"], ["--samples", "100"],
     [(LAB + "activations.png", "activations.png"),
      (LAB + "layer_histograms.png", "activations_layer_histograms.png")]),
    (["lab", "losses", "--epochs", "3", "--max_batches", "40"], ["--epochs", "1", "--max_batches", "2"],
     [(LAB + "ce_vs_mse_accuracy.png", "losses_ce_vs_mse_accuracy.png"),
      (LAB + "loss_curves.png", "losses_loss_curves.png")]),
    (["lab", "scratch", "--epochs", "4"], ["--epochs", "1"],
     [(LAB + "training.png", "scratch_training.png"),
      (LAB + "gradient_check.png", "scratch_gradient_check.png")]),
    (["lab", "trajectories"], ["--steps", "10"],
     [(LAB + "trajectories_round.png", "trajectories_round.png"),
      (LAB + "trajectories_stretched.png", "trajectories_stretched.png")]),
    (["lab", "trajectories", "--functions", "round", "--optimizers", "sgd", "momentum", "adam", "--lr", "1.05",
      "--steps", "30"], ["--steps", "10"],
     [(LAB + "distance_per_step.png", "trajectories_lr_too_large.png")]),
    (["sweep", "{repo}/experiments/compare_depth.yaml", "--workers", "2", "--trainer.max_epochs", "3",
      "--trainer.limit_train_batches", "20"], ["--trainer.max_epochs", "1", *TINY_FIT],
     [("reports/compare_depth/curves.png", "compare_depth_curves.png")]),
    (["sweep", "{repo}/experiments/compare_linear.yaml", "--workers", "2"],  # the full sweep: ~1 min of MLPs
     ["--trainer.max_epochs", "1", *TINY_FIT],
     [("reports/compare_linear/curves.png", "compare_linear_curves.png")]),
    (["fit", "-c", "{repo}/experiments/mnist_cnn.yaml", "--trainer.max_epochs", "1"], TINY_FIT,
     [("artifacts/mnist/*/artifacts/confusion_matrix.png", "cnn_confusion_matrix.png")]),
    (["fit", "-c", "{repo}/experiments/char_rnn.yaml", "--trainer.max_epochs", "3",
      "--trainer.limit_train_batches", "30", "--trainer.limit_val_batches", "10"],
     ["--trainer.max_epochs", "1", *TINY_FIT, "--model.init_args.sample_length", "10"], []),
    (["compare", "--experiment", "char_rnn", "--group_by", "cell"], [],
     [("reports/char_rnn/curves.png", "rnn_curves.png")]),
    # step 12, watching a network learn: the runs' per-layer dynamics (the documents' own budgets)
    (["fit", "-c", "{repo}/experiments/mnist_mlp.yaml", "--model.init_args.lr", "0.1", *WATCH], WATCH_QUICK,
     [(DYNAMICS + "activations.png", "dynamics_dead_relu.png")]),
    (["fit", "-c", "{repo}/experiments/mnist_mlp.yaml", "--experiment", "vanishing", *VANISHING, "sigmoid",
      *WATCH], WATCH_QUICK, []),
    (["fit", "-c", "{repo}/experiments/mnist_mlp.yaml", "--experiment", "vanishing", *VANISHING, "relu",
      *WATCH], WATCH_QUICK, []),
    (["compare", "--experiment", "vanishing", "--group_by", "activation"], [],
     [("reports/vanishing/gradients.png", "dynamics_vanishing_gradients.png")]),
    (["fit", "-c", "{repo}/experiments/mnist_mlp.yaml", "--model.init_args.activation", "tanh",
      "--model.init_args.lr", "0.1", *WATCH], WATCH_QUICK,
     [(DYNAMICS + "activations.png", "dynamics_tanh_saturation.png")]),
]


def figure_names() -> list[str]:
    """Every file this script writes into the figures folder."""
    return [name for *_, figures in STEPS for _, name in figures]


def selected_steps(only: list[str] | None) -> list[int]:
    """The indices of STEPS to run: all, or those making a figure in ``only``, each with the
    figure-less steps just before it (a fit whose runs the next step's ``compare`` draws)."""
    if not only:
        return list(range(len(STEPS)))
    unknown = sorted(set(only) - set(figure_names()))
    if unknown:
        raise SystemExit(f"--only: no figure named {', '.join(unknown)}; the figures: {', '.join(figure_names())}")
    chosen: set[int] = set()
    for index, (_, _, figures) in enumerate(STEPS):
        if any(name in only for _, name in figures):
            chosen.add(index)
            before = index - 1
            while before >= 0 and not STEPS[before][2]:
                chosen.add(before)
                before -= 1
    return sorted(chosen)


def shrink(source: Path, target: Path) -> None:
    """Copy a PNG at most WIDTH pixels wide as a 256-colour palette PNG (plots have few colours)."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > WIDTH:
            image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    if target.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{target} is {target.stat().st_size} bytes, over {MAX_BYTES}: lower WIDTH")


def newest(work: Path, pattern: str) -> Path:
    matches = sorted(work.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not matches:
        raise SystemExit(f"no {pattern} under {work}")
    return matches[-1]


def run_command(argv: list[str]) -> None:
    """One ``lit-nn`` command line, in this process, through the command's own dispatch."""
    from lit_nn.cli.main import main

    try:
        main(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise SystemExit(f"lit-nn {' '.join(argv)} failed ({exit_.code})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="folder for the PNGs")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (for tests): every figure, in ~1 min")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway store and print where it is")
    parser.add_argument("--only", nargs="+", metavar="FIGURE", help="make only these figures (file names)")
    args = parser.parse_args(argv)
    steps = [STEPS[index] for index in selected_steps(args.only)]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lit-nn-figures-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    os.environ.setdefault("MPLBACKEND", "Agg")
    start, home = time.perf_counter(), Path.cwd()
    os.chdir(work)
    try:
        for command, quick, figures in steps:
            line = [arg.format(repo=REPO) for arg in command] + (quick if args.quick else [])
            began = time.perf_counter()
            print(f"$ lit-nn {' '.join(line).replace(f'{REPO}/', '')}", flush=True)
            run_command(line)
            for pattern, name in figures:
                shrink(newest(work, pattern), out / name)
                print(f"   {name}: {(out / name).stat().st_size / 1000:.0f} KB", flush=True)
            print(f"   ({time.perf_counter() - began:.0f} s)", flush=True)
    finally:
        os.chdir(home)
        if args.keep:
            print(f"throwaway store kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    made = sum(len(figures) for *_, figures in steps)
    print(f"{made} figures in {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
