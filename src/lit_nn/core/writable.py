"""Writable before working: every folder a command will write is tried before its work starts.

A sweep started in a read-only folder used to train its points and then fail writing
``reports/``: the work done, the report lost. Each command now calls :func:`check_writable`
for each folder it will write (the store, the artifacts, the checkpoints, the reports) before
it trains or creates a run, and a folder it cannot write is one sentence:
``cannot write <what> <folder> (<why>): <what to do>``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lit_nn.core.errors import UserError


def unwritable_reason(folder: Path, create: bool = False) -> str | None:
    """Why this process cannot create files in ``folder``, or None when it can.

    The probe is a real file, not ``os.access``, which says yes to root on any mode, and can miss
    a read-only mount or a network file system's own rules: an anonymous temporary file (on Linux
    it never has a name, and it is gone when closed), so concurrent probes never meet. A folder
    that does not exist yet is judged by the nearest folder above it that does (the command creates
    the rest when it writes), unless ``create``, which makes it now.
    """
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            return err.strerror or str(err)
        probe = folder
    else:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def check_writable(folder: Path, what: str, remedy: str, create: bool = False) -> None:
    """Refuse, in one sentence, a ``folder`` this process cannot write: ``what`` names it for the
    user (``the sweep's report folder``), ``remedy`` says what to do (see :func:`unwritable_reason`)."""
    reason = unwritable_reason(folder, create=create)
    if reason is not None:
        raise UserError(f"cannot write {what} {folder} ({reason}): {remedy}")
