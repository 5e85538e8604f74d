"""LightningModules: the shared base, the classifiers (MLP, CNN) and the char-RNN."""

from lit_nn.models.base import Classifier, DivergedError, LitModel
from lit_nn.models.char_rnn import CharRNN
from lit_nn.models.cnn import CNN
from lit_nn.models.mlp import ACTIVATIONS, MLP

__all__ = ["ACTIVATIONS", "CNN", "MLP", "CharRNN", "Classifier", "DivergedError", "LitModel"]
