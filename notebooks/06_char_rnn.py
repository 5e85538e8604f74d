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
# # 6. A character-level RNN
#
# [Learning path, step 11](../../docs/learning-path.md#11-recurrent-networks) · the sequel book, ch. 5-7 ·
# the same runs from a terminal: `make train-rnn`, then
# `lit-nn generate --ckpt RUN_ID --prime "def " --length 300 --temperature 0.8`

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
# ## The target is the next character
#
# The text is cut into windows; the input is a window and the target the same window shifted by
# one character:

# %%
from lit_nn.data.text import TextWindows, build_vocab, decode

vocab, ids = build_vocab("hello world")
inputs, targets = next(iter(TextWindows(ids, seq_len=8, batch_size=1)))
print(repr(decode(inputs[0], vocab)), "->", repr(decode(targets[0], vocab)))

# %% [markdown]
# ## Training
#
# `experiments/char_rnn.yaml`: an LSTM on the text of Python's documentation topics (embedded,
# offline), 6 epochs (about 9 minutes on 2 CPU cores), or a few batches in quick mode.

# %%
BUDGET = dict(trainer__max_epochs=1, trainer__limit_train_batches=3, trainer__limit_val_batches=1,
              trainer__limit_test_batches=1, model__sample_length=10, log_model=False) if QUICK else {}
rnn = lit_nn.fit(REPO / "experiments" / "char_rnn.yaml", **BUDGET)
print(rnn.run_id, {k: round(v, 3) for k, v in rnn.metrics.items() if k.startswith("val_")})

# %% [markdown]
# The loss per epoch, in nats per character, read back from MLflow:

# %%
import matplotlib.pyplot as plt
import mlflow

client = mlflow.MlflowClient()
fig, ax = plt.subplots(figsize=(6, 3.5))
for key in ("train_loss", "val_loss"):
    history = client.get_metric_history(rnn.run_id, key)  # one value per epoch (MLflow step = epoch)
    ax.plot([m.step + 1 for m in history], [m.value for m in history], "o-", label=key)
ax.axhline(4.6, color="0.6", linestyle=":", label="uniform guess over ~100 characters")
ax.set(xlabel="epoch", ylabel="nats / char", title="char-RNN loss")
ax.legend()
plt.show()

# %% [markdown]
# **What to notice.** Guessing uniformly among ~100 characters scores ln 100 ≈ 4.6 nats; every
# step below that is the network using the characters before to predict the next one.
#
# ## Generating at several temperatures
#
# `lit-nn generate`'s own function, in this process: the run's best checkpoint, the prime `def `,
# 200 characters at each temperature, the same seed. Temperature 0 always takes the likeliest
# character; higher ones draw more freely.

# %%
import contextlib
import io

from lit_nn.cli.commands import generate

for temperature in (0, 0.5, 1.0):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):  # generate streams one character at a time
        generate(rnn.run_id, prime="def ", length=200, temperature=temperature, seed=0)
    print(f"--- temperature {temperature}\n{text.getvalue()}")

# %% [markdown]
# At 0 the text soon repeats itself; at 1.0 it invents more words, and more misspellings. The run
# in MLflow (its per-epoch text samples are under `samples/`): `make ui` in the clone, then:

# %%
experiment_id = client.get_run(rnn.run_id).info.experiment_id
print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{rnn.run_id}")
