"""Checkpoints are written atomically: a full disk at any write leaves the previous good checkpoint,
no temporary file, a FAILED run that says where and how much, and a run that resumes.

The fast tests inject the fault at the write itself (``os.write`` of lit-nn's temporary checkpoint
file gets half its bytes written, then ENOSPC, as a disk filling up mid-file does); the slow one fills
a real tmpfs mounted over the store's checkpoint folder (root only: skipped, saying so, elsewhere).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lit_nn.core.errors import UserError
from lit_nn.core.signals import SIGTERM_REASON
from lit_nn.tracking.atomic import (
    AtomicCheckpointIO,
    CheckpointNotWritten,
    copy_atomically,
    human_size,
    remove_stale_temporaries,
    write_atomically,
)
from lit_nn.tracking.checkpoints import load_checkpoint
from lit_nn.tracking.logger import MLflowTracker

from conftest import runs_of
from helpers import assert_clean_error, run_main

FIT = ["fit", "-c", "experiments/mnist_mlp.yaml", "--model.init_args.hidden", "32", "--model.init_args.depth", "1",
       "--data.init_args.batch_size", "32", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4",
       "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0",
       "--trainer.enable_progress_bar", "false", "--log_model", "false", "--test_after_fit", "false"]


class FullDisk:
    """Fault injection at the lowest write lit-nn makes: the ``nth`` temporary file written for a
    checkpoint named ``name`` in a folder that ``where`` accepts gets half of its first write, then
    ``OSError(ENOSPC)``; every other write goes through."""

    def __init__(self, name: str, nth: int = 1, where: str = "checkpoints") -> None:
        self.name, self.nth, self.where = name, nth, where
        self.opened: list[Path] = []  # the matching temporary files, in the order they were opened
        self.failed: Path | None = None
        self._fds: dict[int, Path] = {}
        self._half_written: set[int] = set()

    def _matches(self, path: Path) -> bool:
        return (path.name.startswith(f".{self.name}.") and path.name.endswith(".tmp")
                and self.where in path.parent.parts)

    @contextmanager
    def installed(self) -> Iterator[FullDisk]:
        real_open, real_write, real_close = os.open, os.write, os.close

        def fake_open(path, flags, mode=0o777, *, dir_fd=None):
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            self._fds.pop(fd, None)
            if isinstance(path, str | Path) and self._matches(Path(path)):
                self.opened.append(Path(path))
                if len(self.opened) == self.nth:
                    self._fds[fd] = Path(path)
            return fd

        def fake_write(fd, data):
            if fd not in self._fds:
                return real_write(fd, data)
            if fd not in self._half_written:
                self._half_written.add(fd)
                return real_write(fd, memoryview(data)[: max(1, len(data) // 2)])
            self.failed = self._fds[fd]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def fake_close(fd):
            self._fds.pop(fd, None)
            return real_close(fd)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "open", fake_open)
            patch.setattr(os, "write", fake_write)
            patch.setattr(os, "close", fake_close)
            yield self


def store_dir(tracking_store: str) -> Path:
    return Path(tracking_store.removeprefix("sqlite:///")).parent


def epoch_of(path: Path) -> int:
    return load_checkpoint(path)["epoch"]


def assert_failed_cleanly(result, client, experiment: str, folder_of: str, store: Path):
    """One ``error:`` line naming the folder, the size and what to do; the run FAILED with that sentence."""
    (run,) = runs_of(client, experiment)
    folder = {"checkpoints": store / "checkpoints" / run.info.run_id,
              "artifacts": Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints"}[folder_of]
    assert_clean_error(result, "the disk is full", f" in {folder}, which has ", "free space, then")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert re.search(r"writing (best|last)\.ckpt needs \d+\.\d KiB in ", errors[0]), errors[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == errors[0].removeprefix("error: ")
    assert list(store.rglob("*.tmp")) == [], "a temporary checkpoint file was left behind"
    return run, errors[0]


# -- through the real command: a full disk at each moment a checkpoint is written -------------------
def test_a_full_disk_at_the_first_checkpoint_leaves_nothing_half_written(capsys, client, tracking_store):
    store = store_dir(tracking_store)
    with FullDisk("best.ckpt", 1).installed() as disk:
        result = run_main(capsys, *FIT, "--experiment", "first")
    assert disk.failed is not None, "the fault was never reached"
    run, error = assert_failed_cleanly(result, client, "first", "checkpoints", store)
    assert "there is nothing to resume" in error and "run the same command again" in error
    assert list((store / "checkpoints" / run.info.run_id).iterdir()) == []


def test_a_full_disk_at_a_later_last_ckpt_keeps_the_last_good_one_and_resumes(capsys, client, tracking_store):
    store = store_dir(tracking_store)
    with FullDisk("last.ckpt", 2).installed() as disk:  # epoch 1's last.ckpt, epoch 0's is on the disk
        result = run_main(capsys, *FIT, "--experiment", "later")
    assert disk.failed is not None, "the fault was never reached"
    run, error = assert_failed_cleanly(result, client, "later", "checkpoints", store)
    run_id = run.info.run_id
    folder = store / "checkpoints" / run_id
    assert f"`lit-nn fit --resume {run_id}` continues from the last good checkpoint, {folder / 'last.ckpt'}" in error
    assert epoch_of(folder / "last.ckpt") == 0
    assert epoch_of(folder / "best.ckpt") in (0, 1)  # written just before, whole

    resumed = run_main(capsys, *FIT, "--experiment", "later", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = runs_of(client, "later")
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert "failure_reason" not in run.data.tags
    assert epoch_of(folder / "last.ckpt") == 1
    assert [m.step for m in client.get_metric_history(run_id, "val_acc")] == [0, 1, 1]  # epoch 1 again, whole


def test_a_full_disk_at_a_later_best_ckpt_keeps_the_previous_best(capsys, client, tracking_store):
    store = store_dir(tracking_store)
    with FullDisk("best.ckpt", 2).installed() as disk:  # the first epoch that improves on epoch 0 (epoch 1 here)
        result = run_main(capsys, *FIT, "--experiment", "best", "--trainer.max_epochs", "3")
    assert disk.failed is not None, "no epoch improved val_acc on epoch 0: this test needs another setting"
    run, error = assert_failed_cleanly(result, client, "best", "checkpoints", store)
    folder = store / "checkpoints" / run.info.run_id
    assert epoch_of(folder / "best.ckpt") == 0 and epoch_of(folder / "last.ckpt") in (0, 1)
    assert f"--resume {run.info.run_id}" in error


def test_a_full_disk_when_the_best_checkpoint_goes_into_the_runs_artifacts(capsys, client, tracking_store):
    store = store_dir(tracking_store)
    with FullDisk("best.ckpt", 1, where="artifacts").installed() as disk:
        result = run_main(capsys, *FIT, "--experiment", "artifact", "--log_checkpoint", "true")
    assert disk.failed is not None, "the fault was never reached"
    run, error = assert_failed_cleanly(result, client, "artifact", "artifacts", store)
    assert client.list_artifacts(run.info.run_id, "checkpoints") == []  # no half best.ckpt among them
    folder = store / "checkpoints" / run.info.run_id
    assert epoch_of(folder / "last.ckpt") == 1 and epoch_of(folder / "best.ckpt") in (0, 1)
    assert f"--resume {run.info.run_id}" in error

    resumed = run_main(capsys, *FIT, "--experiment", "artifact", "--resume", run.info.run_id)  # trains nothing more
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    (artifact,) = client.list_artifacts(run.info.run_id, "checkpoints")
    assert artifact.path == "checkpoints/best.ckpt" and artifact.file_size == (folder / "best.ckpt").stat().st_size


# -- resuming: a refusal leaves the run as it was -------------------------------------------------
def test_resuming_a_killed_run_whose_last_ckpt_is_truncated_leaves_it_killed(capsys, client, tracking_store):
    """The run is reopened only once nothing can refuse the resume: a truncated checkpoint or a bad
    Trainer flag found later used to leave it RUNNING."""
    first = run_main(capsys, *FIT, "--experiment", "killed", "--trainer.max_epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = runs_of(client, "killed")
    run_id = run.info.run_id
    client.set_tag(run_id, "failure_reason", SIGTERM_REASON)
    client.set_terminated(run_id, "KILLED")  # as a SIGTERM leaves it
    last = store_dir(tracking_store) / "checkpoints" / run_id / "last.ckpt"

    def still_killed() -> None:
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags.get("failure_reason")) == ("KILLED", SIGTERM_REASON)

    bad_flag = run_main(capsys, *FIT, "--experiment", "killed", "--resume", run_id, "--trainer.accelerator", "cpu",
                        "--trainer.devices", str((os.cpu_count() or 1) + 1))
    assert_clean_error(bad_flag, "--trainer.devices")
    still_killed()

    last.write_bytes(last.read_bytes()[:2000])
    truncated = run_main(capsys, *FIT, "--experiment", "killed", "--resume", run_id)
    assert_clean_error(truncated, f"{last} is not a readable checkpoint")
    still_killed()


def test_resume_needs_the_mlflow_run_it_continues(capsys, client):
    result = run_main(capsys, *FIT, "--resume", "0" * 32, "--trainer.logger", "false")
    assert_clean_error(result, "--resume", "--trainer.logger false")


# -- the writer itself ---------------------------------------------------------------------------
def test_write_atomically_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "deep" / "last.ckpt"
    write_atomically(path, [b"old"])
    assert path.read_bytes() == b"old"

    def failing():
        yield b"new, half"
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        write_atomically(path, failing())
    assert path.read_bytes() == b"old" and [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    write_atomically(path, [b"new ", memoryview(b"content")])
    assert path.read_bytes() == b"new content"


def test_the_temporaries_of_a_killed_writer_are_removed_not_a_live_ones(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".last.ckpt.{int(dead.stdout)}-0000.tmp"
    live = folder / f".last.ckpt.{os.getpid()}-0000.tmp"
    other = folder / f".best.ckpt.{int(dead.stdout)}-0000.tmp"
    for file in (stale, live, other):
        file.write_bytes(b"x" * 100)
    remove_stale_temporaries(folder / "last.ckpt")
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, other.name])


def test_the_checkpoint_io_saves_atomically_and_says_what_a_full_disk_needs(tmp_path, tracking_store):
    tracker = MLflowTracker("atomic", run_id="a" * 32, tracking_uri=tracking_store)  # a resumed run's
    io = pickle.loads(pickle.dumps(AtomicCheckpointIO(tracker)))  # as ddp_spawn sends it to its processes
    path = tmp_path / "run" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, path)
    assert io.load_checkpoint(path, weights_only=True)["epoch"] == 0
    with FullDisk("last.ckpt", 1, where="run").installed(), pytest.raises(CheckpointNotWritten) as caught:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 1}, path)
    assert isinstance(caught.value, UserError) and caught.value.exit_code == 1
    message = str(caught.value)
    assert message.startswith("the disk is full: writing last.ckpt needs ") and f" in {path.parent}, which has " in message
    assert message.endswith(f"free space, then `lit-nn fit --resume {'a' * 32}` continues from the last good "
                            f"checkpoint, {path}")
    assert io.load_checkpoint(path, weights_only=True)["epoch"] == 0
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_copy_atomically_copies_whole_files(tmp_path):
    source = tmp_path / "best.ckpt"
    source.write_bytes(os.urandom(3 * (1 << 20) + 7))  # several chunks
    copy_atomically(source, tmp_path / "artifacts" / "best.ckpt")
    assert (tmp_path / "artifacts" / "best.ckpt").read_bytes() == source.read_bytes()


@pytest.mark.parametrize(("size", "text"), [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"),
                                            (5 << 20, "5.0 MiB"), (3 << 40, "3.0 TiB")])
def test_human_size(size, text):
    assert human_size(size) == text


# -- a real small file system ----------------------------------------------------------------------
@pytest.fixture
def small_checkpoint_disk(tracking_store: str) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted over the store's checkpoint folder (skipped where mounting is not permitted)."""
    folder = store_dir(tracking_store) / "checkpoints"
    folder.mkdir()
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("a tmpfs needs Linux's mount")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


