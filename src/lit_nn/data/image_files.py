"""A learner's own digit images (PNG, JPEG...), prepared the way MNIST's were, for ``lit-nn predict --images``.

MNIST digits are white on black, fitted into a 20×20 box and centred by their centre of mass
in a 28×28 frame. A photo or a drawing is none of that, so each file is: read as grayscale;
inverted when its background is light; cropped to the ink; scaled so its longer side is 20
pixels; centred by mass in 28×28; then normalized with the training set's mean and std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_nn.core.errors import UserError, require_file
from lit_nn.data.datamodule import LitDataModule
from lit_nn.data.images import DATASETS, normalization
from lit_nn.data.loaders import TensorBatches

FRAME, BOX = 28, 20  # MNIST's frame and the box its digits are fitted into
NO_LABEL = -1


def load_digit(path: str | Path) -> torch.Tensor:
    """One image file as a 28×28 uint8 digit, white on black, framed like MNIST."""
    from PIL import Image, UnidentifiedImageError

    path = require_file(path, "image", "an image file (PNG, JPEG...)")
    try:
        with Image.open(path) as image:
            gray = _on_paper(image)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path} is not an image that can be read ({err})") from None
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:  # dark ink on light paper: MNIST is light ink on black
        gray, background = 255.0 - gray, 255.0 - background
    gray = np.clip(gray - background, 0, None)
    ink = gray > 0.25 * gray.max() if gray.max() > 0 else np.zeros_like(gray, dtype=bool)
    if not ink.any():
        raise UserError(f"{path} holds no digit: the image is blank")
    rows, cols = np.nonzero(ink)
    crop = gray[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    scale = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    scaled = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    scaled = np.clip(scaled, 0, None)
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    top, left = (FRAME - scaled.shape[0]) // 2, (FRAME - scaled.shape[1]) // 2
    frame[top: top + scaled.shape[0], left: left + scaled.shape[1]] = scaled
    total = frame.sum()
    cy = (frame.sum(1) * np.arange(FRAME)).sum() / total
    cx = (frame.sum(0) * np.arange(FRAME)).sum() / total
    frame = np.roll(frame, (round(FRAME / 2 - 0.5 - cy), round(FRAME / 2 - 0.5 - cx)), axis=(0, 1))
    frame *= 255.0 / max(frame.max(), 1e-6)
    return torch.from_numpy(frame.round().clip(0, 255).astype(np.uint8))


def _on_paper(image: Any) -> np.ndarray:
    """The image in gray levels, a transparent background laid on paper that contrasts with the ink:
    a black digit on a transparent PNG becomes black on white (``convert("L")`` alone drops the
    alpha channel and leaves black on black: blank)."""
    if image.mode not in ("RGBA", "LA", "PA") and not (image.mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("L"), dtype=np.float32)
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    gray = np.asarray(rgba.convert("L"), dtype=np.float32)
    ink = gray[alpha > 0.5]
    paper = 255.0 if ink.size and ink.mean() < 128 else 0.0
    return gray * alpha + paper * (1.0 - alpha)


class ImageFilesDataModule(LitDataModule):
    """Image files to classify (predict only), normalized like the dataset the model was trained on.

    Args:
        paths: the image files.
        dataset: the dataset whose normalization the model expects (mnist, fashion_mnist).
        batch_size: images per prediction batch.
        normalize: the (mean, std) the model was trained with, when not the dataset's own
            (``ImageDataModule``'s ``normalize``).
    """

    def __init__(self, paths: list[str], dataset: str = "mnist", batch_size: int = 256,
                 normalize: tuple[float, float] | None = None) -> None:
        super().__init__()
        if not paths:
            raise UserError("--images needs at least one image file")
        self.paths = [str(p) for p in paths]
        self.spec = DATASETS[dataset]
        self.normalization = normalization(self.spec, normalize)
        self.classes = self.spec.classes
        self.batch_size = batch_size
        self.source = f"{len(self.paths)} image file(s)"
        self.images = torch.stack([load_digit(p) for p in self.paths])  # bad files fail before any run

    @property
    def dataset_name(self) -> str:
        return "image_files"

    def predict_dataloader(self) -> TensorBatches:
        mean, std = self.normalization
        x = self.images.unsqueeze(1).float().div_(255.0).sub_(mean).div_(std)
        return TensorBatches(x, torch.full((len(x),), NO_LABEL), self.batch_size)
