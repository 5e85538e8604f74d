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
# # 3. ミニバッチ、数値微分と誤差逆伝播法（NumPy のネットワーク）
#
# 学習の道筋の[ステップ 5](../../../docs/learning-path.ja.md#5-ミニバッチとエポック)と
# [ステップ 6](../../../docs/learning-path.ja.md#6-数値微分と誤差逆伝播法) ・ 本の §4.2〜§4.5、5 章、§5.7.3 ・
# ターミナルで同じことをするなら `lit-nn lab scratch`
#
# `TwoLayerNet`（`src/lit_nn/lab/twolayer.py`）は、本の 2 層ニューラルネットワークを NumPy で書いたもので、
# 誤差逆伝播法も手で書いてあります。

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
# ## 損失はミニバッチごとに下がっていくのか
#
# ノートの設定（バッチサイズ 10、学習率 0.1、重みの初期値の標準偏差 0.01）で、MNIST のサンプルの
# 訓練画像 4,000 枚を使い、ミニバッチごとの損失を記録します。

# %%
import numpy as np

from lit_nn.lab.scratch import load_mnist_sample
from lit_nn.lab.twolayer import TwoLayerNet

(x, t), _ = load_mnist_sample()  # MNIST のサンプルの訓練画像 4,000 枚
iterations = 400 if QUICK else 2000
net, rng, batch_losses = TwoLayerNet(784, 50, 10, weight_init_std=0.01), np.random.default_rng(0), []
for _ in range(iterations):  # 1 イテレーションにつき 10 個のミニバッチ 1 つ
    batch = rng.choice(len(t), 10)
    batch_losses.append(net.loss(x[batch], t[batch]))
    net.step(net.gradient(x[batch], t[batch]), lr=0.1)

# %% [markdown]
# ミニバッチ 1 つごとの損失（灰色）と、全体を 8 つに分けたそれぞれの平均（赤）です。

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
# **図の見どころ:** ミニバッチが変わるたびに、損失は上がったり下がったりします。どの点も 10 枚分の
# 損失だからです。傾向は平均で読みます。平均は毎回下がっています。lit-nn の `train_loss` も、
# 1 エポック分のこうした平均です。
#
# ## ラボ: 勾配確認、計算時間、学習
#
# ラボは、手で書いた誤差逆伝播法の勾配を数値微分の勾配、PyTorch の autograd の勾配と比べ（勾配確認）、
# 勾配 1 回分の計算時間を測ってから、100 枚ずつのミニバッチでネットワークを学習させます。

# %%
from lit_nn.lab import scratch

result = scratch.run(epochs=1 if QUICK else 10)

# %%
print(result["summary"])

# %% [markdown]
# エポックごとの正解率を、ラボの履歴からグラフにします（エポック 0 は学習前）。

# %%
history = result["history"]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([h["epoch"] for h in history], [h["train_acc"] for h in history], "o-", label="train")
ax.plot([h["epoch"] for h in history], [h["test_acc"] for h in history], "s--", label="test")
ax.set(xlabel="epoch", ylabel="accuracy", title="NumPy TwoLayerNet on the MNIST sample")
ax.legend()
plt.show()

# %% [markdown]
# 1 エポックは 100 枚ずつのミニバッチ 40 個なので、重みは 40 回更新されます。正解率は 1 エポック目で
# 偶然レベル（10 %）から一気に上がります。訓練データとテストデータの曲線は離れておらず、まだ過学習
# していません。
#
# run に保存された勾配確認の図（`gradient_check.png`）です。

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="gradient_check.png")))

# %% [markdown]
# **図の見どころ:** どのパラメータでも、誤差逆伝播法と数値微分の差は勾配そのものの 100 万分の 1
# 程度で、autograd との差は丸め誤差のレベルです。手で書いた誤差逆伝播法は正しく実装できています。
# 数値微分は重み 1 つごとにネットワークを 2 回計算するので、何千倍も時間がかかります。

# %%
print(f"numerical / backprop time: {result['timing']['ratio']:,.0f}x")

# %% [markdown]
# MLflow で run を開くには、クローンで `make ui` を実行してから次のアドレスを開きます。

# %%
client = mlflow.MlflowClient()
experiment_id = client.get_run(result["run_id"]).info.experiment_id
print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{result['run_id']}")
