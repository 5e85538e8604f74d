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
# # 6. 文字単位の RNN
#
# [学習の道筋、ステップ 11](../../../docs/learning-path.ja.md#11-再帰型ニューラルネットワークrnn) ・
# 続編『ゼロから作るDeep Learning ❷ 自然言語処理編』の 5〜7 章 ・ ターミナルで同じことをするなら
# `make train-rnn`、そのあと `lit-nn generate --ckpt RUN_ID --prime "def " --length 300 --temperature 0.8`

# %% [markdown]
# lit-nn の場所と、実行（run）の記録先を決めます。記録先は `make ui` と同じ MLflow のストア
# （クローンの `mlruns/`）で、`MLFLOW_TRACKING_URI` が設定されていればそちらです。
# `LIT_NN_NOTEBOOK_QUICK=1`（テストが設定します）のときは、どの学習もごく短くなります。

# %%
import os
from pathlib import Path

import lit_nn

REPO = Path(lit_nn.__file__).resolve().parents[2]  # lit-nn のクローン（make install は pip install -e）
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO}/mlruns/mlflow.db")
QUICK = os.environ.get("LIT_NN_NOTEBOOK_QUICK") == "1"
print("runs go to", os.environ["MLFLOW_TRACKING_URI"], "(quick budgets)" if QUICK else "")

# %% [markdown]
# ## 正解は次の文字
#
# 文章を一定の長さの窓に切り分けます。入力が 1 つの窓で、正解はその窓を 1 文字ずらしたものです。

# %%
from lit_nn.data.text import TextWindows, build_vocab, decode

vocab, ids = build_vocab("hello world")
inputs, targets = next(iter(TextWindows(ids, seq_len=8, batch_size=1)))
print(repr(decode(inputs[0], vocab)), "->", repr(decode(targets[0], vocab)))

# %% [markdown]
# ## 学習
#
# `experiments/char_rnn.yaml`: Python のドキュメントのトピックの文章（同梱、オフライン）で LSTM を
# 6 エポック学習させます（2 コアの CPU で約 9 分）。quick のときは数バッチだけです。

# %%
BUDGET = dict(trainer__max_epochs=1, trainer__limit_train_batches=3, trainer__limit_val_batches=1,
              trainer__limit_test_batches=1, model__sample_length=10, log_model=False) if QUICK else {}
rnn = lit_nn.fit(REPO / "experiments" / "char_rnn.yaml", **BUDGET)
print(rnn.run_id, {k: round(v, 3) for k, v in rnn.metrics.items() if k.startswith("val_")})

# %% [markdown]
# エポックごとの損失（1 文字あたりのナット）を MLflow から読み出して描きます。

# %%
import matplotlib.pyplot as plt
import mlflow

client = mlflow.MlflowClient()
fig, ax = plt.subplots(figsize=(6, 3.5))
for key in ("train_loss", "val_loss"):
    history = client.get_metric_history(rnn.run_id, key)  # エポックごとに 1 つの値（MLflow の step = エポック）
    ax.plot([m.step + 1 for m in history], [m.value for m in history], "o-", label=key)
ax.axhline(4.6, color="0.6", linestyle=":", label="uniform guess over ~100 characters")
ax.set(xlabel="epoch", ylabel="nats / char", title="char-RNN loss")
ax.legend()
plt.show()

# %% [markdown]
# **図の見どころ:** 約 100 種類の文字からでたらめに選ぶと ln 100 ≈ 4.6 ナットです。そこから下がった分
# だけ、ネットワークが前の文字を使って次の文字を予測できています。
#
# ## いくつかの温度で文章を生成する
#
# `lit-nn generate` と同じ関数を、このプロセスの中で呼びます。run の最良のチェックポイントから、
# 書き出し `def ` に続けて 200 文字を、温度ごとに同じシードで生成します。温度 0 はいつもいちばん
# ありそうな文字を選び、温度が高いほど自由に選びます。

# %%
import contextlib
import io

from lit_nn.cli.commands import generate

for temperature in (0, 0.5, 1.0):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):  # generate は 1 文字ずつ出力する
        generate(rnn.run_id, prime="def ", length=200, temperature=temperature, seed=0)
    print(f"--- temperature {temperature}\n{text.getvalue()}")

# %% [markdown]
# 温度 0 では文章がすぐ同じことを繰り返し、1.0 では新しい単語もつづりの誤りも増えます。MLflow で
# run を開くには（エポックごとの生成例は `samples/` にあります）、クローンで `make ui` を実行してから
# 次のアドレスを開きます。

# %%
experiment_id = client.get_run(rnn.run_id).info.experiment_id
print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{rnn.run_id}")
