"""A closed or broken stdout ends ``lit-nn`` as it ends a Unix tool (issue 29 item 5).

Before: ``lit-nn generate --length 20000 | head -1`` ended in a ``BrokenPipeError`` traceback,
``lit-nn runs >&-`` in ``AttributeError: 'NoneType' object has no attribute 'flush'``, and a fit
whose reader went away ended FAILED ("SystemExit: 1", Rich's own broken-pipe exit).

Now (:mod:`lit_nn.core.streams`): a command whose product is its output stops quietly with 141
(128 + SIGPIPE); one whose product is a run keeps working and exits with the work's status; a
stdout closed from the start is /dev/null. Every test runs the real console script on a real
pipe; "a reader that is gone" is a pipe whose read end is closed before lit-nn starts, so every
write fails, with no timing involved.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_nn.core import streams

from conftest import runs_of
from helpers import REPO

LIT_NN = [sys.executable, "-m", "lit_nn"]
PIPE_EXIT = 141
TEXT = "ROMEO: But soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 20


def to_gone_reader(*args: str, stderr_too: bool = False, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``lit-nn ARGS`` writing into a pipe nobody reads any more (``| head`` after head exited)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([*LIT_NN, *args], cwd=cwd, stdout=write, stderr=write if stderr_too else subprocess.PIPE,
                              text=True, timeout=600)
    finally:
        os.close(write)


def with_closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """``lit-nn ARGS >&-``: started with no stdout at all."""
    return subprocess.run(["bash", "-c", 'exec "$@" >&-', "lit-nn", *LIT_NN, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def quiet(result: subprocess.CompletedProcess, status: int) -> None:
    assert result.returncode == status, f"exit {result.returncode}, expected {status}:\n{(result.stderr or '')[-3000:]}"
    assert "Traceback" not in (result.stderr or ""), result.stderr[-3000:]


@pytest.fixture(scope="module")
def char_rnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char-RNN checkpoint (untrained: what it says does not matter here, only that it says a lot)."""
    from lit_nn.models import CharRNN

    torch.manual_seed(0)
    model = CharRNN(embedding=8, hidden=16, vocab="".join(sorted(set(TEXT))), sample_length=0)
    path = tmp_path_factory.mktemp("pipes") / "romeo.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def test_generate_into_head_is_quiet(char_rnn):
    """The issue's case, in a shell: ``set -o pipefail; lit-nn generate ... | head -1``. The text is
    longer than a pipe holds (64 KiB), so lit-nn is still writing when head has its line and exits."""
    result = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -1', "pipeline", *LIT_NN, "generate",
                             "--ckpt", str(char_rnn), "--prime", "ROMEO", "--length", "200000", "--seed", "0"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    quiet(result, PIPE_EXIT)
    assert result.stdout.startswith("ROMEO") and result.stdout.count("\n") == 1, result.stdout[:200]
    assert result.stderr == ""


def test_runs_stops_with_141_and_a_closed_stdout_is_dev_null():
    """``lit-nn runs | head`` after head exited: 141, quietly. ``lit-nn runs >&-``: the command runs,
    its output goes nowhere, it exits 0 (it was an AttributeError's traceback)."""
    quiet(to_gone_reader("--help"), PIPE_EXIT)
    quiet(to_gone_reader("runs"), PIPE_EXIT)
    for args in (["--help"], ["runs"]):
        result = with_closed_stdout(*args)
        quiet(result, 0)
        assert result.stderr == "", result.stderr[-2000:]


def test_a_broken_stderr_does_not_change_the_status():
    """stderr carries diagnostics, not the product: a mistake still exits 2 when nobody reads it."""
    quiet(to_gone_reader("runs", "--limit", "0", stderr_too=True), 2)
    quiet(with_closed_stdout("runs", "--limit", "0"), 2)


def gone_reader_stream() -> io.TextIOWrapper:
    read, write = os.pipe()
    os.close(read)
    return open(write, "w", buffering=1)  # line-buffered: a line is a write(2), which fails with EPIPE


