"""Checkpoints written so that a crash or a full disk never leaves half a file where a good one was.

Lightning's own save (``lightning.fabric.utilities.cloud_io._atomic_save``, 2.6) serializes to
memory, then lets fsspec write it in a "transaction": to a temporary file in the *system* temporary
folder, moved onto the checkpoint at the end. Where that folder is on another file system (a
tmpfs ``/tmp``, a scratch disk, a mounted checkpoint volume) the move is a copy into the final path
itself: a full disk there leaves a truncated ``last.ckpt`` in place of the good one, which no
longer loads. Nothing is flushed to the disk either. MLflow's local artifact store copied
artifacts in place too before 3.17 (lit-nn's floor is 3.10).

So lit-nn writes every checkpoint file itself: into a temporary file in the same folder (named
``.<name>.<pid>-<random>.tmp``), flushed to the disk (``fsync``), then renamed over the old file
(``os.replace``, atomic on POSIX), and the folder flushed so the rename survives a power cut. Any
failure removes the temporary file and leaves the previous checkpoint as it was; a full disk (or
quota) is one sentence saying where, how much, and how to continue (:class:`CheckpointNotWritten`).
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import shutil
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_nn.core.errors import UserError

if TYPE_CHECKING:
    from lit_nn.tracking.logger import MLflowTracker

TEMP_SUFFIX = ".tmp"
NO_SPACE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}
COPY_CHUNK = 1 << 20
LAST = f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"


class CheckpointNotWritten(UserError):
    """A checkpoint file could not be written; the previous one is intact and the message says what to do.

    Exit status 1, not a user's mistake's 2: the same command works once the disk has room."""

    exit_code = 1


def write_atomically(path: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` so that ``path`` is, at every moment, either its old content or the
    whole new one: temporary file beside it, fsync, rename, fsync of the folder. On any error the
    temporary file is removed and the error re-raised (``OSError`` as the system gave it)."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temp = folder / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):  # the write's own error is the one to report
            temp.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the file itself is on the disk
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of ``path`` that a killed process left (SIGKILL, power cut): each
    may be as big as a checkpoint, on a disk that may be short of space. Only those whose process is
    gone: a live writer's temporary file is its own."""
    for temp in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        pid = temp.name.removeprefix(f".{path.name}.").partition("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            with suppress(OSError):
                temp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def copy_atomically(source: Path, dest: Path) -> None:
    """Copy the file ``source`` to ``dest`` with :func:`write_atomically`."""
    with source.open("rb") as file:
        write_atomically(dest, iter(lambda: file.read(COPY_CHUNK), b""))


def human_size(size: float) -> str:
    """``532 bytes``, ``1.4 MiB``, ``2.0 GiB``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    step = 0
    while size >= 1024 and step < len(units) - 1:
        size, step = size / 1024, step + 1
    return f"{int(size)} bytes" if step == 0 else f"{size:.1f} {units[step]}"


def how_to_continue(run_id: str | None, folder: Path) -> str:
    """What to run once the disk has room again: resume the run from its last good ``last.ckpt``
    in ``folder``, or, with none written yet, the same command again."""
    last = folder / LAST
    if not last.is_file():
        return "run the same command again (no epoch's checkpoint had been written yet, so there is nothing to resume)"
    if run_id is None:
        return f"the same command with --ckpt_path {last} continues from the last good checkpoint"
    return f"`lit-nn fit --resume {run_id}` continues from the last good checkpoint, {last}"


def not_written(error: OSError, path: Path, size: int, then: str) -> CheckpointNotWritten:
    """The one sentence for a checkpoint file that could not be written: where, why, how much space
    it needed (``size`` bytes) and what to do (``then``, e.g. from :func:`how_to_continue`)."""
    folder = path.parent
    if error.errno in NO_SPACE:
        try:
            free = f", which has {human_size(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = ""
        return CheckpointNotWritten(f"{NO_SPACE[error.errno]}: writing {path.name} needs {human_size(size)} in "
                                    f"{folder}{free}; free space, then {then}")
    return CheckpointNotWritten(f"cannot write {path.name} in {folder} ({error.strerror or error}); "
                                f"once it can be written, {then}")


def checkpoint_bytes(checkpoint: dict[str, Any]) -> memoryview:
    """A checkpoint serialized as ``torch.save`` writes it (in memory, as Lightning does, so that its
    size is known before a byte reaches the disk)."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getbuffer()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose local saves are atomic (:func:`write_atomically`), and
    whose failures are one sentence (:class:`CheckpointNotWritten`): the Trainer's ``plugins``.

    ``tracker`` is the fit's MLflow logger (None without one): the run its checkpoints belong to, for
    the sentence's ``--resume``; an object, not a callback, so that the plugin pickles (``ddp_spawn``).
    Remote paths (``s3://``...) keep Lightning's own save: object stores replace a whole object at once.
    """

    def __init__(self, tracker: MLflowTracker | None = None) -> None:
        super().__init__()
        self.tracker = tracker

    def run_id(self) -> str | None:
        """The run the checkpoints belong to, once it exists (asking creates nothing)."""
        return self.tracker.started_run_id if self.tracker is not None else None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        fs, local = url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        data = checkpoint_bytes(checkpoint)
        target = Path(local)
        try:
            write_atomically(target, [data])
        except OSError as err:
            raise not_written(err, target, data.nbytes, how_to_continue(self.run_id(), target.parent)) from None
