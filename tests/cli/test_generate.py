"""`lit-nn generate`: reproducible, greedy at temperature 0, same text after reloading, clear errors."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lit_nn.cli.commands import COMMANDS, run_tool
from lit_nn.cli.tool_parser import build_parser
from lit_nn.compat.jsonargparse import parser_actions
from lit_nn.core.errors import UserError
from lit_nn.data.text import TextDataModule, encode
from lit_nn.models import CharRNN
from lit_nn.tracking.checkpoints import load_checkpoint

from helpers import assert_clean_error, run_cli, run_main

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "It is the east, and Juliet is the sun.\n") * 30


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: a second thread only adds spin-waits on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(one_thread, tmp_path_factory: pytest.TempPathFactory) -> tuple[CharRNN, Path]:
    """A small LSTM trained for a few steps, and its checkpoint."""
    folder = tmp_path_factory.mktemp("generate")
    (folder / "romeo.txt").write_text(TEXT)
    L.seed_everything(0)
    model = CharRNN(embedding=8, hidden=24, num_layers=1, lr=1e-2, sample_length=0)
    trainer = L.Trainer(max_steps=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(model, datamodule=TextDataModule(path=str(folder / "romeo.txt"), seq_len=32, batch_size=8))
    trainer.save_checkpoint(folder / "romeo.ckpt")
    return model.eval(), folder / "romeo.ckpt"


def generate(capsys: pytest.CaptureFixture, *args: str) -> str:
    run_tool("generate", list(args))
    return capsys.readouterr().out


def greedy_reference(model: CharRNN, prime: str, length: int) -> str:
    """Greedy decoding the slow way: rerun the whole text each step, no state carried over."""
    text = prime
    with torch.no_grad():
        for _ in range(length):
            logits, _ = model(encode(text, model.vocab).unsqueeze(0))
            text += model.vocab[int(logits[0, -1].argmax())]
    return text


def test_same_seed_same_text(trained, capsys) -> None:
    _, ckpt = trained
    args = ("--ckpt", str(ckpt), "--prime", "ROMEO:", "--length", "80", "--temperature", "1.0")
    first = generate(capsys, *args, "--seed", "0")
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 80 + 1  # prime, sample, newline
    assert generate(capsys, *args, "--seed", "0") == first
    assert generate(capsys, *args, "--seed", "1") != first


def test_temperature_zero_is_greedy(trained, capsys) -> None:
    model, ckpt = trained
    out = generate(capsys, "--ckpt", str(ckpt), "--prime", "It is", "--length", "40", "--temperature", "0",
                   "--seed", "5")
    assert out == greedy_reference(model, "It is", 40) + "\n"
    # top-1 sampling is greedy too, whatever the temperature
    assert generate(capsys, "--ckpt", str(ckpt), "--prime", "It is", "--length", "40", "--top_k", "1") == out


def test_reloaded_checkpoint_samples_like_the_trained_model(trained, capsys) -> None:
    model, ckpt = trained
    in_memory = "".join(model.sample("Juliet", 60, 0.8, 40, torch.Generator().manual_seed(3)))
    out = generate(capsys, "--ckpt", str(ckpt), "--prime", "Juliet", "--length", "60", "--seed", "3")
    assert out == "Juliet" + in_memory + "\n"
    assert load_char_rnn(ckpt).vocab == model.vocab == "".join(sorted(set(TEXT)))


def test_top_k_keeps_only_the_most_likely(trained) -> None:
    model, _ = trained
    with torch.no_grad():
        logits, _ = model(encode("ROMEO", model.vocab).unsqueeze(0))
    allowed = {model.vocab[i] for i in logits[0, -1].topk(3).indices.tolist()}
    draws = {next(model.sample("ROMEO", 1, 5.0, 3, torch.Generator().manual_seed(s))) for s in range(60)}
    assert draws <= allowed and len(draws) > 1  # hot temperature: several, but only the top 3


def test_help_documents_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_tool("generate", ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for action in parser_actions(build_parser(COMMANDS["generate"])):
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in out


def test_prime_outside_vocabulary_names_the_characters(trained) -> None:
    _, ckpt = trained
    result = run_cli("generate", "--ckpt", str(ckpt), "--prime", "ROMEO&Jülïet", env={"OMP_NUM_THREADS": "1"})
    assert_clean_error(result, "not in the model's vocabulary", "'&' (U+0026)", "'ü' (U+00FC)", "'ï' (U+00EF)")
    assert result.stdout == ""  # nothing printed before the error


def test_missing_and_corrupt_checkpoints(tmp_path: Path, capsys) -> None:
    with pytest.raises(UserError, match=r"checkpoint .*nope.ckpt does not exist"):
        load_char_rnn(tmp_path / "nope.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    result = run_main(capsys, "generate", "--ckpt", str(garbage))
    assert_clean_error(result, "not a readable checkpoint", "garbage.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"depth": 2}}, foreign)
    with pytest.raises(UserError, match="is not a char-RNN checkpoint"):
        load_char_rnn(foreign)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--length", "0", "--length must be > 0"), ("--temperature", "-1", "--temperature must be >= 0"),
     ("--top_k", "-3", "--top_k must be >= 0")],
)
def test_bad_sampling_options(trained, option: str, value: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        run_tool("generate", ["--ckpt", str(trained[1]), option, value])


def load_char_rnn(path: Path) -> CharRNN:
    return CharRNN.from_checkpoint_dict(load_checkpoint(path), str(path))


def test_a_tiny_temperature_is_greedy_not_nan():
    """--temperature 1e-45 once divided the logits into inf and NaN probabilities (a multinomial traceback)."""
    from lit_nn.models.char_rnn import pick

    logits = torch.tensor([0.5, 2.0, -1.0, 1.9])
    for temperature in (1e-45, 1e-300):
        assert all(pick(logits, temperature, None, torch.Generator().manual_seed(s)) == 1 for s in range(5))
    assert pick(logits, 1e-45, 2, torch.Generator().manual_seed(0)) == 1
