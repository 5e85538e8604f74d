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
# # 1. パーセプトロンと論理ゲート
#
# [学習の道筋、ステップ 1](../../../docs/learning-path.ja.md#1-パーセプトロンと論理ゲート) ・ 本の 2 章 ・
# ターミナルで同じことをするなら `lit-nn lab gates`
#
# パーセプトロンは、入力の重み付き和としきい値だけでできています。このラボでは AND・OR・NAND を
# パーセプトロンに学習させ、次に XOR で失敗するところと、隠れ層を 1 つ持つネットが XOR を学習する
# ところを見ます。

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
# 5 つのモデルを学習させます。各真理値表の 4 行すべてを一度に使う勾配降下法です。

# %%
from lit_nn.lab import gates

result = gates.run(epochs=50 if QUICK else 500)

# %% [markdown]
# 各モデルが計算した真理値表と、XOR でのパーセプトロンの出力（確率）です。

# %%
print(result["summary"])

# %% [markdown]
# 決定境界の図です。ラボが MLflow の run に保存したもの（`decision_boundaries.png`）を表示します。

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="decision_boundaries.png")))

# %% [markdown]
# **図の見どころ:** AND・OR・NAND では、1 本の直線（出力が 0.5 になる黒い線）で赤い丸と青い四角を
# 分けられます。XOR ではそんな直線は引けず、パーセプトロンの出力はどこでも 0.5 付近にとどまります。
# 隠れ層が境界を折り曲げることで、XOR も学習できます。
#
# 各モデルのエポックごとの損失を、run のメトリクスから読み出してグラフにします。

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
# XOR のパーセプトロンの損失は高いまま下がりません。3 つの重みをどう選んでも、4 行すべてには
# 正解できないからです（グラフの binary cross-entropy は 2 値の交差エントロピー誤差です）。
#
# MLflow で run を開くには、クローンで `make ui` を実行してから次のアドレスを開きます。

# %%
experiment_id = client.get_run(result["run_id"]).info.experiment_id
print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{result['run_id']}")
