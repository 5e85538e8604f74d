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
# # 2. 活性化関数、ソフトマックス関数と交差エントロピー誤差、損失関数
#
# 学習の道筋の[ステップ 2](../../../docs/learning-path.ja.md#2-活性化関数)、
# [ステップ 3](../../../docs/learning-path.ja.md#3-ソフトマックス関数と交差エントロピー誤差)、
# [ステップ 4](../../../docs/learning-path.ja.md#4-損失関数) ・ 本の §3.2、§3.5、§4.2、§6.2 ・
# ターミナルで同じことをするなら `lit-nn lab activations` と `lit-nn lab losses`

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
# ## 活性化関数
#
# 6 つの活性化関数とその導関数を、ここで直接描きます。

# %%
from lit_nn.lab import activations

activations.functions_figure()

# %% [markdown]
# シグモイド関数の導関数は最大でも 0.25、tanh の導関数は入力が大きいと 0 に近づきます。こうした層を
# いくつも通るたびに勾配は小さくなっていきます（勾配消失）。ReLU の導関数は正の入力に対してちょうど 1 です。
#
# 次にラボを実行します。ランダムな入力を 5 層に通し、シグモイド・tanh・ReLU のそれぞれについて、
# 重みの初期値を 3 通り（標準偏差 0.01、Xavier の初期値、He の初期値）試します。MLflow の
# 実験 `lab` に run が 1 つできます。

# %%
act = activations.run(samples=100 if QUICK else 1000)

# %%
print(act["summary"])

# %% [markdown]
# 各層の出力の広がり（標準偏差）を、ラボの結果からグラフにします。

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
# **図の見どころ:** 重みの標準偏差が 0.01 だと、層を重ねるごとに出力の広がりがしぼんでいきます
# （シグモイド関数では 0.5 付近に集まり、ほとんど広がりがありません）。Xavier の初期値（シグモイド・
# tanh 向け）や He の初期値（ReLU 向け）なら、5 層目まで広がりが保たれます。ラボが run に保存した
# ヒストグラムでも同じことがわかります。

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=act["run_id"], artifact_path="layer_histograms.png")))

# %% [markdown]
# ## ソフトマックス関数と交差エントロピー誤差
#
# `nn.CrossEntropyLoss()` には、ネットワークの生のスコア（ロジット）と、正解クラスの番号を渡します。
# log-softmax は中で計算されます。手前でソフトマックス関数を通すと、2 回かかってしまいます。

# %%
import torch
import torch.nn.functional as F

scores = torch.tensor([[2.0, 0.5, -1.0]])  # 3 クラスに対するモデルの生のスコア（ロジット）
label = torch.tensor([0])  # 正解はクラスの番号で。one-hot にはしない
loss = torch.nn.CrossEntropyLoss()
print(f"{loss(scores, label).item():.4f}")  # ロジットの交差エントロピー誤差
print(f"{-F.log_softmax(scores, dim=1)[0, 0].item():.4f}")  # 同じ値: log-softmax は中にある
print(f"{loss(F.softmax(scores, dim=1), label).item():.4f}")  # 先にソフトマックス: 2 回かかる

# %% [markdown]
# 損失関数のラボは、同じ MLP を MNIST のサンプルで 2 回学習させます。重みの初期値も SGD も同じで、
# 1 回目はソフトマックス関数＋交差エントロピー誤差、2 回目は one-hot の正解に対する 2 乗和誤差です。
# あわせて、各損失関数を予測値に対して描きます。

# %%
from lit_nn.lab import losses

lossrun = losses.run(epochs=1 if QUICK else 5, max_batches=2 if QUICK else None)

# %%
print(lossrun["summary"])

# %% [markdown]
# エポックごとの検証データの正解率（val_acc）を、損失関数ごとに 1 本の線で描きます。

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, rows in lossrun["histories"].items():
    ax.plot(range(1, len(rows) + 1), [row["val_acc"] for row in rows], marker="o", label=name)
ax.set(xlabel="epoch", ylabel="val_acc", title="softmax + cross-entropy vs squared error")
ax.legend()
plt.show()

# %% [markdown]
# **図の見どころ:** 交差エントロピー誤差の勾配は「予測した確率 − 正解」なので、自信を持って
# 間違えたときほど大きく修正されます。2 乗和誤差では出力が飽和していると勾配が小さく、学習が遅くなります。
#
# ## 損失関数
#
# 各損失関数を予測値に対して描いたグラフです（run の `loss_curves.png`）。

# %%
display(Image(mlflow.artifacts.download_artifacts(run_id=lossrun["run_id"], artifact_path="loss_curves.png")))

# %% [markdown]
# MSE は誤差の 2 乗で、MAE は誤差に比例して増えます。Huber は正解の近くでは MSE、遠くでは MAE の
# ようにふるまいます。交差エントロピー誤差は正解クラスの確率が 0 に近づくと際限なく大きくなりますが、
# one-hot に対する 2 乗和誤差は 2 未満にとどまります。ヒンジ損失はマージン 1 を超えるとぴったり 0 です。
#
# 2 つの run を MLflow で開くには、クローンで `make ui` を実行してから次のアドレスを開きます。

# %%
client = mlflow.MlflowClient()
for run_id in (act["run_id"], lossrun["run_id"]):
    experiment_id = client.get_run(run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
