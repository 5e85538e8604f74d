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
# # 2. Activation functions, softmax and cross-entropy, loss functions
#
# Learning path, [step 2](../../docs/learning-path.md#2-activation-functions),
# [step 3](../../docs/learning-path.md#3-softmax-and-cross-entropy) and
# [step 4](../../docs/learning-path.md#4-loss-functions) · book §3.2, §3.5, §4.2, §6.2 ·
# the same runs from a terminal: `lit-nn lab activations` and `lit-nn lab losses`

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
# ## Activation functions
#
# The six activations and their derivatives, drawn here directly:

# %%
from lit_nn.lab import activations

activations.functions_figure()

# %% [markdown]
# The sigmoid's derivative is never above 0.25 and tanh's falls to 0 for large inputs: a gradient
# that passes through many such layers keeps shrinking (the vanishing gradient). ReLU's derivative
# is 1 for every positive input.
#
# Now the lab: random inputs pushed through 5 layers, for sigmoid, tanh and ReLU, under three
# weight initializations (std 0.01, Xavier, He). One MLflow run in experiment `lab`.

# %%
act = activations.run(samples=100 if QUICK else 1000)

# %%
print(act["summary"])

# %% [markdown]
# The spread (standard deviation) of each layer's outputs, from the run's results:

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
names = sorted({name for name, _ in act["stds"]})
for ax, name in zip(axes, names, strict=True):
    for (activation, init), stds in act["stds"].items():
        if activation == name:
            ax.plot(range(1, len(stds) + 1), stds, marker="o", label=init)
    ax.set(title=name, xlabel="layer", yscale="log")
axes[0].set_ylabel("std of the layer's outputs")
axes[0].legend()
plt.show()

# %% [markdown]
# **What to notice.** With weights of std 0.01 the spread collapses layer after layer (for the
# sigmoid it stays near 0.5 with almost no spread), while Xavier (for sigmoid and tanh) and He (for
# ReLU) keep it alive up to layer 5. The histograms the lab stored in its run show the same:

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=act["run_id"], artifact_path="layer_histograms.png")))

# %% [markdown]
# ## Softmax and cross-entropy
#
# `nn.CrossEntropyLoss()` takes the network's raw scores (logits) and the right class as an index;
# it applies log-softmax itself. A softmax in front of it is applied twice:

# %%
import torch
import torch.nn.functional as F

scores = torch.tensor([[2.0, 0.5, -1.0]])  # the model's raw scores (logits) for 3 classes
label = torch.tensor([0])  # the right class as an index, not one-hot
loss = torch.nn.CrossEntropyLoss()
print(f"{loss(scores, label).item():.4f}")  # cross-entropy of the logits
print(f"{-F.log_softmax(scores, dim=1)[0, 0].item():.4f}")  # the same: log-softmax is inside
print(f"{loss(F.softmax(scores, dim=1), label).item():.4f}")  # softmax first: applied twice

# %% [markdown]
# The losses lab trains the same MLP twice on the MNIST sample, same starting weights and SGD, once
# with softmax + cross-entropy and once with squared error on one-hot targets; it also draws every
# loss function against the prediction.

# %%
from lit_nn.lab import losses

lossrun = losses.run(epochs=1 if QUICK else 5, max_batches=2 if QUICK else None)

# %%
print(lossrun["summary"])

# %% [markdown]
# Validation accuracy per epoch, one line per loss, from the lab's results:

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, rows in lossrun["histories"].items():
    ax.plot(range(1, len(rows) + 1), [row["val_acc"] for row in rows], marker="o", label=name)
ax.set(xlabel="epoch", ylabel="val_acc", title="softmax + cross-entropy vs squared error")
ax.legend()
plt.show()

# %% [markdown]
# **What to notice.** Cross-entropy's gradient is "predicted probabilities minus targets", so a
# confidently wrong answer gets a large correction; squared error through a saturated output gets
# a small one and learns slowly.
#
# ## Loss functions
#
# Every loss against the prediction (`loss_curves.png` of the run):

# %%
display(Image(mlflow.artifacts.download_artifacts(run_id=lossrun["run_id"], artifact_path="loss_curves.png")))

# %% [markdown]
# MSE grows with the square of the error, MAE linearly, Huber is one near the target and the other
# far from it. Cross-entropy climbs without limit as the probability of the true class goes to 0,
# while squared error against the one-hot target stays below 2. The hinge loss is exactly 0 past
# the margin of 1.
#
# Both runs in MLflow: `make ui` in the clone, then these addresses.

# %%
client = mlflow.MlflowClient()
for run_id in (act["run_id"], lossrun["run_id"]):
    experiment_id = client.get_run(run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
