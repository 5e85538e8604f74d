"""``lit-nn predict`` shows its answer: on a checkpoint or a run id, a table, the accuracy and a
predictions CSV in the run; on the learner's own image files, a class and probability per file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import runs_of
from helpers import assert_clean_error, run_cli

QUIET = ["--trainer.enable_progress_bar", "false"]


def held_out_digits(folder: Path) -> list[Path]:
    """The first test-split image of each class, 200×200, dark on light: a learner's drawing."""
    from lit_nn.data.images import ImageDataModule

    dm = ImageDataModule("mnist")
    dm.setup("test")
    x, y = dm.splits["test"]
    pixels = ((x[:, 0] * dm.spec.std + dm.spec.mean) * 255).round().clamp(0, 255).byte().numpy()
    paths = []
    for digit in range(10):
        index = int((y == digit).nonzero()[0])
        path = folder / f"my_{digit}.png"
        Image.fromarray(255 - pixels[index]).resize((200, 200), Image.Resampling.BILINEAR).save(path)
        paths.append(path)
    return paths


def train(client, experiment: str, *args: str) -> str:
    result = run_cli("fit", "-c", "experiments/mnist_cnn.yaml", "--experiment", experiment, *args, *QUIET,
                     timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(client, experiment)
    return run.info.run_id


def predict_images(run_id: str, paths: list[Path]) -> dict[str, str]:
    result = run_cli("predict", "--ckpt_path", run_id, *QUIET, "--images", *map(str, paths))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(str(paths[0].parent))]
    return {Path(row[0]).stem[-1]: row[1] for row in rows}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CNN trained for 3 epochs in a store of this module's own."""
    import os

    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("predict")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    (root / "mlruns").mkdir()
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        client = MlflowClient(uri)
        run_id = train(client, "cnn3", "--trainer.max_epochs", "3")
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = old or ""
    return {"uri": uri, "run_id": run_id, "root": root}


def test_predict_on_a_run_id_shows_and_records_its_predictions(trained, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    result = run_cli("predict", "--ckpt_path", trained["run_id"], *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "input  predicted  probability  label" in out and "... 490 more in predictions.csv" in out
    accuracy = next(line for line in out.splitlines() if line.startswith("accuracy:"))
    client = MlflowClient(trained["uri"])
    runs = [r for r in runs_of(client, "cnn3") if r.info.run_id != trained["run_id"]]
    (predict_run,) = runs
    assert predict_run.info.status == "FINISHED"
    rows = list(csv.DictReader(io.StringIO(Path(client.download_artifacts(
        predict_run.info.run_id, "predictions.csv", str(trained["root"]))).read_text())))
    assert len(rows) == 500 and set(rows[0]) == {"index", "file", "predicted", "probability", "label"}
    correct = sum(r["predicted"] == r["label"] for r in rows)
    assert accuracy == f"accuracy: {correct / 500:.4f} ({correct} of 500 correct)"
    assert all(0.0 < float(r["probability"]) <= 1.0 for r in rows)
    assert result.stderr.strip().splitlines()[-1].startswith("mlflow: run ")  # the last word, on stderr


def test_predict_images_classifies_a_learners_digits(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    got = predict_images(trained["run_id"], held_out_digits(tmp_path))
    assert len(got) == 10
    assert sum(got[str(d)] == str(d) for d in range(10)) >= 9, got


def test_preprocessing_frames_a_digit_like_mnist(tmp_path):
    from lit_nn.data.image_files import load_digit

    canvas = np.full((300, 180), 240, dtype=np.uint8)  # light paper, a dark bar off-centre
    canvas[40:200, 100:130] = 20
    Image.fromarray(canvas).save(tmp_path / "bar.jpg")
    digit = load_digit(tmp_path / "bar.jpg").numpy().astype(float)
    assert digit.shape == (28, 28) and digit.max() == 255 and digit[0].max() == 0  # light on black, margins
    rows, cols = np.nonzero(digit > 64)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # the longer side fitted to 20 pixels
    cy = (digit.sum(1) * np.arange(28)).sum() / digit.sum()
    assert abs(cy - 13.5) <= 1.0  # centred by mass


def test_predict_bad_images_and_models(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    (tmp_path / "notes.png").write_text("not an image")
    result = run_cli("predict", "--ckpt_path", trained["run_id"], *QUIET, "--images", str(tmp_path / "notes.png"))
    assert_clean_error(result, "notes.png is not an image that can be read")
    result = run_cli("predict", "--ckpt_path", trained["run_id"], *QUIET, "--images", str(tmp_path / "nope.png"))
    assert_clean_error(result, "image", "nope.png does not exist")
    result = run_cli("predict", "--ckpt_path", "0" * 32, *QUIET)
    assert_clean_error(result, f"no run {'0' * 32} in the tracking store")
    result = run_cli("test", "-c", "experiments/mnist_cnn.yaml", "--images", "x.png")
    assert_clean_error(result, "--images is an option of lit-nn predict")


@pytest.mark.slow
def test_the_default_run_classifies_nine_of_ten_handmade_digits(client, tmp_path):
    run_id = train(client, "default")
    got = predict_images(run_id, held_out_digits(tmp_path))
    assert sum(got[str(d)] == str(d) for d in range(10)) >= 9, got
