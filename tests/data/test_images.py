"""ImageDataModule: shapes, normalization, splits, determinism and every branch of the source search."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_nn.core.errors import UserError
from lit_nn.data import ImageDataModule, TensorBatches
from lit_nn.data.idx import read_idx, write_idx
from lit_nn.data.images import EMBEDDED, embedded_mnist_sample, stratified_split


def fake_split(folder: Path, split: str, n: int, gz: bool = True, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Write a tiny IDX image/label pair the way the real files are named."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n, dtype=torch.uint8) % 10
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


def test_idx_round_trip_gz_and_plain(tmp_path):
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    for name in ("a.gz", "a"):
        write_idx(tmp_path / name, x)
        assert torch.equal(read_idx(tmp_path / name), x)


def test_truncated_idx_names_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", torch.zeros(4, 28, 28, dtype=torch.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte is truncated or corrupt"):
        read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x01" * 5)[:-6])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx(path)


def test_not_idx_magic(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"hello world")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(path)


def test_embedded_sample_split_sizes_shapes_and_normalization():
    dm = ImageDataModule("mnist", root="/nonexistent", batch_size=100, seed=0)
    dm.setup("fit")
    dm.setup("test")
    assert EMBEDDED in dm.source
    sizes = {k: len(v[1]) for k, v in dm.splits.items()}
    assert sizes == {"train": 4000, "val": 500, "test": 500}
    x, y = dm.splits["train"]
    assert x.shape == (4000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    # normalized with MNIST's constants: mean ≈ 0, std ≈ 1 on the training images
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    # stratified: every split holds every class in equal share
    for split in ("train", "val", "test"):
        counts = torch.bincount(dm.splits[split][1], minlength=10)
        assert counts.min() == counts.max(), (split, counts)
    # no image is in two splits
    train_set = {hash(t.numpy().tobytes()) for t in dm.splits["train"][0]}
    assert not any(hash(t.numpy().tobytes()) in train_set for t in dm.splits["test"][0])


def test_embedded_test_split_fixed_and_val_split_seeded():
    a, b, c = (ImageDataModule("mnist", root="/nonexistent", seed=s) for s in (0, 0, 1))
    for dm in (a, b, c):
        dm.setup("fit")
        dm.setup("test")
    assert torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert not torch.equal(a.splits["val"][0], c.splits["val"][0])
    assert torch.equal(a.splits["test"][0], c.splits["test"][0])  # the test set never moves


@pytest.mark.parametrize(("normalize", "low", "high"), [((0.5, 0.5), -1.0, 1.0), ((0.0, 1.0), 0.0, 1.0)])
def test_normalize_option_sets_the_pixel_range(normalize, low, high):
    """[0.5, 0.5] is torchvision's Normalize((0.5,), (0.5,)) after ToTensor; [0, 1] is ToTensor alone."""
    dm = ImageDataModule("mnist", root="/nonexistent", normalize=normalize)
    default = ImageDataModule("mnist", root="/nonexistent")
    for d in (dm, default):
        d.setup("fit")
    x = dm.splits["train"][0]
    assert float(x.min()) == low and float(x.max()) == high
    assert default.normalization == (0.1307, 0.3081) and dm.normalization == normalize
    pixels = x * normalize[1] + normalize[0]  # the same images in [0, 1], only standardized otherwise
    torch.testing.assert_close(pixels, default.splits["train"][0] * 0.3081 + 0.1307, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [[0.5], [0.5, 0.0], [0.5, -1.0]])
def test_bad_normalize_is_one_sentence(bad):
    with pytest.raises(UserError, match=r"data.normalize takes two numbers, a mean and a std > 0"):
        ImageDataModule("mnist", normalize=bad)


def test_image_files_use_the_training_normalization(tmp_path):
    from PIL import Image

    from lit_nn.data.image_files import ImageFilesDataModule

    path = tmp_path / "seven.png"
    picture = np.full((40, 40), 255, dtype=np.uint8)
    picture[8:32, 18:22] = 0  # a dark stroke on white paper
    Image.fromarray(picture).save(path)
    x = ImageFilesDataModule([str(path)], normalize=(0.5, 0.5)).predict_dataloader().inputs
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0


def test_root_torchvision_layout_is_used_first(tmp_path):
    train_x, _ = fake_split(tmp_path / "MNIST" / "raw", "train", 60)
    fake_split(tmp_path / "MNIST" / "raw", "test", 20)
    dm = ImageDataModule("mnist", root=str(tmp_path), val_size=10, batch_size=8)
    dm.setup("fit")
    dm.setup("test")
    assert "IDX files in" in dm.source and str(tmp_path / "MNIST" / "raw") in dm.source
    assert len(dm.splits["train"][1]) == 50 and len(dm.splits["val"][1]) == 10
    assert len(dm.splits["test"][1]) == 20


