"""Character-level text data for the char-RNN, as one LightningDataModule.

The corpus is read once, encoded once into a tensor of character ids (vectorized with
numpy: no Python loop per character) and split contiguously: the last ``val_fraction``
of the text is validation, as in nanoGPT's ``shakespeare_char``, so validation losses
compare with published numbers.

Training batches are windows of ``seq_len`` characters with targets shifted by one. Each
epoch cuts the training text into non-overlapping windows starting at a seeded random
phase (so window boundaries move between epochs) and serves them in a seeded random order,
sharded by rank under DDP (every rank gets the same number of distinct windows).
Validation uses contiguous non-overlapping windows from the start of the validation text.
"""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from lit_nn.core.errors import UserError, check_positive, unknown_choice
from lit_nn.data.datamodule import DataInput, LitDataModule
from lit_nn.data.loaders import EpochShuffle, _rank_and_world
from lit_nn.data.network import DOWNLOAD_TIMEOUT_S, socket_timeout

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
CORPORA = ("auto", "tinyshakespeare", "pydoc_topics")
EMBEDDED = "pydoc_topics"


# -- vocabulary ------------------------------------------------------------------------
def _codepoints(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as one uint32 array (UTF-32 is one unit per char)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def build_vocab(text: str) -> tuple[str, torch.Tensor]:
    """The sorted distinct characters of ``text`` and the text as ids into them (int64)."""
    points = _codepoints(text)
    unique, ids = np.unique(points, return_inverse=True)
    vocab = unique.astype("<u4").tobytes().decode("utf-32-le")
    return vocab, torch.from_numpy(ids.reshape(-1).astype(np.int64))


def describe_chars(chars: str, limit: int = 10) -> str:
    """``'é' (U+00E9), '\\n' (U+000A)``: readable even for invisible or exotic characters."""
    shown = [f"{c!r} (U+{ord(c):04X})" for c in chars[:limit]]
    more = f" and {len(chars) - limit} more" if len(chars) > limit else ""
    return ", ".join(shown) + more


def encode(text: str, vocab: str) -> torch.Tensor:
    """Ids of ``text`` in ``vocab`` (sorted by code point); unknown characters are a UserError."""
    table = _codepoints(vocab)
    points = _codepoints(text)
    pos = np.searchsorted(table, points)
    pos_clipped = np.minimum(pos, len(table) - 1)
    known = table[pos_clipped] == points
    if not known.all():
        missing = "".join(dict.fromkeys(text[i] for i in np.flatnonzero(~known)))
        raise UserError(
            f"characters not in the model's vocabulary: {describe_chars(missing)}; "
            f"the vocabulary has {len(vocab)} characters: {vocab[:80]!r}{'…' if len(vocab) > 80 else ''}"
        )
    return torch.from_numpy(pos_clipped.astype(np.int64))


def decode(ids: torch.Tensor | list[int], vocab: str) -> str:
    """The text of a sequence of ids."""
    return "".join(vocab[i] for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))


# -- reading a corpus ------------------------------------------------------------------
def require_text_file(path: Path) -> None:
    """A UserError when ``path`` is not a file (checked before a sweep runs, and before reading)."""
    if not path.is_file():
        raise UserError(f"text file {str(path)!r} not found" + (" (it is a folder)" if path.is_dir() else ""))


