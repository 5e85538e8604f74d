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
# # 5. MLP and CNN on MNIST: depth, a linear network, convolutions
#
# Learning path, [step 8](../../docs/learning-path.md#8-depth),
# [step 9](../../docs/learning-path.md#9-why-a-network-needs-an-activation-function-a-linear-network)
# and [step 10](../../docs/learning-path.md#10-convolutional-networks) · book §3.2.6, §3.4, ch. 7 ·
# the same runs from a terminal: `lit-nn fit -c experiments/mnist_mlp.yaml` (with
# `--model.init_args.depth 0` or `--model.init_args.activation identity`), `make train`,
# `lit-nn predict --ckpt_path RUN_ID --images my_digit.png`

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
# The budget of every fit below: the configs' own (10 epochs for the MLP, 25 for the CNN), or a
# few batches in quick mode. Keywords are `lit-nn fit` options, `__` for the dot.

# %%
BUDGET = dict(trainer__max_epochs=1, trainer__limit_train_batches=3, trainer__limit_val_batches=1,
              trainer__limit_test_batches=1, log_model=False) if QUICK else {}

# %% [markdown]
# ## Three MLPs on the MNIST sample
#
# The MLP of `experiments/mnist_mlp.yaml` (2 hidden layers of 128, ReLU), the same layers with no
# activation (`identity`: the network stays one linear map), and depth 0 (softmax regression, one
# linear layer). Each `lit_nn.fit` is one MLflow run in experiment `mnist`.

# %%
mlp_config = REPO / "experiments" / "mnist_mlp.yaml"
mlp = lit_nn.fit(mlp_config, run_name="mlp relu", **BUDGET)

# %%
linear = lit_nn.fit(mlp_config, model__activation="identity", run_name="mlp identity", **BUDGET)

# %%
softmax = lit_nn.fit(mlp_config, model__depth=0, run_name="softmax regression", **BUDGET)

# %% [markdown]
# The learning curves, read back from MLflow (`val_acc` per epoch of each run):

# %%
import matplotlib.pyplot as plt
import mlflow

client = mlflow.MlflowClient()
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, fitted in (("depth 2, relu", mlp), ("depth 2, identity", linear), ("depth 0 (softmax)", softmax)):
    history = client.get_metric_history(fitted.run_id, "val_acc")
    ax.plot([m.step + 1 for m in history], [m.value for m in history], "o-", label=name)
ax.set(xlabel="epoch", ylabel="val_acc", title="MLPs on the MNIST sample")
ax.legend()
plt.show()

# %%
for name, fitted in (("relu", mlp), ("identity", linear), ("softmax regression", softmax)):
    print(f"{name:20} test_acc {fitted.metrics['test_acc']:.3f}")

# %% [markdown]
# **What to notice.** Without an activation the deep network ends where softmax regression does:
# W₄(W₃(W₂(W₁x + b₁) + b₂) + b₃) + b₄ is one matrix times x plus one vector, however many layers.
# Only ReLU between the layers lets depth help. `make compare-depth` and `make compare-linear`
# compare these on 3 seeds and say which differences the seeds support.
#
# ## A convolutional network
#
# The shape after every layer of the CNN: where the 800 inputs of `fc1` come from.

# %%
import torch

from lit_nn.models import CNN

model = CNN(channels=(16, 32), fc=(128, 64))  # the notes' Net: experiments/seeds/mnist_cnn.yaml
x = torch.zeros(1, 1, 28, 28)  # one 28 × 28 grey image
for layer in model.net:  # the shape after every layer
    x = layer(x)
    print(f"{type(layer).__name__:9} -> {tuple(x.shape)}")

# %% [markdown]
# Train the default CNN (`experiments/mnist_cnn.yaml`, what `make train` runs):

# %%
cnn = lit_nn.fit(REPO / "experiments" / "mnist_cnn.yaml", run_name="cnn", **BUDGET)
print(f"test_acc {cnn.metrics['test_acc']:.3f}, run {cnn.run_id}")

# %% [markdown]
# Its confusion matrix on the test images, as the run stored it: rows are the true digits,
# columns the predictions.

# %%
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=cnn.run_id, artifact_path="confusion_matrix.png")))

# %% [markdown]
# ## Predicting a digit you draw
#
# A "7" drawn with PIL, as a photo of ink on paper would be: dark strokes on a light background,
# any size. Draw your own in any paint program and save it as a PNG instead.

# %%
from PIL import Image as PILImage
from PIL import ImageDraw

drawing = PILImage.new("L", (200, 200), color=255)
ImageDraw.Draw(drawing).line([(45, 45), (155, 45), (85, 170)], fill=0, width=16)
drawing.save("my_digit.png")
drawing

# %% [markdown]
# `lit-nn predict` loads the CNN run's best checkpoint and its config, frames the image as MNIST's
# digits were (grey, inverted, fitted into 20 × 20 pixels, centred in 28 × 28) and prints the
# prediction; the predictions are a new MLflow run (`predictions.csv`).

# %%
import subprocess
import sys

predicted = subprocess.run([sys.executable, "-m", "lit_nn", "predict", "--ckpt_path", cnn.run_id,
                            "--images", "my_digit.png", "--trainer.enable_progress_bar", "false"],
                           capture_output=True, text=True, check=True)
print(predicted.stdout)

# %% [markdown]
# The runs in MLflow: `make ui` in the clone, then these addresses.

# %%
for fitted in (mlp, linear, softmax, cnn):
    experiment_id = client.get_run(fitted.run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{fitted.run_id}")
