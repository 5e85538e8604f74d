"""A sweep that cannot succeed says so before anything runs (issue 24, item 3): every point's data is
looked up first, and missing data is one sentence, no MLflow run, store or report, and a non-zero exit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from lit_nn.data.images import DATASETS, SPLIT_FILES

from helpers import REPO, assert_clean_error, run_cli, run_main

DEBIAN = Path(DATASETS["fashion_mnist"].system_dirs[0])  # hard-coded: the Debian package's folder


def without_system_fashion(monkeypatch, tmp_path: Path) -> None:
    """This process sees no Debian Fashion-MNIST, whether or not the machine has it."""
    import lit_nn.data.images as images

    spec = images.DATASETS["fashion_mnist"]
    monkeypatch.setitem(images.DATASETS, "fashion_mnist",
                        images.ImageSpec(spec.title, spec.folder, spec.mean, spec.std, spec.classes,
                                         system_dirs=(str(tmp_path / "no-debian-package"),)))


def sweep_file(tmp_path: Path, datasets: list[str], root: Path, seeds: tuple[int, ...] = (0, 1)) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "preflight", "experiment": "preflight",
        "config": {"model": {"class_path": "lit_nn.models.MLP", "init_args": {"hidden": 8}},
                   "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"root": str(root)}},
                   "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1}},
        "grid": {"data.init_args.dataset": datasets}, "seeds": list(seeds),
        "seed_keys": ["seed_everything", "data.init_args.seed"]}))
    return path


def assert_nothing_recorded(store_db: Path, work: Path) -> None:
    assert not store_db.parent.exists(), "no MLflow store, experiment or run may be created"
    assert not (work / "reports").exists(), "no report folder either"


@pytest.mark.skipif((DEBIAN / "train-images-idx3-ubyte.gz").is_file() or (DEBIAN / "train-images-idx3-ubyte").is_file(),
                    reason=f"Fashion-MNIST is installed in {DEBIAN} (a path lit-nn does not let a test move)")
def test_compare_optimizers_without_fashion_mnist_stops_before_any_run(tmp_path):
    store_db = tmp_path / "store" / "mlflow.db"
    started = time.monotonic()
    result = run_cli("sweep", str(REPO / "experiments" / "compare_optimizers.yaml"), "--workers", "2",
                     cwd=tmp_path, timeout=120, env={"MLFLOW_TRACKING_URI": f"sqlite:///{store_db}"})
    seconds = time.monotonic() - started
    assert_clean_error(result, "all 21 sweep points would fail, so none was run",
                       "no Fashion-MNIST train files found", "apt-get install dataset-fashion-mnist")
    assert [line for line in result.stderr.splitlines() if line.strip()] == [result.stderr.strip()], \
        "one line, not one per point"
    assert result.stdout == ""
    assert_nothing_recorded(store_db, tmp_path)
    print(f"lit-nn sweep compare_optimizers.yaml stopped after {seconds:.1f} s")  # the issue asks < 10 s


def test_points_whose_data_is_missing_are_named_and_nothing_runs(tmp_path, monkeypatch, capsys):
    without_system_fashion(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    store_db = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_db}")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_main(capsys, "sweep", str(sweep_file(tmp_path, ["mnist", "fashion_mnist"], empty)))
    assert_clean_error(result, "2 of 4 sweep points (", "would fail, so none was run: no Fashion-MNIST train files "
                       f"found (looked in {empty}/FashionMNIST/raw, {empty}, {tmp_path}/no-debian-package)")
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert_nothing_recorded(store_db, tmp_path)
    dry = run_main(capsys, "sweep", str(sweep_file(tmp_path, ["mnist", "fashion_mnist"], empty)), "--dry_run")
    assert dry.returncode == 0, "a dry run lists what would run; it needs no data"


def test_the_test_split_is_looked_up_when_points_test_after_fit(tmp_path, monkeypatch, capsys):
    import torch

    from lit_nn.data.idx import write_idx

    without_system_fashion(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    store_db = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_db}")
    root = tmp_path / "train-only"
    root.mkdir()
    images, labels = SPLIT_FILES["train"]
    write_idx(root / images, torch.zeros(20, 28, 28, dtype=torch.uint8))
    write_idx(root / labels, torch.arange(20) % 10)
    result = run_main(capsys, "sweep", str(sweep_file(tmp_path, ["fashion_mnist"], root)))
    assert_clean_error(result, "all 2 sweep points would fail", "no Fashion-MNIST test files found")
    assert_nothing_recorded(store_db, tmp_path)


def test_each_distinct_data_section_is_looked_up_once(tmp_path, monkeypatch):
    from lit_nn.cli.sweep_command import check_points
    from lit_nn.data.images import ImageDataModule
    from lit_nn.sweeps.grid import expand, load_sweep

    without_system_fashion(monkeypatch, tmp_path)
    looked_up: list[tuple[str, int, str]] = []
    real = ImageDataModule.check_available

    def counting(self, stage="fit"):
        looked_up.append((self.hparams.dataset, self.hparams.seed, stage))
        return real(self, stage)

    monkeypatch.setattr(ImageDataModule, "check_available", counting)
    points = expand(load_sweep(sweep_file(tmp_path, ["mnist"], tmp_path, seeds=(0, 1, 2)))) * 2  # each twice
    check_points(points, [], data=True)
    assert sorted(looked_up) == [("mnist", s, stage) for s in (0, 1, 2) for stage in ("fit", "test")]
    looked_up.clear()
    check_points(points, [])
    assert looked_up == [], "without data=True (the parse-only checks of tests and dry runs) nothing is looked up"
