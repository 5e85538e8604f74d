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
# # 3. Mini-batches, numerical gradient and backpropagation (a NumPy net)
#
# Learning path, [step 5](../../docs/learning-path.md#5-mini-batches-and-epochs) and
# [step 6](../../docs/learning-path.md#6-numerical-gradient-and-backpropagation) · book §4.2-§4.5,
# ch. 5, §5.7.3 · the same run from a terminal: `lit-nn lab scratch`
#
# `TwoLayerNet` (`src/lit_nn/lab/twolayer.py`) is the book's two-layer network in NumPy, with its
# backpropagation written by hand.

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
# ## Does the loss fall with every mini-batch?
#
# The notes' settings (mini-batches of 10, lr 0.1, weights of std 0.01) on the 4,000 training
# images of the MNIST sample, recording the loss of every mini-batch:

# %%
import numpy as np

from lit_nn.lab.scratch import load_mnist_sample
from lit_nn.lab.twolayer import TwoLayerNet

(x, t), _ = load_mnist_sample()  # the 4,000 training images of the MNIST sample
iterations = 400 if QUICK else 2000
net, rng, batch_losses = TwoLayerNet(784, 50, 10, weight_init_std=0.01), np.random.default_rng(0), []
for _ in range(iterations):  # one mini-batch of 10 per iteration
    batch = rng.choice(len(t), 10)
    batch_losses.append(net.loss(x[batch], t[batch]))
    net.step(net.gradient(x[batch], t[batch]), lr=0.1)

# %% [markdown]
# Every mini-batch's loss (grey) and the mean of each eighth of the run (red):

# %%
import matplotlib.pyplot as plt

window = iterations // 8
means = [np.mean(batch_losses[k : k + window]) for k in range(0, iterations, window)]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(batch_losses, color="0.7", linewidth=0.8, label="one mini-batch")
ax.plot([k + window / 2 for k in range(0, iterations, window)], means, "o-", color="tab:red",
        label=f"mean of {window}")
ax.set(xlabel="iteration (step)", ylabel="cross-entropy", title="mini-batch loss: noisy, its mean falls")
ax.legend()
plt.show()

# %% [markdown]
# **What to notice.** From one mini-batch to the next the loss jumps up and down: each point is the
# loss of 10 images. The trend is in the means, which fall every time. lit-nn's `train_loss` is
# such a mean, over an epoch.
#
# ## The lab: gradient check, timing, training
#
# The lab checks the hand-written backpropagation against numerical gradients and against
# PyTorch's autograd, times one gradient each way, then trains the net with mini-batches of 100.

# %%
from lit_nn.lab import scratch

result = scratch.run(epochs=1 if QUICK else 10)

# %%
print(result["summary"])

# %% [markdown]
# Accuracy per epoch, from the lab's history (epoch 0 is before any training):

# %%
history = result["history"]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([h["epoch"] for h in history], [h["train_acc"] for h in history], "o-", label="train")
ax.plot([h["epoch"] for h in history], [h["test_acc"] for h in history], "s--", label="test")
ax.set(xlabel="epoch", ylabel="accuracy", title="NumPy TwoLayerNet on the MNIST sample")
ax.legend()
plt.show()

# %% [markdown]
# One epoch is 40 mini-batches of 100, so 40 updates of the weights: accuracy jumps from chance
# (10 %) after the first. Train and test stay together: no overfitting yet.
#
# The gradient check as the run stored it (`gradient_check.png`):

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="gradient_check.png")))

# %% [markdown]
# **What to notice.** For every parameter the backprop-numerical difference is about a million
# times smaller than the gradient, and against autograd it is at rounding level: the hand-written
# backpropagation is right. Numerical gradients cost thousands of times more, because they run the
# network twice per weight:

# %%
print(f"numerical / backprop time: {result['timing']['ratio']:,.0f}x")

# %% [markdown]
# The run in MLflow: `make ui` in the clone, then this address.

# %%
client = mlflow.MlflowClient()
experiment_id = client.get_run(result["run_id"]).info.experiment_id
print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{result['run_id']}")