class FillDisk(L.Callback):
    """Test-only: at the start of training epoch ``epoch``, grows the file ``filler`` until only
    ``leave`` bytes of its file system are free (another program filling the disk mid-fit)."""

    def __init__(self, filler: str, epoch: int, leave: int) -> None:
        self.filler, self.epoch, self.leave = Path(filler), epoch, leave

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with self.filler.open("ab") as file:
                file.write(b"\0" * max(0, shutil.disk_usage(self.filler.parent).free - self.leave))


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [0, 1], ids=["first-checkpoint", "later-epoch"])
def test_a_real_full_disk_mid_training_then_resume(capsys, client, tracking_store, small_checkpoint_disk, tmp_path,
                                                   epoch):
    """The checkpoints' file system fills up (all but half a checkpoint) before epoch ``epoch``: its
    first checkpoint write fails, what was written before stays whole, and once space is freed the
    run resumes (or, with nothing written yet, is run again) to the end. A checkpoint written in
    place loses here: the write truncates the good file, then fails."""
    reference = run_main(capsys, *FIT, "--experiment", "measure", "--trainer.max_epochs", "1",
                         "--trainer.logger", "false")
    assert reference.returncode == 0, reference.stderr[-3000:]
    size = (small_checkpoint_disk / "untracked" / "last.ckpt").stat().st_size
    shutil.rmtree(small_checkpoint_disk / "untracked")
    filler = small_checkpoint_disk / "filler"
    fill = tmp_path / "fill.yaml"
    callback = {"class_path": f"{__name__}.FillDisk", "init_args": {"filler": str(filler), "epoch": epoch,
                                                                     "leave": size // 2}}
    fill.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))

    result = run_main(capsys, *FIT, "-c", str(fill), "--experiment", "full", "--trainer.max_epochs", "3")
    run, error = assert_failed_cleanly(result, client, "full", "checkpoints", store_dir(tracking_store))
    assert re.search(r"which has \d+\.\d KiB free", error), error
    folder = small_checkpoint_disk / run.info.run_id
    filler.unlink()
    if epoch == 0:
        assert "nothing to resume" in error and list(folder.iterdir()) == []
        return
    assert f"`lit-nn fit --resume {run.info.run_id}`" in error
    assert epoch_of(folder / "last.ckpt") == 0 and epoch_of(folder / "best.ckpt") == 0
    resumed = run_main(capsys, *FIT, "--experiment", "full", "--trainer.max_epochs", "3", "--resume", run.info.run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert epoch_of(folder / "last.ckpt") == 2
