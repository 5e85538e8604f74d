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
# # 7. 学習中のネットワークの中を見る: 死んだ ReLU、勾配消失
#
# [学習の道筋、ステップ 12](../../../docs/learning-path.ja.md#12-学習中のネットワークの中を見る-死んだ-relu勾配消失飽和)
# ・ 本の 5 章、§6.2 ・ ターミナルで同じことをするなら
# `lit-nn fit -c experiments/mnist_mlp.yaml --model.init_args.lr 0.1 --trainer.max_epochs 5 --dynamics_every 10`
# と、このステップの `--experiment vanishing` の 2 つの学習

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
# どの学習でも、`dynamics_every` ステップごとに、ネットワークの中を層ごとに記録します。
# `grad_norm/<層>`、`weight_norm/`、`update_ratio/`、`dead_frac/`（ReLU）などです。このステップの予算は
# 32 ミニバッチ × 5 エポックで、10 ステップごとに記録します（quick のときは 3 バッチで、毎ステップ記録）。

# %%
BUDGET = dict(trainer__max_epochs=1, trainer__limit_train_batches=3, trainer__limit_val_batches=1,
              trainer__limit_test_batches=1, dynamics_every=1, log_model=False) if QUICK else dict(
              trainer__max_epochs=5, trainer__limit_train_batches=32, dynamics_every=10)
mlp_config = REPO / "experiments" / "mnist_mlp.yaml"

# %% [markdown]
# ## 学習率が大きすぎると ReLU が死ぬ
#
# Adam の学習率を 0.1、設定ファイルの 0.001 の 100 倍にします。

# %%
dead = lit_nn.fit(mlp_config, model__lr=0.1, run_name="relu lr 0.1", **BUDGET)

# %% [markdown]
# 隠れ層ごとに、ミニバッチのどの画像に対しても 0 を出力した ReLU の割合を、MLflow から読み出して描きます。

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
# エポックごとの ReLU の出力のヒストグラムです（run に保存された図）。

# %%
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=dead.run_id, artifact_path="dynamics/activations.png")))

# %% [markdown]
# **図の見どころ:** 最初の更新が大きすぎて、多くのユニットで、どの画像に対しても入力が負になります。
# そこでは ReLU の微分が 0 なので、重みに勾配が届かず、生き返ることもありません。
#
# ## 勾配消失: 深さ 3 のシグモイド関数と ReLU
#
# 隠れ層 3 つ、学習率 0.1 のただの SGD で（Adam だと小さな勾配が目立たなくなります）、シグモイド関数と
# ReLU で 1 回ずつ学習させます。

# %%
deep = dict(model__depth=3, model__optimizer="sgd", model__lr=0.1, experiment="vanishing", **BUDGET)
sigmoid = lit_nn.fit(mlp_config, model__activation="sigmoid", run_name="sigmoid depth 3", **deep)

# %%
relu = lit_nn.fit(mlp_config, model__activation="relu", run_name="relu depth 3", **deep)

# %% [markdown]
# 層ごとの勾配の大きさを、同じ対数目盛で描きます。

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
# **図の見どころ:** シグモイド関数では層が順に並び、最初の層の勾配は最後の層よりずっと小さくなります。
# 誤差逆伝播法では、通る層ごとにシグモイド関数の微分（最大でも 0.25）が掛けられるからです（勾配消失）。
# ReLU（正の入力で微分が 1）では、4 つの層がまとまっています。
#
# MLflow で run を開くには、クローンで `make ui` を実行してから次のアドレスを開きます。

# %%
for fitted in (dead, sigmoid, relu):
    experiment_id = client.get_run(fitted.run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{fitted.run_id}")
