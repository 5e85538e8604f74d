"""TextDataModule: vocabulary, contiguous split, shifted windows, DDP shards, sources and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lit_nn.data.text as text_mod
from lit_nn.core.errors import UserError
from lit_nn.data.text import (
    TextDataModule,
    TextWindows,
    build_vocab,
    decode,
    download_tinyshakespeare,
    encode,
    read_text,
)

JAPANESE = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\nThe cat, 2 × café.\n"


def write(tmp_path: Path, text: str | bytes, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def ready(path: Path, **kwargs) -> TextDataModule:
    dm = TextDataModule(path=str(path), **kwargs)
    dm.setup("fit")
    return dm


# -- vocabulary ------------------------------------------------------------------------
def test_vocab_round_trip_with_japanese() -> None:
    vocab, ids = build_vocab(JAPANESE)
    assert vocab == "".join(sorted(set(JAPANESE)))  # sorted distinct characters, nothing lost
    assert ids.dtype == torch.int64 and len(ids) == len(JAPANESE)
    assert decode(ids, vocab) == JAPANESE
    assert torch.equal(encode(JAPANESE, vocab), ids)
    assert decode(encode("猫は見当", vocab), vocab) == "猫は見当"


def test_encode_names_unknown_characters() -> None:
    vocab, _ = build_vocab("abc")
    with pytest.raises(UserError, match=r"'Z' \(U\+005A\).*'猫' \(U\+732B\)"):
        encode("aZb猫", vocab)
    with pytest.raises(UserError, match="'~'"):  # beyond the last vocabulary entry
        encode("~", vocab)


def test_datamodule_reads_japanese_file(tmp_path: Path) -> None:
    dm = ready(write(tmp_path, JAPANESE * 4, "wagahai.txt"), seq_len=8, batch_size=2)
    assert dm.vocab == "".join(sorted(set(JAPANESE)))
    assert decode(torch.cat([dm.train_ids, dm.val_ids]), dm.vocab) == JAPANESE * 4
    assert dm.hparams.corpus == "wagahai"  # the run is tagged with the file's name
    assert "wagahai.txt" in dm.source


# -- split and batches -----------------------------------------------------------------
def test_split_is_contiguous_and_matches_val_fraction(tmp_path: Path) -> None:
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000))
    dm = ready(write(tmp_path, text), seq_len=10, batch_size=4, val_fraction=0.25)
    assert len(dm.val_ids) == 250 and len(dm.train_ids) == 750
    assert decode(dm.train_ids, dm.vocab) == text[:750]
    assert decode(dm.val_ids, dm.vocab) == text[750:]  # the last quarter, in order


def test_training_batches_are_windows_shifted_by_one(tmp_path: Path) -> None:
    text = "".join(chr(ord("a") + (i * i) % 26) for i in range(3000))
    dm = ready(write(tmp_path, text), seq_len=16, batch_size=8)
    train_text = decode(dm.train_ids, dm.vocab)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader())
    x, y = batches[0]
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x, y, strict=True):
        window = decode(row_x, dm.vocab) + decode(row_y[-1:], dm.vocab)
        assert window in train_text  # a real stretch of the training text, target = next char


def test_an_epoch_covers_the_training_text_once_from_a_seeded_phase(tmp_path: Path) -> None:
    ids = torch.arange(1000)
    loader = TextWindows(ids, seq_len=10, batch_size=7, shuffle=True, seed=3)
    phases = []
    for epoch in range(4):
        loader.sampler.set_epoch(epoch)
        inputs = torch.cat([x for x, _ in loader])
        starts = inputs[:, 0].sort().values
        phase = int(starts[0])
        phases.append(phase)
        assert 0 <= phase < 10 and len(inputs) == loader.num_windows == 99
        assert torch.equal(starts, phase + 10 * torch.arange(99))  # non-overlapping, no window twice
    assert len(set(phases)) > 1  # window boundaries move between epochs
    again = TextWindows(ids, seq_len=10, batch_size=7, shuffle=True, seed=3)
    again.sampler.set_epoch(2)
    loader.sampler.set_epoch(2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(loader, again, strict=True))  # seeded


def test_ddp_ranks_get_equal_disjoint_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loader = TextWindows(torch.arange(2010), seq_len=10, batch_size=8, shuffle=True, seed=0)  # 200 windows
    loader.sampler.set_epoch(1)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(text_mod, "_rank_and_world", lambda rank=rank: (rank, 2))
        batches = list(loader)
        assert len(batches) == len(loader)
        shards.append({int(row[0]) for inputs, _ in batches for row in inputs})
    monkeypatch.undo()
    assert len(shards[0]) == len(shards[1]) == loader.num_windows // 2
    assert not shards[0] & shards[1]  # distinct data per rank


@pytest.mark.parametrize(("val_seq_len", "window"), [(None, 16), (40, 40)])
def test_validation_windows_are_contiguous_from_the_start(tmp_path: Path, val_seq_len, window: int) -> None:
    text = "".join(chr(ord("a") + (i * 3) % 26) for i in range(2000))
    dm = ready(write(tmp_path, text), seq_len=16, batch_size=2, val_seq_len=val_seq_len)
    xs, ys = zip(*dm.val_dataloader(), strict=True)
    assert xs[0].shape[1] == window
    x, y = torch.cat(xs).reshape(-1), torch.cat(ys).reshape(-1)
    n = (len(dm.val_ids) - 1) // window * window
    assert torch.equal(x, dm.val_ids[:n]) and torch.equal(y, dm.val_ids[1 : n + 1])
    assert len(dm.val_ids) - n <= window  # everything but a tail shorter than one window is scored


# -- sources ---------------------------------------------------------------------------
def test_embedded_default_needs_no_files(tmp_path: Path) -> None:
    dm = TextDataModule(root=str(tmp_path / "nothing-here"), seq_len=64)
    assert dm.hparams.corpus == "pydoc_topics"
    dm.setup("fit")
    assert len(dm.train_ids) + len(dm.val_ids) > 400_000
    assert "pydoc_data.topics" in dm.source and "def" in decode(dm.val_ids[:20000], dm.vocab)


def test_tinyshakespeare_is_found_in_root(tmp_path: Path) -> None:
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    write(folder, "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20, "input.txt")
    dm = TextDataModule(root=str(tmp_path), seq_len=32)
    assert dm.hparams.corpus == "tinyshakespeare"
    dm.setup("fit")
    assert "tiny-shakespeare" in dm.source and str(folder) in dm.source
    assert decode(dm.train_ids[:14], dm.vocab) == "First Citizen:"


def test_failed_download_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "tinyshakespeare" / "input.txt"
    with pytest.raises(UserError, match="downloading tiny-shakespeare .* failed"):
        download_tinyshakespeare(target, url="http://127.0.0.1:9/input.txt", timeout=2)  # closed port, no network
    assert not target.exists() and not target.with_suffix(".part").exists()


# -- errors ----------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"text file .*nope\.txt' not found"):
        ready(tmp_path / "nope.txt")


@pytest.mark.parametrize("content", ["", "  \n\t \n"])
def test_empty_or_whitespace_text(tmp_path: Path, content: str) -> None:
    with pytest.raises(UserError, match="empty or only whitespace"):
        ready(write(tmp_path, content))


def test_text_shorter_than_one_sequence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"has 20 characters, fewer than one sequence \(data.seq_len=64"):
        ready(write(tmp_path, "a short line of text"), seq_len=64)


def test_val_fraction_leaving_too_little(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"val_fraction=0.01 leaves 3 validation characters"):
        ready(write(tmp_path, "x" * 300), seq_len=16, val_fraction=0.01)


def test_undecodable_bytes_name_the_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "héllo wörld ".encode() * 3 + b"\xff\xfe tail")
    with pytest.raises(UserError, match=r"not UTF-8 text: byte\(s\) ff at byte offset 42"):
        read_text(path)


def test_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    assert read_text(write(tmp_path, "\ufeffhello".encode())) == "hello"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corpus": "shakespear"}, r"unknown corpus 'shakespear' \(did you mean 'tinyshakespeare'\?\)"),
        ({"seq_len": 0}, "data.seq_len must be > 0, got 0"),
        ({"batch_size": -2}, "data.batch_size must be > 0, got -2"),
        ({"val_fraction": 0.0}, r"data.val_fraction must be in \(0, 1\), got 0.0"),
        ({"val_fraction": 1.0}, r"data.val_fraction must be in \(0, 1\), got 1.0"),
        ({"val_seq_len": 0}, "data.val_seq_len must be > 0, got 0"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        TextDataModule(**kwargs)


def test_no_test_split(tmp_path: Path) -> None:
    dm = ready(write(tmp_path, "to be or not to be " * 20), seq_len=8)
    assert TextDataModule.has_test_split is False  # lit-nn fit skips its test pass
    with pytest.raises(UserError, match="no test split .* use `lit-nn validate`"):
        dm.test_dataloader()


def test_tinyshakespeare_requested_but_absent(tmp_path: Path) -> None:
    dm = TextDataModule(corpus="tinyshakespeare", root=str(tmp_path))
    with pytest.raises(UserError, match="tiny-shakespeare not found at .*--data.download true"):
        dm.setup("fit")