def read_text(path: Path) -> str:
    """Read a UTF-8 file; a missing file or undecodable bytes is a UserError naming the offset."""
    require_text_file(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = data[err.start : err.end].hex(" ")
        raise UserError(
            f"{path} is not UTF-8 text: byte(s) {bad} at byte offset {err.start} cannot be decoded ({err.reason}); "
            "convert it to UTF-8, e.g. with iconv"
        ) from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not part of the text


NO_PYDOC_DATA = "this Python has no pydoc_data (the embedded corpus); pass --data.path FILE or --data.download true"


def pydoc_topics_text() -> str:
    """The documentation topics shipped with every CPython (``pydoc_data.topics``), ~465k chars."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise UserError(NO_PYDOC_DATA) from None
    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


def download_tinyshakespeare(target: Path, url: str = TINYSHAKESPEARE_URL,
                             timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch tiny-shakespeare into ``target`` (atomically); any failure is one UserError."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with socket_timeout(timeout), urllib.request.urlopen(url) as response:  # noqa: S310 - fixed https URL
            partial.write_bytes(response.read())
        partial.replace(target)
    except Exception as err:  # noqa: BLE001 - any network failure means the same to the user
        partial.unlink(missing_ok=True)
        raise UserError(
            f"downloading tiny-shakespeare from {url} into {target} failed ({type(err).__name__}: {err}); "
            "copy input.txt there by hand, pass --data.path FILE, or run without --data.download"
        ) from None


def _label_of(path: str) -> str:
    """A short corpus name for a file: its stem, or its folder for char-rnn's ``<name>/input.txt``."""
    p = Path(path)
    return p.parent.name if p.stem == "input" and p.parent.name else p.stem


# -- batches ---------------------------------------------------------------------------
class TextWindows:
    """``(inputs, targets)`` batches of ``seq_len``-character windows, targets shifted by one.

    With ``shuffle`` the windows start at a random phase in ``[0, seq_len)`` drawn per epoch
    (the same on every rank) and come in a seeded random order, sharded by rank; without it
    they start at 0 and come in order. The number of windows does not depend on the phase,
    so every epoch (and every rank) has the same number of batches.
    """

    def __init__(self, ids: torch.Tensor, seq_len: int, batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> None:
        self.ids, self.seq_len, self.batch_size, self.shuffle = ids, seq_len, batch_size, shuffle
        slack = seq_len if shuffle else 1  # room for the random phase (and the shifted target)
        self.num_windows = (len(ids) - slack) // seq_len
        if self.num_windows < 1:
            raise ValueError(f"{len(ids)} ids hold no window of {seq_len}")
        self.sampler = EpochShuffle(self.num_windows, shuffle, seed)
        self.batch_sampler = None  # Lightning's DataLoader introspection reads both attributes

    def phase(self) -> int:
        """Where this epoch's first window starts."""
        if not self.shuffle:
            return 0
        gen = torch.Generator().manual_seed(self.sampler.seed + 7919 * self.sampler.epoch + 1)
        return int(torch.randint(self.seq_len, (1,), generator=gen))

    def windows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's windows as two ``(num_windows, seq_len)`` views of the ids (no copy)."""
        start, n, t = self.phase(), self.num_windows, self.seq_len
        inputs = self.ids[start : start + n * t].view(n, t)
        targets = self.ids[start + 1 : start + n * t + 1].view(n, t)
        return inputs, targets

    def __len__(self) -> int:
        _, world = _rank_and_world()
        per_rank = -(-self.num_windows // world)  # ceil: EpochShuffle pads the last shard
        return -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        inputs, targets = self.windows()
        order = self.sampler.indices(*_rank_and_world()).to(inputs.device)  # one copy an epoch
        for begin in range(0, len(order), self.batch_size):
            idx = order[begin : begin + self.batch_size]
            yield inputs[idx], targets[idx]


# -- the DataModule --------------------------------------------------------------------
class TextDataModule(LitDataModule):
    """A character-level corpus, split contiguously into train and validation text.

    Sources, first that works: ``path`` (any UTF-8 text file); tiny-shakespeare from
    ``<root>/tinyshakespeare/input.txt``, downloaded there first when ``download`` is on; and
    the embedded default, the documentation topics of the standard library's
    ``pydoc_data.topics`` (~465,000 characters of English, no download). ``corpus`` picks
    one: ``auto`` (that order), ``tinyshakespeare`` or ``pydoc_topics``; with ``path`` it is
    only the name the run is tagged with. ``auto`` is resolved when the module is built, so
    the run is named and tagged by the corpus actually used.

    The vocabulary (``vocab``: the sorted distinct characters) is built from the whole
    corpus, so every validation character has an id; the model stores it in its checkpoint.
    There is no test split (``has_test_split = False``): the held-out text is the validation
    split, as in nanoGPT.

    Args:
        path: a UTF-8 text file to train on (overrides ``corpus``'s source).
        corpus: auto | tinyshakespeare | pydoc_topics (with ``path``: any name for the run).
        root: folder searched for ``tinyshakespeare/input.txt`` and used for the download.
        download: download tiny-shakespeare into ``root`` when it is not there.
        seq_len: characters per training window (the backpropagation-through-time length).
        batch_size: windows per training batch (validation uses 4x: it needs no gradients).
        val_fraction: the last fraction of the text held out for validation.
        val_seq_len: characters per validation window (default ``seq_len``); every window starts
            without context, so longer windows score the model with more context on average,
            as a transformer's block size does.
        seed: seeds the per-epoch window phase and order.
    """

    has_test_split = False

    def __init__(
        self,
        path: str | None = None,
        corpus: str = "auto",
        root: str = "data",
        download: bool = False,
        seq_len: int = 128,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        val_seq_len: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if path is None and corpus not in CORPORA:
            raise unknown_choice("corpus", corpus, CORPORA)
        check_positive("data.seq_len", seq_len)
        check_positive("data.batch_size", batch_size)
        if val_seq_len is not None:
            check_positive("data.val_seq_len", val_seq_len)
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        self.save_hyperparameters()
        if corpus == "auto":
            self.hparams.corpus = _label_of(path) if path is not None else self._auto_corpus()
        self.vocab: str = ""
        self._file: Path | None = None  # the file setup read the text from
        self.train_ids = torch.empty(0, dtype=torch.long)
        self.val_ids = torch.empty(0, dtype=torch.long)

    @property
    def dataset_name(self) -> str:
        return self.hparams.corpus

    @property
    def val_seq_len(self) -> int:
        return self.hparams.val_seq_len or self.hparams.seq_len

    @property
    def shakespeare_file(self) -> Path:
        return Path(self.hparams.root) / "tinyshakespeare" / "input.txt"

    def _auto_corpus(self) -> str:
        found = self.shakespeare_file.is_file() or self.hparams.download
        return "tinyshakespeare" if found else EMBEDDED

    # -- finding the text ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download tiny-shakespeare once per node (rank 0) when asked to and missing."""
        hp = self.hparams
        if hp.path is None and hp.corpus == "tinyshakespeare" and hp.download and not self.shakespeare_file.is_file():
            rank_zero_info(f"data: downloading tiny-shakespeare from {TINYSHAKESPEARE_URL}")
            download_tinyshakespeare(self.shakespeare_file)

    def _load_text(self) -> tuple[str, str]:
        """(source description, text) of the first source that works; ``self._file`` is the file read."""
        hp = self.hparams
        if hp.path is not None:
            self._file = Path(hp.path)
            return f"text file {hp.path}", read_text(Path(hp.path))
        if hp.corpus == "tinyshakespeare":
            if not self.shakespeare_file.is_file():
                raise self._no_shakespeare()
            self._file = self.shakespeare_file
            return f"tiny-shakespeare from {self.shakespeare_file}", read_text(self.shakespeare_file)
        text = pydoc_topics_text()
        self._file = Path(importlib.util.find_spec("pydoc_data.topics").origin)
        return "embedded CPython documentation topics (pydoc_data.topics)", text

    def _no_shakespeare(self) -> UserError:
        return UserError(f"tiny-shakespeare not found at {self.shakespeare_file}; pass --data.download true "
                         "(needs internet), --data.root FOLDER or --data.path FILE")

    def check_available(self, stage: str = "fit") -> None:
        """The text ``setup`` reads is there: the ``path`` file, tiny-shakespeare (or its download
        asked for, not tried here), or the embedded corpus; every stage reads the same text."""
        hp = self.hparams
        if hp.path is not None:
            require_text_file(Path(hp.path))
        elif hp.corpus == "tinyshakespeare":
            if not (self.shakespeare_file.is_file() or hp.download):
                raise self._no_shakespeare()
        elif importlib.util.find_spec("pydoc_data") is None:
            raise UserError(NO_PYDOC_DATA)

    def _check_length(self, text: str, where: str) -> None:
        hp = self.hparams
        if not text.strip():
            raise UserError(f"{where} is empty or only whitespace; give a text file with some content")
        need = hp.seq_len + 1
        if len(text) < need:
            raise UserError(
                f"{where} has {len(text):,} characters, fewer than one sequence (data.seq_len={hp.seq_len} + 1); "
                "use a longer text or a smaller --data.seq_len"
            )
        n_val = len(text) - int(len(text) * (1 - hp.val_fraction))
        val_len = self.val_seq_len
        for split, size, need, name in (("validation", n_val, val_len + 1, f"data.val_seq_len={val_len}"),
                                        ("training", len(text) - n_val, 2 * hp.seq_len, f"data.seq_len={hp.seq_len}")):
            if size < need:
                raise UserError(
                    f"data.val_fraction={hp.val_fraction} leaves {size:,} {split} characters of {where}, "
                    f"fewer than {need} needed for {name}; "
                    "use a longer text, smaller windows or another --data.val_fraction"
                )

    # -- LightningDataModule hooks ------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.vocab:
            return
        source, text = self._load_text()
        where = str(self.hparams.path) if self.hparams.path is not None else source
        self._check_length(text, where)
        self.vocab, ids = build_vocab(text)
        n_train = int(len(ids) * (1 - self.hparams.val_fraction))  # nanoGPT's split, to the character
        self.train_ids, self.val_ids = ids[:n_train], ids[n_train:]
        self.source = source
        name, part = self.hparams.corpus.replace("_", "-"), f"of {len(ids):,} characters, val_fraction {self.hparams.val_fraction}"
        self.inputs["train"] = DataInput(name, (self._file,), f"first {n_train:,} {part}", n_train)
        self.inputs["val"] = DataInput(name, (self._file,), f"last {len(ids) - n_train:,} {part}", len(ids) - n_train)
        rank_zero_info(
            f"data: {source} — {len(self.train_ids):,} train / {len(self.val_ids):,} val characters, "
            f"vocabulary of {len(self.vocab)}"
        )

    def train_dataloader(self) -> TextWindows:
        hp = self.hparams
        (ids,) = self.resident(self.train_ids)
        return TextWindows(ids, hp.seq_len, hp.batch_size, shuffle=True, seed=hp.seed)

    def val_dataloader(self) -> TextWindows:
        hp = self.hparams
        (ids,) = self.resident(self.val_ids)
        return TextWindows(ids, self.val_seq_len, 4 * hp.batch_size)

    def test_dataloader(self) -> TextWindows:
        raise UserError("the text DataModule has no test split (the held-out text is the validation split); "
                        "use `lit-nn validate` instead of `lit-nn test`")
