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
# # 1. Perceptron and logic gates
#
# [Learning path, step 1](../../docs/learning-path.md#1-perceptron-and-logic-gates) · book ch. 2 ·
# the same run from a terminal: `lit-nn lab gates`
#
# A perceptron is one weighted sum and a threshold. The lab trains one on AND, OR and NAND, then on
# XOR, where it fails, and a net with one hidden layer that learns XOR.

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
# Train the five models: full-batch gradient descent on the four rows of each truth table.

# %%
from lit_nn.lab import gates

result = gates.run(epochs=50 if QUICK else 500)

# %% [markdown]
# The truth tables the models compute, and how sure the perceptron is on XOR:

# %%
print(result["summary"])

# %% [markdown]
# The decision boundaries, as the lab stored them in its MLflow run (`decision_boundaries.png`):

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="decision_boundaries.png")))

# %% [markdown]
# **What to notice.** For AND, OR and NAND one straight line (black, where the output is 0.5)
# separates the red circles from the blue squares. For XOR no line can: the perceptron sits near
# 0.5 everywhere. The hidden layer bends the boundary, and XOR is learned.
#
# The loss of every model per epoch, read back from the run's metrics:

# %%
import matplotlib.pyplot as plt

client = mlflow.MlflowClient()
fig, ax = plt.subplots(figsize=(6, 3.5))
for name in result["models"]:
    key = name.lower().replace(" ", "_") + ".loss"
    history = client.get_metric_history(result["run_id"], key)
    ax.plot([m.step for m in history], [m.value for m in history], label=name)
ax.set(xlabel="epoch", ylabel="binary cross-entropy", title="training loss per gate")
ax.legend()
plt.show()

# %% [markdown]
# The XOR perceptron's loss stays high: no setting of its three weights gets all four rows right.
#
# Open the run in MLflow: `make ui` in the clone, then this address.

# %%
experiment_id = client.get_run(result["run_id"]).info.experiment_id
print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{result['run_id']}")
