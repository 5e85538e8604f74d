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
# # 7. Watching a network learn: dead ReLUs, vanishing gradients
#
# [Learning path, step 12](../../docs/learning-path.md#12-watching-a-network-learn-dead-relus-vanishing-gradients-saturation)
# · book ch. 5, §6.2 · the same runs from a terminal:
# `lit-nn fit -c experiments/mnist_mlp.yaml --model.init_args.lr 0.1 --trainer.max_epochs 5 --dynamics_every 10`
# and the two `--experiment vanishing` fits of the step

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
# Every fit records the network's insides, layer by layer, every `dynamics_every` optimizer steps:
# `grad_norm/<layer>`, `weight_norm/`, `update_ratio/`, `dead_frac/` (ReLU) and more. The budget of
# the step: 5 epochs of 32 mini-batches, a record every 10 steps (quick: 3 batches, every step).

# %%
BUDGET = dict(trainer__max_epochs=1, trainer__limit_train_batches=3, trainer__limit_val_batches=1,
              trainer__limit_test_batches=1, dynamics_every=1, log_model=False) if QUICK else dict(
              trainer__max_epochs=5, trainer__limit_train_batches=32, dynamics_every=10)
mlp_config = REPO / "experiments" / "mnist_mlp.yaml"

# %% [markdown]
# ## Dead ReLUs at a too-high learning rate
#
# Adam at lr 0.1, 100 times the config's 0.001:

# %%
dead = lit_nn.fit(mlp_config, model__lr=0.1, run_name="relu lr 0.1", **BUDGET)

# %% [markdown]
# The fraction of each hidden layer's ReLUs that output 0 for every image of the mini-batch, read
# back from MLflow:

# %%
import matplotlib.pyplot as plt
import mlflow

client = mlflow.MlflowClient()
fig, ax = plt.subplots(figsize=(6, 3.5))
for layer in ("fc1", "fc2"):
    history = client.get_metric_history(dead.run_id, f"dead_frac/{layer}")
    ax.plot([m.step for m in history], [m.value for m in history], "o-", label=layer)
ax.set(xlabel="optimizer step", ylabel="dead_frac", ylim=(0, 1), title="dead ReLUs at lr 0.1")
ax.legend()
plt.show()

# %% [markdown]
# The histograms of the ReLU outputs per epoch, as the run stored them:

# %%
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=dead.run_id, artifact_path="dynamics/activations.png")))

# %% [markdown]
# **What to notice.** The first steps are far too large and push most units' inputs below 0 for
# every image; there ReLU's derivative is 0, so no gradient reaches their weights and nothing
# brings them back.
#
# ## Vanishing gradients: sigmoid at depth 3 against ReLU
#
# Three hidden layers, plain SGD at lr 0.1 (Adam would hide a small gradient), once with the
# sigmoid and once with ReLU:

# %%
deep = dict(model__depth=3, model__optimizer="sgd", model__lr=0.1, experiment="vanishing", **BUDGET)
sigmoid = lit_nn.fit(mlp_config, model__activation="sigmoid", run_name="sigmoid depth 3", **deep)

# %%
relu = lit_nn.fit(mlp_config, model__activation="relu", run_name="relu depth 3", **deep)

# %% [markdown]
# The gradient norm of each layer, on one log scale:

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
for ax, (name, fitted) in zip(axes, (("sigmoid", sigmoid), ("relu", relu)), strict=True):
    for layer in ("fc1", "fc2", "fc3", "fc4"):
        history = client.get_metric_history(fitted.run_id, f"grad_norm/{layer}")
        ax.plot([m.step for m in history], [m.value for m in history], label=layer)
    ax.set(title=name, xlabel="optimizer step", yscale="log")
axes[0].set_ylabel("grad_norm")
axes[0].legend()
plt.show()

# %% [markdown]
# **What to notice.** With the sigmoid the layers line up in order, the first layer's gradient far
# below the last's: backpropagation multiplies it by the sigmoid's derivative, at most 0.25, at
# every layer it passes. With ReLU (derivative 1 for a positive input) the four lie together.
#
# The runs in MLflow: `make ui` in the clone, then these addresses.

# %%
for fitted in (dead, sigmoid, relu):
    experiment_id = client.get_run(fitted.run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{fitted.run_id}")
