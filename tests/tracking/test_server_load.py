"""The team server under load and through an outage: real PostgreSQL behind a real ``mlflow server``
(``tests/team.py``), real ``lit-nn fit`` processes talking to it by ``MLFLOW_TRACKING_URI`` alone.

* Eight fits at once lose no run and no metric row, and write none twice.
* The server stops mid-fit (the whole ``lit-nn server``, PostgreSQL and ``mlflow server``, as a
  restart or a crash of the server's machine looks to its clients: connections refused): back
  within the retry window, the fit goes on and finishes with every row; gone for longer, the fit
  ends with one sentence, and ``lit-nn runs --cleanup`` leaves nothing RUNNING.

Nothing here sleeps to wait for something: each step waits for an event (a file, a line of the
fit's output, a process ending), and the fit is held at a known point with SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from lit_nn.core.names import Dynamics
from team import needs_postgres, team_server

from helpers import free_port, run_cli

pytestmark = [pytest.mark.slow, needs_postgres]
psycopg = pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")

EPOCHS, TRAIN_BATCHES, VAL_BATCHES, LOG_EVERY_N_STEPS = 3, 3, 1, 1


def tiny_fit(experiment: str, run_name: str, epochs: int = EPOCHS) -> list[str]:
    """A fit that costs a few seconds: a 16-unit MLP on a few batches of the embedded MNIST sample."""
    return ["fit", "--model", "lit_nn.models.MLP", "--model.init_args.hidden", "16",
            "--data", "lit_nn.data.ImageDataModule", "--data.init_args.batch_size", "32",
            "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", str(TRAIN_BATCHES),
            "--trainer.limit_val_batches", str(VAL_BATCHES), "--trainer.limit_test_batches", "1",
            "--trainer.log_every_n_steps", str(LOG_EVERY_N_STEPS), "--trainer.enable_progress_bar", "false",
            "--experiment", experiment, "--run_name", run_name]


def expected_history(epochs: int) -> dict[str, list[int]]:
    """The MLflow steps of every metric row a fit of ``epochs`` epochs writes (lit_nn.models.base,
    lit_nn.tracking.logger/callbacks): the step is the epoch; train_loss and train_acc once per
    training epoch (the loss is accumulated over the steps and logged at the epoch's end, so
    ``log_every_n_steps`` adds no row however small), val_loss and val_acc once per validation
    (every epoch; the sanity check logs nothing), test_loss and test_acc once after fit (at step
    = the epoch count), best_val_acc and best_epoch once, at the best epoch's step (checked apart)."""
    per_epoch = list(range(epochs))
    return {"train_loss": per_epoch, "train_acc": per_epoch, "val_loss": per_epoch, "val_acc": per_epoch,
            "test_loss": [epochs], "test_acc": [epochs], "best_val_acc": None, "best_epoch": None}