@pytest.mark.parametrize("keep_working", [False, True])
def test_the_first_broken_write_points_the_stream_at_dev_null(monkeypatch, keep_working):
    """stdout of an output command raises PipeClosed (status 141) once; of a run's command it does
    not, and the status stays the work's. Either way every later write goes to /dev/null."""
    monkeypatch.setattr(streams, "_keep_working", keep_working)
    monkeypatch.setattr(streams, "_stdout_cut", False)
    with gone_reader_stream() as raw:
        stdout = streams.GuardedStream(raw, stops_command=True)
        if keep_working:
            stdout.write("a line\n")
        else:
            with pytest.raises(streams.PipeClosed) as stopped:
                stdout.write("a line\n")
            assert stopped.value.code == PIPE_EXIT
        assert os.path.samestat(os.fstat(raw.fileno()), os.stat(os.devnull))
        stdout.write("more\n" * 10_000)  # neither raises nor fails again
        stdout.flush()
    assert streams.final_status(0) == (0 if keep_working else PIPE_EXIT)
    assert streams.final_status(2) == 2  # a failure keeps its own status


def test_a_broken_stderr_never_stops_a_command(monkeypatch):
    monkeypatch.setattr(streams, "_keep_working", False)
    monkeypatch.setattr(streams, "_stdout_cut", False)
    with gone_reader_stream() as raw:
        stderr = streams.GuardedStream(raw, stops_command=False)
        stderr.write("error: a sentence nobody reads\n")
        stderr.flush()
    assert streams.final_status(0) == 0


@pytest.mark.slow
def test_compare_writes_its_report_then_stops_with_141(client, tmp_path):
    """compare writes its report, then prints it: the report is whole, the printing stops."""
    from lit_nn.tracking.lifecycle import RunStatus, end_run

    experiment = client.create_experiment("opts")
    for optimizer in ("adam", "sgd"):
        run = client.create_run(experiment, tags={"optimizer": optimizer}).info.run_id
        for epoch in range(3):
            client.log_metric(run, "val_acc", 0.5 + 0.1 * epoch, step=epoch)
        end_run(client, run, RunStatus.FINISHED)
    quiet(to_gone_reader("compare", "--experiment", "opts", "--group_by", "optimizer", "--out", str(tmp_path / "r")),
          PIPE_EXIT)
    assert "| adam" in (tmp_path / "r" / "report.md").read_text() and (tmp_path / "r" / "curves.png").is_file()


@pytest.mark.slow
def test_generate_and_a_trainer_commands_help_are_output(char_rnn):
    """``generate`` to a gone reader and ``fit --help | head``: their output is the product: 141.
    ``generate >&-``: /dev/null, 0."""
    quiet(to_gone_reader("generate", "--ckpt", str(char_rnn), "--length", "50"), PIPE_EXIT)
    quiet(with_closed_stdout("generate", "--ckpt", str(char_rnn), "--length", "50"), 0)
    quiet(to_gone_reader("fit", "--help"), PIPE_EXIT)


@pytest.mark.slow
def test_fit_keeps_training_when_its_reader_is_gone(client):
    """The progress bar writes to a pipe nobody reads: training goes on, the run ends FINISHED with its
    test result, exit 0. Only Ctrl-C or SIGTERM stops a fit."""
    result = to_gone_reader("fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "piped",
                            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3",
                            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
                            "--log_model", "false")
    quiet(result, 0)
    (run,) = runs_of(client, "piped")
    assert run.info.status == "FINISHED", run.data.tags.get("failure_reason")
    assert "test_acc" in run.data.metrics and "result: test_acc=" in result.stderr


@pytest.mark.slow
def test_a_lab_keeps_its_run_when_its_reader_is_gone(client):
    quiet(to_gone_reader("lab", "gates", "--epochs", "20"), 0)
    (run,) = runs_of(client, "lab")
    assert run.info.status == "FINISHED"
