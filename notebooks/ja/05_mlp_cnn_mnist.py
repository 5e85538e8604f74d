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
# # 5. MNIST で MLP と CNN: 層の深さ、線形のネットワーク、畳み込み
#
# 学習の道筋の[ステップ 8](../../../docs/learning-path.ja.md#8-層の深さ)、
# [ステップ 9](../../../docs/learning-path.ja.md#9-なぜ活性化関数が必要なのか-線形のネットワーク)、
# [ステップ 10](../../../docs/learning-path.ja.md#10-畳み込みニューラルネットワークcnn) ・ 本の §3.2.6、§3.4、7 章 ・
# ターミナルで同じことをするなら `lit-nn fit -c experiments/mnist_mlp.yaml`（`--model.init_args.depth 0` や
# `--model.init_args.activation identity` を付けて）、`make train`、
# `lit-nn predict --ckpt_path RUN_ID --images my_digit.png`

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
# 以下の学習の予算です。設定ファイルのまま（MLP は 10 エポック、CNN は 25 エポック）か、quick の
# ときは数バッチだけです。キーワードは `lit-nn fit` のオプションで、`__` がドットの代わりです。

# %%
BUDGET = dict(trainer__max_epochs=1, trainer__limit_train_batches=3, trainer__limit_val_batches=1,
              trainer__limit_test_batches=1, log_model=False) if QUICK else {}

# %% [markdown]
# ## MNIST のサンプルで 3 つの MLP
#
# `experiments/mnist_mlp.yaml` の MLP（128 ユニットの隠れ層 2 つ、ReLU）、同じ層で活性化関数なし
# （`identity`: ネットワーク全体が 1 つの線形写像のまま）、そして深さ 0（ソフトマックス回帰、線形の層
# 1 つ）です。`lit_nn.fit` 1 回が、MLflow の実験 `mnist` の run 1 つになります。

# %%
mlp_config = REPO / "experiments" / "mnist_mlp.yaml"
mlp = lit_nn.fit(mlp_config, run_name="mlp relu", **BUDGET)

# %%
linear = lit_nn.fit(mlp_config, model__activation="identity", run_name="mlp identity", **BUDGET)

# %%
softmax = lit_nn.fit(mlp_config, model__depth=0, run_name="softmax regression", **BUDGET)

# %% [markdown]
# 学習曲線を MLflow から読み出して描きます（各 run のエポックごとの検証データの正解率 `val_acc`）。

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
# **図の見どころ:** 活性化関数がないと、深いネットワークもソフトマックス回帰と同じところで止まります。
# W₄(W₃(W₂(W₁x + b₁) + b₂) + b₃) + b₄ は、層がいくつあっても 1 つの行列と x の積に 1 つのベクトルを
# 足したものだからです。層のあいだに ReLU があって初めて、深さが役に立ちます。`make compare-depth` と
# `make compare-linear` は、これらを 3 つのシードで比べ、どの差がシードで裏付けられるかを示します。
#
# ## 畳み込みニューラルネットワーク（CNN）
#
# CNN の各層のあとの形です。`fc1` の入力 800 はここから来ます。

# %%
import torch

from lit_nn.models import CNN

model = CNN(channels=(16, 32), fc=(128, 64))  # ノートの Net: experiments/seeds/mnist_cnn.yaml
x = torch.zeros(1, 1, 28, 28)  # 28 × 28 のグレースケール画像 1 枚
for layer in model.net:  # 各層のあとの形
    x = layer(x)
    print(f"{type(layer).__name__:9} -> {tuple(x.shape)}")

# %% [markdown]
# 既定の CNN（`experiments/mnist_cnn.yaml`、`make train` が実行するもの）を学習させます。

# %%
cnn = lit_nn.fit(REPO / "experiments" / "mnist_cnn.yaml", run_name="cnn", **BUDGET)
print(f"test_acc {cnn.metrics['test_acc']:.3f}, run {cnn.run_id}")

# %% [markdown]
# テスト画像での混同行列です（run に保存された図）。行が正解の数字、列が予測です。

# %%
from IPython.display import Image, display

display(Image(mlflow.artifacts.download_artifacts(run_id=cnn.run_id, artifact_path="confusion_matrix.png")))

# %% [markdown]
# ## 自分で書いた数字を予測する
#
# PIL で「7」を書きます。紙にペンで書いた写真と同じく、明るい背景に暗い線で、大きさは自由です。
# お絵かきソフトで自分の数字を書いて PNG で保存し、かわりに使ってもかまいません。

# %%
from PIL import Image as PILImage
from PIL import ImageDraw

drawing = PILImage.new("L", (200, 200), color=255)
ImageDraw.Draw(drawing).line([(45, 45), (155, 45), (85, 170)], fill=0, width=16)
drawing.save("my_digit.png")
drawing

# %% [markdown]
# `lit-nn predict` は CNN の run の最良のチェックポイントと設定を読み込み、画像を MNIST の数字と同じ形
# （グレースケール、白黒反転、20 × 20 ピクセルに収めて 28 × 28 の中央へ）に整えてから予測を表示します。
# 予測は新しい MLflow の run（`predictions.csv`）になります。

# %%
import subprocess
import sys

predicted = subprocess.run([sys.executable, "-m", "lit_nn", "predict", "--ckpt_path", cnn.run_id,
                            "--images", "my_digit.png", "--trainer.enable_progress_bar", "false"],
                           capture_output=True, text=True, check=True)
print(predicted.stdout)

# %% [markdown]
# MLflow で run を開くには、クローンで `make ui` を実行してから次のアドレスを開きます。

# %%
for fitted in (mlp, linear, softmax, cnn):
    experiment_id = client.get_run(fitted.run_id).info.experiment_id
    print(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{fitted.run_id}")