def assert_complete(client, run, epochs: int) -> None:
    """Every metric row the fit writes is there exactly once; the params and config.yaml too."""
    run_id = run.info.run_id
    expected = expected_history(epochs)
    # the per-layer dynamics (grad_norm/fc1..., stepped by optimizer step) are tests/tracking/test_dynamics.py's
    metrics = {key for key in run.data.metrics if Dynamics.split(key) is None}
    assert metrics == set(expected), run.data.metrics
    for key, steps in expected.items():
        rows = client.get_metric_history(run_id, key)
        got = sorted(m.step for m in rows)
        if steps is None:  # one row, at the best epoch
            assert len(rows) == 1 and 0 <= rows[0].step < epochs, (run_id, key, rows)
        else:
            assert got == steps, f"run {run_id} {key}: steps {got}, expected {steps} (each once)"
    best = client.get_metric_history(run_id, "best_epoch")[0]
    assert best.value == best.step
    params = run.data.params
    assert params["trainer.max_epochs"] == str(epochs) and params["model.hidden"] == "16"
    assert params["run_name"] == run.info.run_name and int(params["num_parameters"]) > 0
    assert {"data_source", "trainer.limit_train_batches", "model.optimizer"} <= set(params)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "checkpoints", "confusion_matrix.png"} <= names, names
    assert {"checkpoints/last.ckpt", "checkpoints/best.ckpt"} <= {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml")).read_text())
    assert config["run_name"] == run.info.run_name and config["trainer"]["max_epochs"] == epochs


def fit_env(url: str, **extra: str) -> dict[str, str]:
    """One CPU thread per fit (eight share 2 cores), unbuffered output (lines arrive as printed)."""
    return {**os.environ, "MLFLOW_TRACKING_URI": url, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", **extra}


def test_eight_concurrent_fits_lose_no_run_and_no_metric_row(tmp_path: Path):
    """Eight fits start at once against one server (the CPU split eight ways, so their requests
    interleave all through the run); every run ends FINISHED with every row once."""
    from mlflow import MlflowClient

    fits = 8
    procs: list[subprocess.Popen] = []
    try:
        with team_server(tmp_path / "srv") as url:
            for i in range(fits):
                folder = tmp_path / f"fit{i}"  # each its own ./checkpoints, as on separate machines
                folder.mkdir()
                with open(folder / "output.txt", "w") as out:
                    procs.append(subprocess.Popen([sys.executable, "-m", "lit_nn", *tiny_fit("load", f"load-{i}"),
                                                   "--log_model", "false"], cwd=folder, env=fit_env(url),
                                                  stdout=out, stderr=subprocess.STDOUT))
            for i, proc in enumerate(procs):
                proc.wait(timeout=600)
                out = (tmp_path / f"fit{i}" / "output.txt").read_text()
                assert proc.returncode == 0, f"fit {i} failed:\n{out[-3000:]}"
                assert out.strip().splitlines()[-1].startswith("mlflow: run "), out[-1500:]

            client = MlflowClient(url)
            runs = client.search_runs([client.get_experiment_by_name("load").experiment_id], max_results=100)
            assert sorted(r.info.run_name for r in runs) == sorted(f"load-{i}" for i in range(fits))
            assert [r.info.status for r in runs] == ["FINISHED"] * fits
            assert len({frozenset(r.data.params) for r in runs}) == 1  # the same params, all of them, in each
            for run in runs:
                assert_complete(client, run, EPOCHS)
    finally:
        for proc in procs:  # a failed test leaves no fit behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Fit:
    """``lit-nn fit`` in the background, its output (stdout and stderr) collected line by line as
    it comes, so a test can wait for a line; SIGSTOP/SIGCONT hold it at a point the test chose."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lit_nn", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[str] = []
        self.ended = False  # its output ended (it exited, or closed it)
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, prefix: str, timeout: float = 300) -> str:
        """The first output line that starts with ``prefix``, once the fit has printed it."""
        with self._changed:
            self._changed.wait_for(lambda: self.ended or any(line.startswith(prefix) for line in self.lines), timeout)
            line = next((line for line in self.lines if line.startswith(prefix)), None)
        assert line is not None, f"the fit printed no line starting {prefix!r}:\n{self.output[-3000:]}"
        return line

    def wait_for_file(self, path: Path, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():  # polled every 10 ms: the fit goes on meanwhile, not the test's clock
            assert self.proc.poll() is None, f"the fit ended before {path} appeared:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s:\n{self.output[-3000:]}"
            time.sleep(0.01)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:  # SIGKILL ends a held (stopped) process too
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_and_hold_after_epoch_0(url: str, work: Path, run_name: str, epochs: int, retry_s: str) -> tuple[Fit, Path]:
    """A fit held (SIGSTOP) right after it wrote epoch 0's last.ckpt: mid-run, with epoch 0's
    rows on the server and ``epochs - 1`` epochs and the test still to log. Returns it and the
    checkpoint folder (named after the run id)."""
    fit = Fit(tiny_fit("outage", run_name, epochs), work, fit_env(url, LIT_NN_TRACKING_RETRY_S=retry_s))
    ckpt_dir = Path(fit.wait_for_line("checkpoints: ").split()[1])
    fit.wait_for_file(ckpt_dir / "last.ckpt")
    fit.pause()
    return fit, ckpt_dir


NOTICE = ("warning: the tracking server at {url} is not answering (connection refused); waiting up to {s} s for it "
          "(LIT_NN_TRACKING_RETRY_S)")


def test_server_back_within_the_retry_window_the_fit_goes_on(tmp_path: Path):
    """The team server stops (Ctrl-C: PostgreSQL and mlflow server both) while a fit is held after
    epoch 0, the fit goes on into the outage, says once that it waits, and the server comes back
    on the same port from the same folder: the fit finishes FINISHED with every row once."""
    from mlflow import MlflowClient

    port, work, epochs = free_port(), tmp_path / "work", 4
    work.mkdir()
    fit = None
    try:
        with team_server(tmp_path / "srv", port=port) as url:
            fit, ckpt_dir = start_and_hold_after_epoch_0(url, work, "back", epochs, retry_s="120")
        fit.resume()  # the server is down (team_server waited for it to stop): the next request fails
        fit.wait_for_line(NOTICE.format(url=url, s=126))  # 120 s asked: waits 0, 2, 4 ... 64 s add up to 126
        with team_server(tmp_path / "srv", port=port) as again:
            assert again == url
            code = fit.finish()
            assert code == 0, fit.output[-3000:]
            assert fit.lines[-1].startswith(f"mlflow: run {ckpt_dir.name} "), fit.output[-1500:]
            assert sum(line.startswith("warning: the tracking server") for line in fit.lines) == 1, fit.output
            assert "Traceback" not in fit.output and "error:" not in fit.output, fit.output[-3000:]
            client = MlflowClient(url)
            run = client.get_run(ckpt_dir.name)
            assert run.info.status == "FINISHED"
            assert_complete(client, run, epochs)
    finally:
        if fit is not None:
            fit.kill()  # a failed test leaves no fit behind, held or not


def test_server_gone_past_the_retry_window_one_sentence_and_cleanup_leaves_nothing_running(tmp_path: Path):
    """The same outage with a 6 s window and no server coming back: the fit waits 6 s, then ends
    with one ``error:`` sentence (where its last checkpoint is, how to resume, that the run is left
    RUNNING and how to end it), exit status 1, no traceback, and no second wait to record its end.
    With the server back, ``lit-nn runs --cleanup`` marks the run KILLED: nothing stays RUNNING."""
    from mlflow import MlflowClient

    work = tmp_path / "work"
    work.mkdir()
    fit = None
    try:
        with team_server(tmp_path / "srv") as url:
            fit, ckpt_dir = start_and_hold_after_epoch_0(url, work, "gone", 4, retry_s="6")
        run_id = ckpt_dir.name
        started = time.monotonic()
        fit.resume()
        code = fit.finish(timeout=120)
        waited = time.monotonic() - started
    finally:
        if fit is not None:
            fit.kill()  # a failed test leaves no fit behind, held or not
    assert code == 1, fit.output[-3000:]
    assert "Traceback" not in fit.output, fit.output[-3000:]
    errors = [line for line in fit.lines if line.startswith("error:")]
    assert errors == [f"error: the tracking server at {url} did not answer for 6 s (connection refused; "
                      f"LIT_NN_TRACKING_RETRY_S sets the wait); the run's last checkpoint is {ckpt_dir / 'last.ckpt'}; "
                      f"once the server answers, resume the run with: lit-nn fit --resume {run_id}; "
                      f"run {run_id} is left RUNNING (the store could not record its end): "
                      "`lit-nn runs --cleanup` ends it once the store works"], fit.output[-3000:]
    assert errors[0] == fit.lines[-1], fit.output[-3000:]  # the last thing it says
    # one wait, not a second one to write the run's end (that is tried once, at once)
    assert [line for line in fit.lines if line.startswith("warning: the tracking server")] == [
        NOTICE.format(url=url, s=6)], fit.output[-3000:]
    assert 6 <= waited < 90, waited
    assert (ckpt_dir / "last.ckpt").is_file()

    with team_server(tmp_path / "srv") as url:  # back, elsewhere: the same database
        client = MlflowClient(url)
        assert client.get_run(run_id).info.status == "RUNNING"  # its end could not be written
        cleanup = run_cli("runs", "--cleanup", "--experiment", "outage", cwd=work, env={"MLFLOW_TRACKING_URI": url})
        assert cleanup.returncode == 0, cleanup.stderr[-3000:]
        runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
        assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "KILLED")]
        assert "is gone; marked KILLED by lit-nn runs --cleanup" in runs[0].data.tags["failure_reason"]
