"""Character-level language model: embedding → torch's fused RNN / GRU / LSTM → linear head, or
the hand-written ``classic`` cell of the learner's notes (one-hot characters → i2h / i2o).

The vocabulary is the ``vocab`` hyperparameter (the sorted distinct characters). A YAML
config leaves it empty: ``setup`` takes it from the DataModule and builds the layers then,
and because it is a hyperparameter it is saved in every checkpoint, so
``CharRNN.load_from_checkpoint`` rebuilds the same layers before loading the weights and
sampling needs no corpus. (A vocabulary in ``on_save_checkpoint`` would need a second
rebuild path for loading; the hyperparameter is the one Lightning already restores.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from lit_nn.core.errors import UserError, check_fraction, check_positive, unknown_choice
from lit_nn.core.names import Metric
from lit_nn.core.signatures import init_arg_names
from lit_nn.data.text import TextDataModule, encode
from lit_nn.models.base import LitModel, attached_trainer

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class ClassicRNN(nn.Module):
    """The hand-written cell of PyTorch's classic char-RNN tutorial, which the learner's notes copy.

    It is called ``classic`` after that tutorial ("classifying names with a character-level
    RNN"): two linear layers over the concatenation of the input and the previous hidden state,

        combined = cat(x_t, h_{t-1})
        h_t      = i2h(combined)          # the next hidden state: no tanh, a purely linear recurrence
        y_t      = i2o(combined)          # the output (logits) reads the input and h_{t-1} directly

    Unlike the Elman ``rnn`` cell (``h_t = tanh(W x_t + U h_{t-1} + b)``, then a separate head
    on ``h_t``) nothing squashes the hidden state, so only its weights keep it bounded, and the
    output at step t sees ``h_{t-1}``, not ``h_t``. ``step`` is that formula, one time step, as
    written in the notes; ``forward`` runs it over a whole sequence with the same arithmetic
    regrouped (the input's share of both layers computed for all steps at once), which is faster.

    Args:
        input_size: size of each input vector (the vocabulary size for one-hot characters).
        hidden_size: size of the hidden state.
        output_size: size of each output (the vocabulary size: next-character logits).
        dropout: dropout on the hidden state where the output layer reads it (0 disables it).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)
        self.drop = nn.Dropout(dropout)

    def init_hidden(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The all-zero hidden state the notes start from, ``(batch, hidden_size)``."""
        return like.new_zeros(batch, self.hidden_size)

    def step(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step exactly as the notes write it: ``(output, next hidden)`` for ``x`` ``(batch, input)``."""
        output = self.i2o(torch.cat((x, self.drop(hidden)), 1))
        hidden = self.i2h(torch.cat((x, hidden), 1))
        return output, hidden

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs ``(batch, time, output)`` for inputs ``(batch, time, input)``, and the last hidden state.

        The same numbers as calling ``step`` at every time step: a linear layer over ``cat(x, h)``
        is ``x·Wx + h·Wh + b``, so the ``x·Wx + b`` parts of both layers are computed for all
        steps in one product, and only ``h·Wh`` remains in the loop over time.
        """
        n = self.input_size
        if hidden is None:
            hidden = self.init_hidden(x.shape[0], x)
        from_input = F.linear(x, self.i2h.weight[:, :n], self.i2h.bias)  # (batch, time, hidden)
        w_hidden = self.i2h.weight[:, n:]
        entering = []  # h_{t-1}: the hidden state each step's output reads
        for t in range(x.shape[1]):
            entering.append(hidden)
            hidden = from_input[:, t] + F.linear(hidden, w_hidden)
        previous = self.drop(torch.stack(entering, 1))
        outputs = F.linear(x, self.i2o.weight[:, :n], self.i2o.bias) + F.linear(previous, self.i2o.weight[:, n:])
        return outputs, hidden


CLASSIC = "classic"
CELLS: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM, CLASSIC: ClassicRNN}


class CharRNN(LitModel):
    """Predicts the next character: Embedding → ``num_layers`` × cell → Dropout → Linear; with the
    ``classic`` cell, one-hot characters → :class:`ClassicRNN` (its ``i2o`` is the output layer).

    Args:
        cell: rnn (tanh Elman network), gru or lstm — torch's fused ``nn.RNN``/``nn.GRU``/``nn.LSTM`` —
            or classic, the learner's notes' hand-written cell (:class:`ClassicRNN`: i2h/i2o over
            cat(one-hot input, hidden), a linear recurrence, one layer).
        embedding: size of the character embedding (not used by classic, which reads one-hot
            characters as the notes do).
        hidden: hidden-state size of every layer.
        num_layers: stacked recurrent layers (classic: 1).
        dropout: dropout between recurrent layers and before the output layer (0 disables it).
        vocab: the characters the model reads and writes; empty means "from the DataModule".
        sample_length: characters of the text sample logged to MLflow after each validation (0: none).
        lr: learning rate (the peak one when a schedule is set); 2e-3 suits small LSTMs with Adam.
        **optim_args: optimizer, weight_decay, momentum, nesterov, lr_schedule, warmup_steps
            (see :class:`LitModel`).
    """

    kind = "char_rnn"
    monitor = (Metric.VAL_LOSS, "min")  # lower is better
    tag_keys = ("optimizer", "cell", "hidden", "num_layers")

    def __init__(
        self,
        cell: str = "lstm",
        embedding: int = 64,
        hidden: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        vocab: str | None = None,
        sample_length: int = 300,
        lr: float = 2e-3,
        **optim_args: Any,
    ) -> None:
        super().__init__(lr=lr, **optim_args)
        if cell not in CELLS:
            raise unknown_choice("cell", cell, CELLS)
        if cell == CLASSIC and num_layers != 1:
            raise UserError(f"cell {CLASSIC!r} is one layer (the notes' i2h/i2o pair); got model.num_layers="
                            f"{num_layers}, give 1 or use rnn, gru or lstm to stack layers")
        for name, value in (("embedding", embedding), ("hidden", hidden), ("num_layers", num_layers)):
            check_positive(f"model.{name}", value)
        check_positive("model.sample_length", sample_length, allow_zero=True)
        check_fraction("model.dropout", dropout)
        self.val_nll = torchmetrics.MeanMetric()  # mean nats/char over all validation characters
        self.embed: nn.Embedding | None = None
        self.rnn: nn.RNNBase | ClassicRNN | None = None
        self.drop: nn.Dropout | None = None
        self.head: nn.Linear | None = None
        if vocab:
            self._build(vocab)

    # -- layers -----------------------------------------------------------------------
    def _build(self, vocab: str) -> None:
        hp = self.hparams
        self.hparams.vocab = vocab
        if hp.cell == CLASSIC:  # its own output layer (i2o) and one-hot input: no embedding, no head
            self.rnn = ClassicRNN(len(vocab), hp.hidden, len(vocab), hp.dropout)
            return
        self.embed = nn.Embedding(len(vocab), hp.embedding)
        self.rnn = CELLS[hp.cell](hp.embedding, hp.hidden, hp.num_layers, batch_first=True,
                                  dropout=hp.dropout if hp.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(hp.dropout)
        self.head = nn.Linear(hp.hidden, len(vocab))

    @property
    def vocab(self) -> str:
        return self.hparams.vocab or ""

    def chance_loss(self) -> float | None:
        return math.log(len(self.vocab)) if len(self.vocab) > 1 else None

    def setup(self, stage: str) -> None:
        trainer = attached_trainer(self)
        datamodule = trainer.datamodule if trainer is not None else None
        data_vocab = datamodule.vocab if isinstance(datamodule, TextDataModule) else None
        if self.rnn is None:
            if not data_vocab:
                raise UserError("CharRNN needs a vocabulary: train it with a text DataModule "
                                "(lit_nn.data.TextDataModule) or pass model.vocab")
            self._build(data_vocab)
        elif data_vocab and data_vocab != self.vocab:
            raise _vocab_mismatch(self.vocab, data_vocab)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming or evaluating on another corpus: fail clearly instead of a shape error."""
        saved = checkpoint.get("hyper_parameters", {}).get("vocab")
        if saved and self.vocab and saved != self.vocab:
            raise _vocab_mismatch(saved, self.vocab)

    # -- forward and steps ------------------------------------------------------------
    def forward(self, ids: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Logits ``(batch, time, vocab)`` for ids ``(batch, time)``, and the final recurrent state."""
        if isinstance(self.rnn, ClassicRNN):
            return self.rnn(F.one_hot(ids, len(self.vocab)).float(), state)
        out, state = self.rnn(self.embed(ids), state)
        return self.head(self.drop(out)), state

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits, _ = self(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.check_finite(loss, batch_idx)
        self.accumulate_train_loss(loss, batch[1].numel())
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.val_nll.update(self._loss(batch), weight=batch[1].numel())

    def on_validation_epoch_end(self) -> None:
        nll = self.val_nll.compute()  # synced over DDP ranks by torchmetrics
        self.val_nll.reset()
        # sync_dist: the values are already global; it keeps Lightning's epoch-level DDP check quiet
        self.log(Metric.VAL_LOSS, nll, prog_bar=True, sync_dist=True)
        self.log(Metric.VAL_BPC, nll / math.log(2), sync_dist=True)
        self.log(Metric.VAL_PPL, nll.exp(), sync_dist=True)
        self.sample_text = None
        recorded = self.logger is not None and self.trainer.is_global_zero
        if recorded and not self.trainer.sanity_checking and self.hparams.sample_length:
            self.sample_text = self._epoch_sample()

    def _epoch_sample(self) -> str:
        """The text the run records after a validation (the tracking callback stores it)."""
        prime = "\n" if "\n" in self.vocab else self.vocab[0]
        gen = torch.Generator().manual_seed(0)  # the same draw every epoch: only the model changes
        return prime + "".join(self.sample(prime, self.hparams.sample_length, 0.8, 40, gen))

    @classmethod
    def from_checkpoint_dict(cls, checkpoint: dict[str, Any], path: str) -> CharRNN:
        """Rebuild a char-RNN from a checkpoint read with ``weights_only=True`` (no code from the file runs)."""
        hparams = checkpoint.get("hyper_parameters")
        if not isinstance(hparams, dict) or not hparams.get("vocab"):
            raise UserError(f"{path} is not a char-RNN checkpoint (it has no vocabulary); train one with "
                            "`lit-nn fit -c experiments/char_rnn.yaml`")
        accepted = set(init_arg_names(cls))
        model = cls(**{k: v for k, v in hparams.items() if k in accepted})
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as err:
            raise UserError(f"checkpoint {path} does not match its own hyperparameters: {str(err)[:300]}") from None
        return model.eval()

    # -- sampling ---------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        prime: str,
        length: int,
        temperature: float = 0.8,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[str]:
        """Yield ``length`` characters after ``prime``, one at a time (for streaming).

        ``temperature`` 0 is greedy (argmax); otherwise the logits are divided by it and,
        with ``top_k``, all but the k most likely characters are dropped before drawing.
        Draws use ``generator`` (CPU), so a seeded generator gives a reproducible text.
        """
        if not prime:
            raise UserError("the prime text is empty; give at least one character to start from")
        check_positive("temperature", temperature, allow_zero=True)
        ids = encode(prime, self.vocab).to(self.device).unsqueeze(0)
        was_training = self.training
        self.eval()
        try:
            logits, state = self(ids)
            last = logits[0, -1]
            for _ in range(length):
                nxt = pick(last, temperature, top_k, generator)
                yield self.vocab[nxt]
                logits, state = self(torch.tensor([[nxt]], device=self.device), state)
                last = logits[0, -1]
        finally:
            self.train(was_training)


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> int:
    """One character id from a logit vector: argmax at temperature 0, else a (top-k) draw."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.double().cpu()  # double: 1e-45 is 0 in float32, and x / 0 is NaN
    logits = (logits - logits.max()) / temperature  # <= 0: a tiny temperature tends to argmax, never to inf/inf
    if top_k and top_k < logits.numel():
        threshold = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


def _vocab_mismatch(saved: str, current: str) -> UserError:
    extra = "".join(sorted(set(current) - set(saved)))
    detail = f"; new characters: {extra[:40]!r}" if extra else ""
    return UserError(f"the checkpoint's vocabulary ({len(saved)} characters) differs from this corpus's "
                     f"({len(current)} characters){detail}; use the corpus the model was trained on")
