"""SIGTERM — what Slurm, Kubernetes, systemd and ``timeout`` send — stops lit-nn as Ctrl-C does.

A run ends KILLED with the reason "terminated by SIGTERM", the command exits 143, no run is left
RUNNING, and a fit stopped in training continues with ``--resume RUN_ID`` from its last completed
epoch. Each signal is sent to a real process at a known point, never after a sleep: the process
runs :class:`Hold` (this module, given to it with ``-c``), which blocks it at the chosen hook until
the test, having sent the signal, lets it go on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lit_nn.core.signals import (
    SIGTERM_EXIT,
    SIGTERM_REASON,
    Terminated,
    is_sigterm,
    sigterm_handled,
    sigterm_received,
)
from lit_nn.tracking.lifecycle import RunStatus, end_runs_on_interrupt, failure_reason, reopen_run
from lit_nn.tracking.store import ensure_experiment

from conftest import runs_of
from helpers import REPO

TESTS = Path(__file__).resolve().parents[1]
SMALL = ["--model.init_args.hidden", "32", "--model.init_args.depth", "1", "--data.init_args.batch_size", "32",
         "--trainer.max_epochs", "3",
         "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "3", "--trainer.limit_test_batches",
         "1", "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
         "--log_model", "false", "--log_checkpoint", "false"]


class Hold(L.Callback):
    """Test-only: blocks the process at ``at`` (``setup``, ``train``, ``validation`` or ``test``),
    in ``epoch`` at batch ``batch``, until the test opens and closes the FIFO ``fifo``; no hold
    once the FIFO is gone (the resumed run of the same command)."""

    def __init__(self, fifo: str, at: str, epoch: int = 0, batch: int = 0) -> None:
        self.fifo, self.at, self.epoch, self.batch = fifo, at, epoch, batch

    def _hold(self, at: str, epoch: int = 0, batch: int = 0) -> None:
        if (at, epoch, batch) == (self.at, self.epoch, self.batch) and Path(self.fifo).exists():
            Path(self.fifo).read_text()  # returns once the test has closed its end

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._hold("setup")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._hold("train", trainer.current_epoch, batch_idx)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._hold("validation", trainer.current_epoch, batch_idx)

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._hold("test", 0, batch_idx)


def hold_config(tmp_path: Path, at: str, epoch: int = 0, batch: int = 0) -> Path:
    """A config adding :class:`Hold` at that point, with a fresh FIFO."""
    fifo = tmp_path / f"hold-{at}-{epoch}-{batch}"
    os.mkfifo(fifo)
    path = tmp_path / f"hold-{at}-{epoch}-{batch}.yaml"
    hold = {"class_path": "test_sigterm.Hold", "init_args": {"fifo": str(fifo), "at": at, "epoch": epoch,
                                                             "batch": batch}}
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [hold]}}))
    return path


def child_env() -> dict[str, str]:
    """The test's environment, plus this folder and tests/ on the path: the process imports Hold."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(TESTS),
                                                         os.environ.get("PYTHONPATH", "")])}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lit_nn", *args], cwd=REPO, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def terminate_when_held(proc: subprocess.Popen, config: Path, pid: int | None = None,
                        before_release: Callable[[], object] | None = None, timeout: float = 600) -> None:
    """Wait until ``proc`` is held at the point ``config`` names (it has opened the FIFO), remove
    the FIFO, send SIGTERM (to ``pid``, default ``proc``), wait for ``before_release()``, then let
    the process go on."""
    fifo = fifo_of(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            end = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails until the process is at the hold
            break
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before the hold: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"not held at {fifo.name} within {timeout:.0f} s"
        time.sleep(0.05)
    fifo.unlink()
    os.kill(pid or proc.pid, signal.SIGTERM)
    if before_release is not None:
        before_release()
    os.close(end)


def fifo_of(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["trainer"]["callbacks"][0]["init_args"]["fifo"])


def assert_terminated(client, experiment: str, proc: subprocess.Popen, timeout: float = 300) -> tuple:
    """Exit 143 without a traceback, the run KILLED with the SIGTERM reason, nothing RUNNING."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == SIGTERM_EXIT, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    (run,) = runs_of(client, experiment)
    assert (run.info.status, run.data.tags.get("failure_reason")) == ("KILLED", SIGTERM_REASON), err[-3000:]
    assert f"{SIGTERM_REASON}: run {run.info.run_id} ends KILLED" in err
    return run, err


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# -- in this process: the pieces ---------------------------------------------------------------------
def test_sigterm_raises_terminated_and_counts_as_a_kill():
    with sigterm_handled():
        with pytest.raises(Terminated) as stopped:
            signal.raise_signal(signal.SIGTERM)
        assert sigterm_received()
        signal.raise_signal(signal.SIGTERM)  # a second one does not break the shutdown the first started
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert stopped.value.code == SIGTERM_EXIT == 143
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    for error in (stopped.value, SIGTERMException()):
        assert is_sigterm(error) and RunStatus.of(error) is RunStatus.KILLED
        assert failure_reason(error) == SIGTERM_REASON
    assert not is_sigterm(SystemExit(143)) and RunStatus.of(KeyboardInterrupt()) is RunStatus.KILLED


def test_under_another_handler_that_calls_it_sigterm_only_records():
    """Lightning's handler, installed over lit-nn's during a stage, calls it after its own and
    stops its loops at the next batch: lit-nn's must not raise in the middle of a batch."""
    with sigterm_handled():
        ours = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda signum, frame: ours(signum, frame))
        signal.raise_signal(signal.SIGTERM)
        assert sigterm_received()
        signal.signal(signal.SIGTERM, ours)


