"""``check_available``: the data a run needs is looked up without reading it, and missing data is the
same sentence ``setup`` gives (a sweep says it once, before any point runs)."""

from __future__ import annotations

import pytest
import torch

from lit_nn.core.errors import UserError
from lit_nn.data.datamodule import check_data_available
from lit_nn.data.idx import write_idx
from lit_nn.data.images import SPLIT_FILES, ImageDataModule
from lit_nn.data.text import TextDataModule


@pytest.fixture
def no_debian_fashion(tmp_path, monkeypatch):
    import lit_nn.data.images as images

    spec = images.DATASETS["fashion_mnist"]
    monkeypatch.setitem(images.DATASETS, "fashion_mnist",
                        images.ImageSpec(spec.title, spec.folder, spec.mean, spec.std, spec.classes,
                                         system_dirs=(str(tmp_path / "no-debian-package"),)))


def setup_error(datamodule, stage: str) -> str:
    with pytest.raises(UserError) as caught:
        datamodule.setup(stage)
    return str(caught.value)


def test_missing_images_give_the_sentence_the_fit_would(tmp_path, no_debian_fashion):
    dm = ImageDataModule("fashion_mnist", root=str(tmp_path))
    with pytest.raises(UserError) as caught:
        dm.check_available("fit")
    assert str(caught.value) == setup_error(dm, "fit")
    assert "no Fashion-MNIST train files found" in str(caught.value)
    ImageDataModule("fashion_mnist", root=str(tmp_path), download=True).check_available("fit")  # not tried here
    ImageDataModule("mnist", root=str(tmp_path)).check_available("test")  # the embedded sample


def test_each_stage_looks_for_its_own_split(tmp_path, no_debian_fashion):
    images, labels = SPLIT_FILES["train"]
    write_idx(tmp_path / f"{images}.gz", torch.zeros(4, 28, 28, dtype=torch.uint8))
    write_idx(tmp_path / f"{labels}.gz", torch.arange(4))
    dm = ImageDataModule("fashion_mnist", root=str(tmp_path))
    dm.check_available("fit")
    with pytest.raises(UserError, match="no Fashion-MNIST test files found") as caught:
        dm.check_available("test")
    assert str(caught.value) == setup_error(dm, "test")


def test_missing_text_gives_the_sentence_the_fit_would(tmp_path):
    missing = TextDataModule(path=str(tmp_path / "notes.txt"))
    with pytest.raises(UserError, match="text file .*notes.txt' not found") as caught:
        missing.check_available()
    assert str(caught.value) == setup_error(missing, "fit")
    shakespeare = TextDataModule(corpus="tinyshakespeare", root=str(tmp_path))
    with pytest.raises(UserError, match="tiny-shakespeare not found") as caught:
        shakespeare.check_available()
    assert str(caught.value) == setup_error(shakespeare, "fit")
    TextDataModule(corpus="tinyshakespeare", root=str(tmp_path), download=True).check_available()
    TextDataModule(corpus="pydoc_topics").check_available()


def test_a_run_configs_data_section_is_checked_as_the_run_builds_it(tmp_path, no_debian_fashion):
    section = {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"dataset": "fashion_mnist",
                                                                          "root": str(tmp_path)}}
    with pytest.raises(UserError, match="no Fashion-MNIST train files found"):
        check_data_available(section, ("fit", "test"))
    with pytest.raises(UserError, match="unknown dataset 'fashon'"):
        check_data_available({**section, "init_args": {"dataset": "fashon"}})
    check_data_available({"class_path": "lit_nn.data.ImageDataModule"}, ("fit", "test"))
    check_data_available(None)
