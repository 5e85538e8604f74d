# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Optimizers
#
# [Learning path, step 7](../../docs/learning-path.md#7-optimizers) · book §6.1 · the same runs from a
# terminal: `lit-nn lab trajectories`, then a sweep like `make compare-optimizers`

# %% [markdown]
# Where lit-nn is, and where the runs go: the MLflow store of `make ui` (`mlruns/` in the clone),
# unless `MLFLOW_TRACKING_URI` says otherwise. `LIT_NN_NOTEBOOK_QUICK=1` (set by the tests) makes
# every budget tiny.

# %%
import os
from pathlib import Path

import lit_nn

REPO = Path(lit_nn.__file__).resolve().parents[2]  # the lit-nn clone (make install: pip install -e)
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO}/mlruns/mlflow.db")
QUICK = os.environ.get("LIT_NN_NOTEBOOK_QUICK") == "1"
print("runs go to", os.environ["MLFLOW_TRACKING_URI"], "(quick budgets)" if QUICK else "")

# %% [markdown]
# ## Seven optimizers on two bowls
#
# `torch.optim`'s SGD, momentum, Adagrad, RMSprop, Adadelta, Adam and AdamW walk down the round
# bowl x² + y² and the stretched bowl x²/20 + y² (the book's §6.1.3) with lr 0.1.

# %%
from lit_nn.lab import trajectories

paths = trajectories.run(steps=20 if QUICK else 100)

# %%
print(paths["summary"])

# %% [markdown]
# The paths on the stretched bowl, as the run stored them:

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=paths["run_id"], artifact_path="trajectories_stretched.png")))

# %% [markdown]
# **What to notice.** SGD first falls down the steep y direction, then crawls along the flat x
# direction: the case the adaptive methods (Adagrad, RMSprop, Adam) were made for. Momentum
# overshoots and swings back; Adadelta hardly moves, since its steps do not scale with lr.
#
# ## The learning rate: too large diverges
#
# On x² + y² one SGD step multiplies x by (1 − 2 lr): above lr 1 every jump lands farther out.

# %%
too_large = trajectories.run(functions=["round"], optimizers=["sgd", "momentum", "adam"], lr=1.05,
                             steps=10 if QUICK else 30)
print(too_large["summary"])

# %%
display(Image(mlflow.artifacts.download_artifacts(run_id=too_large["run_id"], artifact_path="distance_per_step.png")))

# %% [markdown]
# ## The optimizers on a network
#
# The points of `experiments/compare_optimizers.yaml` (each optimizer with its hand-picked
# learning rate), here on the MNIST sample instead of Fashion-MNIST, as a sweep of our own:
# one `lit-nn fit` run per point and seed, nested under one parent run.

# %%
import yaml

sweep = yaml.safe_load((REPO / "experiments" / "compare_optimizers.yaml").read_text())
sweep["name"] = "notebook_optimizers"
sweep["description"] = "compare_optimizers.yaml's points on the MNIST sample (notebook 04)"
sweep["config"]["data"]["init_args"]["dataset"] = "mnist"
sweep["config"]["trainer"]["max_epochs"] = 1 if QUICK else 5
sweep["seeds"] = [0] if QUICK else [0, 1, 2]
if QUICK:  # two of the seven points
    sweep["points"] = [p for p in sweep["points"] if p["name"] in ("sgd", "adam")]
Path("notebook_optimizers.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
print([point["name"] for point in sweep["points"]], "seeds", sweep["seeds"])

# %%
quick = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--log_model", "false", "--log_checkpoint", "false"] if QUICK else []
report = lit_nn.sweep("notebook_optimizers.yaml", *quick, workers=2)

# %% [markdown]
# Every run of the sweep, read back from MLflow with `mlflow.search_runs`: one row per run (the
# parent run, tagged `sweep_role = parent`, is left out), its optimizer, learning rate and scores.

# %%
runs = mlflow.search_runs(experiment_names=["notebook_optimizers"], filter_string="tags.sweep_role = 'point'")
table = runs[["tags.sweep_point", "tags.seed", "params.model.optimizer", "params.model.lr",
              "metrics.val_acc", "metrics.test_acc"]]
table.sort_values(["tags.sweep_point", "tags.seed"])

# %% [markdown]
# The mean over seeds per point, best first:

# %%
means = table.groupby("tags.sweep_point")[["metrics.val_acc", "metrics.test_acc"]].mean()
means = means.sort_values("metrics.val_acc", ascending=False)
means

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.barh(means.index, means["metrics.val_acc"], color="tab:blue")
ax.invert_yaxis()
ax.set(xlabel="final val_acc, mean of the seeds", title="one hand-picked lr per optimizer, MNIST sample")
plt.show()

# %% [markdown]
# **What to notice.** This ranks the hand-picked learning rates as much as the optimizers:
# `make compare-optimizers-tuned` gives each optimizer the same tuning budget before a verdict.
# lit-nn's own report of the sweep (curves per point, mean of the seeds with a band):

# %%
report.figure

# %%
print(report.markdown_path)
print(report.ui)

# %% [markdown]
# The two labs' runs in MLflow: `make ui` in the clone, then these addresses (the sweep's is above).

# %%
client = mlflow.MlflowClient()
for run_id in (paths["run_id"], too_large["run_id"]):
    experiment_id = client.get_run(run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
