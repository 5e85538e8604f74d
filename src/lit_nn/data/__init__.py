"""DataModules: MNIST-style images and (char-RNN) text, both served from in-memory tensors."""

from lit_nn.data.datamodule import LitDataModule
from lit_nn.data.images import DATASETS, ImageDataModule
from lit_nn.data.loaders import TensorBatches
from lit_nn.data.text import TextDataModule

__all__ = ["DATASETS", "ImageDataModule", "LitDataModule", "TensorBatches", "TextDataModule"]