def test_flat_uncompressed_folder(tmp_path):
    fake_split(tmp_path, "train", 40, gz=False)
    dm = ImageDataModule("mnist", root=str(tmp_path), val_size=10)
    dm.setup("fit")
    assert str(tmp_path) in dm.source and len(dm.splits["train"][1]) == 30


def test_test_stage_needs_only_test_files(tmp_path):
    """Scoring on the official test set: a folder with only t10k files serves stage 'test'."""
    images, labels = fake_split(tmp_path, "test", 30)
    dm = ImageDataModule("mnist", root=str(tmp_path))
    dm.setup("test")
    x, y = dm.splits["test"]
    assert torch.equal(y, labels.long())
    expected = (images.float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(x[:, 0], expected, atol=1e-6)


def test_fashion_without_files_or_download_explains(tmp_path, monkeypatch):
    import lit_nn.data.images as images_mod

    spec = images_mod.DATASETS["fashion_mnist"]
    monkeypatch.setitem(images_mod.DATASETS, "fashion_mnist",
                        images_mod.ImageSpec(spec.title, spec.folder, spec.mean, spec.std, spec.classes,
                                             system_dirs=(str(tmp_path / "nowhere"),)))
    dm = ImageDataModule("fashion_mnist", root=str(tmp_path))
    with pytest.raises(UserError, match=r"no Fashion-MNIST train files found.*apt-get install dataset-fashion-mnist"):
        dm.setup("fit")


def test_download_failure_is_fast_and_clear(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    dm = ImageDataModule("mnist", root=str(tmp_path), download=True)
    with pytest.raises(UserError, match="downloading MNIST .* failed"):
        dm.setup("fit")


def test_unknown_dataset_lists_valid():
    with pytest.raises(UserError, match=r"unknown dataset 'mnsit' \(did you mean 'mnist'\?\); valid: mnist, fashion_mnist"):
        ImageDataModule("mnsit")


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"val_size": -1}])
def test_bad_sizes(kwargs):
    with pytest.raises(UserError, match="must be > 0"):
        ImageDataModule("mnist", **kwargs)


def test_stratified_split_is_a_partition():
    labels = torch.arange(100) % 10
    parts = stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    joined = torch.cat(parts).sort().values
    assert torch.equal(joined, torch.arange(100))
    assert [len(p) for p in parts] == [80, 10, 10]


def test_batches_cover_split_once_and_reshuffle_per_epoch():
    x = torch.arange(10).float().unsqueeze(1)
    batches = TensorBatches(x, torch.arange(10), batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 3
    epoch0 = torch.cat([b[1] for b in batches])
    assert sorted(epoch0.tolist()) == list(range(10))
    assert torch.equal(epoch0, torch.cat([b[1] for b in batches]))  # same epoch → same order
    batches.sampler.set_epoch(1)
    epoch1 = torch.cat([b[1] for b in batches])
    assert sorted(epoch1.tolist()) == list(range(10)) and not torch.equal(epoch0, epoch1)
    for xb, yb in batches:
        assert torch.equal(xb[:, 0].long(), yb)  # inputs and targets stay paired


def test_rank_shards_are_disjoint_and_complete():
    shuffle = TensorBatches(torch.zeros(10, 1), torch.arange(10), batch_size=3, shuffle=True).sampler
    shards = [shuffle.indices(rank, 2) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(10))
    # an uneven size pads by wrap-around so every rank runs the same number of steps
    odd = TensorBatches(torch.zeros(7, 1), torch.arange(7), batch_size=2).sampler
    assert [len(odd.indices(r, 2)) for r in range(2)] == [4, 4]
    assert set(odd.indices(0, 2).tolist()) | set(odd.indices(1, 2).tolist()) == set(range(7))


def test_embedded_sample_is_balanced():
    images, labels = embedded_mnist_sample()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [500] * 10


@pytest.mark.parametrize("ink", [0, 255])
def test_a_digit_on_a_transparent_background_is_read_like_one_on_paper(tmp_path, ink):
    """A black (or white) stroke on a transparent PNG: its colour channels alone are one colour."""
    from PIL import Image

    from lit_nn.data.image_files import load_digit

    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = ink  # the same colour everywhere: only the alpha channel draws the stroke
    rgba[8:32, 18:22, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "seven.png")
    paper = np.full((40, 40), 255 - ink, dtype=np.uint8)
    paper[8:32, 18:22] = ink
    Image.fromarray(paper).save(tmp_path / "paper.png")
    digit = load_digit(tmp_path / "seven.png")
    assert digit.max() == 255 and torch.equal(digit, load_digit(tmp_path / "paper.png"))