def test_an_interrupt_ends_the_runs_a_command_reopened(client):
    """A resumed fit is RUNNING from its reopening, before its Trainer exists: a signal there must not leave it so."""
    experiment = ensure_experiment("reopened")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(3)]
    for run_id in run_ids:
        client.set_terminated(run_id, "KILLED")
    with pytest.raises(Terminated), end_runs_on_interrupt():
        reopen_run(client, run_ids[0])
        raise Terminated
    with pytest.raises(KeyboardInterrupt), end_runs_on_interrupt():
        reopen_run(client, run_ids[1])
        raise KeyboardInterrupt
    with pytest.raises(ValueError), end_runs_on_interrupt():  # a failure: its own handling ends the run
        reopen_run(client, run_ids[2])
        raise ValueError("not an interrupt")
    ended = [client.get_run(run_id) for run_id in run_ids]
    assert [(r.info.status, r.data.tags.get("failure_reason")) for r in ended] == [
        ("KILLED", SIGTERM_REASON), ("KILLED", "interrupted (Ctrl-C)"), ("RUNNING", None)]


def test_the_command_exits_with_its_status_after_every_exit_handler(tmp_path):
    """The console script skips the interpreter's finalization, not what a normal exit runs
    first: handlers registered during the command (MLflow's, torch's) run, output is flushed."""
    flag = tmp_path / "handler-ran"
    code = f"""
import atexit, importlib, sys
cli = importlib.import_module("lit_nn.cli.main")

def command(argv):
    atexit.register(lambda: open({str(flag)!r}, "w").write("ran"))
    print("overview", end="")
    sys.exit(143)

cli.dispatch = command
cli.main()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, flag.read_text()) == (143, "overview", "ran"), result.stderr


# -- a real lit-nn fit -------------------------------------------------------------------------------
def test_sigterm_at_start_up_ends_the_run_killed(client, tmp_path):
    """Held in the setup hooks, right after the run was created (before Lightning's own handler)."""
    hold = hold_config(tmp_path, "setup")
    proc = start("fit", "-c", "experiments/mnist_mlp.yaml", "-c", str(hold), "--experiment", "startup", *SMALL)
    terminate_when_held(proc, hold)
    run, err = assert_terminated(client, "startup", proc)
    assert "nothing to resume" in err
    assert steps(client, run.info.run_id, "train_loss") == []


@pytest.mark.slow
def test_sigterm_mid_epoch_in_validation_and_in_the_test_each_resumes_to_the_end(client, tmp_path):
    """One run, stopped three times and resumed each time with the same command and ``--resume``:
    in epoch 1's training, in epoch 1's validation (Lightning stops after the batch, so epoch 1 is
    lost and last.ckpt stays epoch 0's), and in the final test's last batch (Lightning's loops have
    no check left there: lit-nn's callback stops the stage). The fourth start finishes it."""
    args = ["fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "stopped", *SMALL]
    hold = hold_config(tmp_path, "train", epoch=1, batch=1)
    proc = start(*args[:3], "-c", str(hold), *args[3:])
    terminate_when_held(proc, hold)
    run, err = assert_terminated(client, "stopped", proc)
    run_id = run.info.run_id
    last = Path(run.data.tags["last_checkpoint"])
    assert f"1 epoch(s) complete: the same command with --resume {run_id} continues it from {last}" in err
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert steps(client, run_id, "val_acc") == [0] and steps(client, run_id, "train_loss") == [0]

    hold = hold_config(tmp_path, "validation", epoch=1, batch=1)
    proc = start(*args[:3], "-c", str(hold), *args[3:], "--resume", run_id)
    terminate_when_held(proc, hold)
    run, _ = assert_terminated(client, "stopped", proc)
    assert torch.load(last, weights_only=True)["epoch"] == 0, "an epoch stopped in validation is not complete"
    assert steps(client, run_id, "val_acc") == [0] and steps(client, run_id, "train_loss") == [0]

    hold = hold_config(tmp_path, "test")
    proc = start(*args[:3], "-c", str(hold), *args[3:], "--resume", run_id)
    terminate_when_held(proc, hold)
    run, err = assert_terminated(client, "stopped", proc)
    assert "3 epoch(s) complete" in err
    assert torch.load(last, weights_only=True)["epoch"] == 2

    proc = start(*args, "--resume", run_id)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    (run,) = runs_of(client, "stopped")
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    for key in ("train_loss", "val_acc", "val_loss"):
        assert steps(client, run_id, key) == [0, 1, 2], key  # every epoch once: none lost, none twice
    assert "test_acc" in run.data.metrics


# -- a sweep: its point's worker, then the sweep itself ----------------------------------------------
def point_runs(client) -> list:
    return [r for r in runs_of(client, "sigsweep") if r.data.tags.get("sweep_role") != "parent"]


def sweep_args(tmp_path: Path, hold: Path) -> list[str]:
    """``lit-nn sweep`` of one small point that ``hold`` holds."""
    trainer = {"max_epochs": 3, "limit_train_batches": 4, "limit_val_batches": 1, "limit_test_batches": 1,
               "num_sanity_val_steps": 0, "callbacks": yaml.safe_load(hold.read_text())["trainer"]["callbacks"]}
    sweep = {"name": "sigsweep",
             "config": {"model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1}},
                        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
                        "trainer": trainer},
             "grid": {"model.hidden": [16]}, "seeds": [0]}
    sweep_file = tmp_path / "sigsweep.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    return ["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--log_checkpoint", "false", "--log_model", "false"]


@pytest.mark.slow
def test_sigterm_to_a_point_or_to_the_sweep_ends_the_point_killed_and_a_rerun_finishes_it(client, tmp_path):
    hold = hold_config(tmp_path, "train", epoch=1, batch=1)
    args = sweep_args(tmp_path, hold)

    # SIGTERM to the worker training the point: that point ends KILLED, the sweep reports it
    proc = start(*args)
    worker = _worker_of_held_point(client, proc, hold)
    terminate_when_held(proc, hold, pid=worker)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    (point,) = point_runs(client)
    assert (point.info.status, point.data.tags["failure_reason"]) == ("KILLED", SIGTERM_REASON)
    assert SIGTERM_REASON in out + err

    # SIGTERM to the sweep alone (as `timeout` sends it): it stops its points by SIGTERM, exits 143
    os.mkfifo(fifo_of(hold))
    proc = start(*args)
    _worker_of_held_point(client, proc, hold)
    seen: list[str] = []

    def forwarded() -> None:  # the sweep says so once it has sent its workers SIGTERM
        while "stopping the running points" not in (line := proc.stderr.readline()):
            assert line, "the sweep exited without stopping its points"
            seen.append(line)
        seen.append(line)

    terminate_when_held(proc, hold, before_release=forwarded)
    out, err = proc.communicate(timeout=300)
    err = "".join(seen) + err
    assert proc.returncode == SIGTERM_EXIT, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and "run the same command again to finish them" in err
    runs = runs_of(client, "sigsweep")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if r.data.tags.get("sweep_role") == "parent")
    assert parent.info.status == "KILLED" and parent.data.tags["failure_reason"].startswith(SIGTERM_REASON)
    assert [(r.info.status, r.data.tags["failure_reason"]) for r in point_runs(client)] == [
        ("KILLED", SIGTERM_REASON)] * 2

    proc = start(*args)  # the FIFO is gone: nothing holds it
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert "1 to run, 0 already FINISHED" in out
    assert [r.info.status for r in point_runs(client)] == ["KILLED", "KILLED", "FINISHED"]


def _worker_of_held_point(client, proc: subprocess.Popen, hold: Path) -> int:
    """The pid of the worker whose point is RUNNING (it is or will be held: its run exists first)."""
    deadline = time.monotonic() + 600
    while True:
        with contextlib.suppress(Exception):  # the experiment may not exist yet
            running = [r for r in point_runs(client) if r.info.status == "RUNNING"]
            if running:
                return int(running[0].data.tags["pid"])
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no point started"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_to_a_ray_task_ends_its_point_killed(client, tmp_path):
    """The task's process (``ray::run_point``) passes SIGTERM on to the point, which ends KILLED
    with the reason, and the task still returns the point's result to the sweep."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'lit-nn[ray]' (CI installs it)")
    from helpers import free_port

    ray = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
    temp, port = tempfile.mkdtemp(prefix="ray", dir="/tmp"), free_port()  # short: Ray's socket paths
    env = {**child_env(), "RAY_USAGE_STATS_ENABLED": "0"}  # its workers import Hold too
    started = subprocess.run([*ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
                              "--disable-usage-stats", "--temp-dir", temp], capture_output=True, text=True, env=env,
                             timeout=300)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        hold = hold_config(tmp_path, "train", epoch=1, batch=1)
        proc = start(*sweep_args(tmp_path, hold), "--launcher", "ray", "--address", f"127.0.0.1:{port}")
        task = _parent_named(_worker_of_held_point(client, proc, hold), b"ray::")
        terminate_when_held(proc, hold, pid=task)
        out, err = proc.communicate(timeout=300)
    finally:
        subprocess.run([*ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    (point,) = point_runs(client)
    assert (point.info.status, point.data.tags["failure_reason"]) == ("KILLED", SIGTERM_REASON), out + err


def _parent_named(pid: int, prefix: bytes) -> int:
    """The nearest process above ``pid`` whose command line starts with ``prefix``."""
    for _ in range(4):
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(prefix):
            return pid
    raise AssertionError(f"no {prefix.decode()} process above {pid}")


def test_ctrl_c_interrupts_a_process_that_inherited_sigint_ignored():
    """A CI script's background job inherits SIGINT ignored; the team server then outlived the SIGINT
    that stops it (and the slow claims tests failed in CI only). The console script restores it."""
    import subprocess
    import sys

    code = ("import signal, sys\n"
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "from lit_nn.core.signals import let_ctrl_c_interrupt\n"
            "let_ctrl_c_interrupt()\n"
            "try:\n"
            "    signal.raise_signal(signal.SIGINT)\n"
            "except KeyboardInterrupt:\n"
            "    sys.exit(7)\n")
    ignoring = subprocess.run(["bash", "-c", 'trap "" INT; exec "$@"', "sh", sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=60)
    assert ignoring.returncode == 7, ignoring.stderr
