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
# # 4. パラメータの更新（最適化手法）
#
# [学習の道筋、ステップ 7](../../../docs/learning-path.ja.md#7-パラメータの更新最適化手法) ・ 本の §6.1 ・
# ターミナルで同じことをするなら `lit-nn lab trajectories`、そのあと `make compare-optimizers` のようなスイープ

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
# ## 2 つのお椀の上の 7 つの最適化手法
#
# `torch.optim` の SGD、Momentum、AdaGrad、RMSprop、Adadelta、Adam、AdamW が、学習率 0.1 で
# 丸いお椀 x² + y² と細長いお椀 x²/20 + y²（本の §6.1.3）を下っていきます。

# %%
from lit_nn.lab import trajectories

paths = trajectories.run(steps=20 if QUICK else 100)

# %%
print(paths["summary"])

# %% [markdown]
# 細長いお椀の上の軌跡です（run に保存された図）。

# %%
import mlflow
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=paths["run_id"], artifact_path="trajectories_stretched.png")))

# %% [markdown]
# **図の見どころ:** SGD はまず急な y 方向に落ち、そのあと平らな x 方向をのろのろ進みます。
# まさにこういう地形のために、適応的な手法（AdaGrad、RMSprop、Adam）が考えられました。Momentum は
# 行き過ぎて戻ってきます。Adadelta は歩幅が学習率に比例しないので、ほとんど動きません。
#
# ## 学習率: 大きすぎると発散する
#
# x² + y² では、SGD の 1 ステップで x は (1 − 2 × 学習率) 倍になります。学習率が 1 を超えると、
# 跳ぶたびに前より外側に着地します。

# %%
too_large = trajectories.run(functions=["round"], optimizers=["sgd", "momentum", "adam"], lr=1.05,
                             steps=10 if QUICK else 30)
print(too_large["summary"])

# %%
display(Image(mlflow.artifacts.download_artifacts(run_id=too_large["run_id"], artifact_path="distance_per_step.png")))

# %% [markdown]
# ## ネットワークでの比較
#
# `experiments/compare_optimizers.yaml` の各点（手法ごとに手で選んだ学習率）を、Fashion-MNIST の
# かわりに MNIST のサンプルで、自分用のスイープとして実行します。点とシードごとに `lit-nn fit` の
# run が 1 つでき、1 つの親 run の下にまとまります。

# %%
import yaml

sweep = yaml.safe_load((REPO / "experiments" / "compare_optimizers.yaml").read_text())
sweep["name"] = "notebook_optimizers"
sweep["description"] = "compare_optimizers.yaml's points on the MNIST sample (notebook 04)"
sweep["config"]["data"]["init_args"]["dataset"] = "mnist"
sweep["config"]["trainer"]["max_epochs"] = 1 if QUICK else 5
sweep["seeds"] = [0] if QUICK else [0, 1, 2]
if QUICK:  # 7 点のうち 2 点だけ
    sweep["points"] = [p for p in sweep["points"] if p["name"] in ("sgd", "adam")]
Path("notebook_optimizers.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
print([point["name"] for point in sweep["points"]], "seeds", sweep["seeds"])

# %%
quick = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--log_model", "false", "--log_checkpoint", "false"] if QUICK else []
report = lit_nn.sweep("notebook_optimizers.yaml", *quick, workers=2)

# %% [markdown]
# スイープの run を `mlflow.search_runs` で MLflow から読み出します。1 行が 1 つの run で
# （親 run はタグ `sweep_role = parent` なので除きます）、最適化手法、学習率、正解率が並びます。

# %%
runs = mlflow.search_runs(experiment_names=["notebook_optimizers"], filter_string="tags.sweep_role = 'point'")
table = runs[["tags.sweep_point", "tags.seed", "params.model.optimizer", "params.model.lr",
              "metrics.val_acc", "metrics.test_acc"]]
table.sort_values(["tags.sweep_point", "tags.seed"])

# %% [markdown]
# 点ごとのシードの平均を、良い順に並べます。

# %%
means = table.groupby("tags.sweep_point")[["metrics.val_acc", "metrics.test_acc"]].mean()
means = means.sort_values("metrics.val_acc", ascending=False)
means

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.barh(means.index, means["metrics.val_acc"], color="tab:blue")
ax.invert_yaxis()
ax.set(xlabel="final val_acc, mean of the seeds", title="one hand-picked lr per optimizer, MNIST sample")
plt.show()

# %% [markdown]
# **図の見どころ:** この順位は、手法そのものと同じくらい、手で選んだ学習率の順位でもあります。
# `make compare-optimizers-tuned` は、どの手法にも同じ調整の予算を与えてから判定します。
# 下は lit-nn 自身のスイープのレポート（点ごとの曲線、シードの平均と幅）です。

# %%
report.figure

# %%
print(report.markdown_path)
print(report.ui)

# %% [markdown]
# 2 つのラボの run を MLflow で開くには、クローンで `make ui` を実行してから次のアドレスを開きます
# （スイープのアドレスは上に出ています）。

# %%
client = mlflow.MlflowClient()
for run_id in (paths["run_id"], too_large["run_id"]):
    experiment_id = client.get_run(run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
