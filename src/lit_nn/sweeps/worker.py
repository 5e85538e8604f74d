"""A sweep worker: a long-lived process that trains the points the sweep sends it, one by one.

Starting Python with torch, Lightning and MLflow costs ~10 s, far more than an MLP epoch on
the MNIST sample, so a worker imports them once and runs each point in-process through the
fit entry it is given (:func:`serve`'s ``run_fit``: the same ``LitNNCLI`` as ``lit-nn fit``,
handed in by ``lit_nn.cli.sweep_worker`` so that this package never imports the CLI).
Failure isolation still holds: a point that raises (a NaN loss, a bad option) is caught here
and reported, and a point that kills the process (segfault, OOM) kills only this worker; the sweep records the point as FAILED and starts a
fresh worker. Points that need their own process (multi-device DDP re-launches ``sys.argv``)
run as a ``python -m lit_nn fit`` child instead (``own_process`` in the job).

Before training a point the worker claims it in the tracking store (``lit_nn.sweeps.claims``),
wherever it runs (here, or on a Ray node): a point claimed by another sweep, or FINISHED by one
since this sweep planned, is answered SKIPPED instead; while the point trains the claim is
renewed, and a worker that loses it (it stalled past its lease) stops the point.

Protocol: one JSON job per line on stdin, one JSON result per line on the original stdout
(the training output of each point goes to its log file instead). EOF on stdin ends the
worker. If the sweep process dies (even by ``kill -9``), Linux sends this worker SIGINT
(``PR_SET_PDEATHSIG``): the current point stops like on Ctrl-C and its run ends KILLED. SIGTERM
(the sweep forwards its own; a scheduler may send it to every process) stops the point the same
way, with the reason "terminated by SIGTERM", and ends the worker with status 143.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from lit_nn.core.names import Tag
from lit_nn.core.signals import SIGTERM_REASON, Terminated, is_sigterm, sigterm_handled, sigterm_received
from lit_nn.sweeps.sweep import Sweep
from lit_nn.tracking.lifecycle import RunStatus, failure_reason

PR_SET_PDEATHSIG = 1
INTERRUPTED = "interrupted: the sweep was stopped (Ctrl-C, SIGTERM, or its process died)"
SKIPPED = "SKIPPED"  # a result status besides MLflow's: another sweep has the point
FitEntry = Callable[..., object]  # run_fit(argv) or run_fit(argv, callbacks)
_interrupted = False
_lost_claim = ""


def die_with_parent(sig: int = signal.SIGINT) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C, the sweep forwarding one, or the sweep's death: stop the current point once."""
    global _interrupted
    if _interrupted:
        return  # a second SIGINT (terminal + forwarded) must not break the graceful shutdown
    _interrupted = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send fds 1 and 2 (Python, Lightning and C-level output) to the point's log file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def error_from_log(log: Path, limit: int = 600) -> str:
    """The ``error:`` message a CLI printed (jsonargparse, lit-nn), condensed to one line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error:"):
            kept = [line.strip() for line in lines[i:i + 16] if line.strip()]
            return " ".join(kept).removeprefix("error:").strip()[:limit]
    tail = [line.strip() for line in lines[-3:] if line.strip()]
    return " ".join(tail)[:limit]


def _result(status: RunStatus, error: str = "") -> dict[str, Any]:
    return {"status": status.value, "error": error} if error else {"status": status.value}


def run_in_process(argv: list[str], log: Path, run_fit: FitEntry, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train one point with ``run_fit`` in this process (``callbacks`` join its Trainer's); report how it ended."""
    with _output_to(log):
        try:
            run_fit(argv, callbacks) if callbacks else run_fit(argv)
            return _result(RunStatus.FINISHED)
        except KeyboardInterrupt:
            return _result(RunStatus.KILLED, INTERRUPTED)
        except SystemExit as err:  # jsonargparse errors, Lightning after a Ctrl-C or SIGTERM
            if is_sigterm(err):
                return _result(RunStatus.KILLED, SIGTERM_REASON)
            if _interrupted:
                return _result(RunStatus.KILLED, INTERRUPTED)
            sys.stderr.flush()
            return _result(RunStatus.FAILED, error_from_log(log) or f"exited with status {err.code}")
        except Exception as err:  # noqa: BLE001 - any failure of a point is reported, not fatal
            traceback.print_exc()
            return _result(RunStatus.FAILED, failure_reason(err))


def run_own_process(argv: list[str], log: Path) -> dict[str, Any]:
    """Train one point as a ``python -m lit_nn fit`` child (needed for multi-device DDP).

    The child gets its own session so that a terminal Ctrl-C reaches it once, through this
    worker, and a SIGTERM to this worker is passed on as SIGTERM; it gets SIGINT too if this
    worker dies.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "lit_nn", *argv], stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=die_with_parent)
        try:
            code = child.wait()
        except (KeyboardInterrupt, Terminated) as stop:
            terminated = is_sigterm(stop)
            child.send_signal(signal.SIGTERM if terminated else signal.SIGINT)
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return _result(RunStatus.KILLED, SIGTERM_REASON if terminated else INTERRUPTED)
    if code == 0:
        return _result(RunStatus.FINISHED)
    return _result(RunStatus.FAILED, error_from_log(log) or f"lit-nn fit exited with status {code}")


def note_interrupt(job: dict[str, Any], reason: str) -> None:
    """Say in the interrupted point's run that the sweep stopped it (the run itself only knows
    it was interrupted); the sweep may be dead by now, so the worker does it itself."""
    try:
        from lit_nn.tracking.store import tracking_client

        client = tracking_client()
        found = client.search_runs([job["experiment_id"]], f"tags.{Tag.SWEEP_ATTEMPT} = '{job['attempt']}'",
                                   max_results=1)
        if found:
            client.set_tag(found[0].info.run_id, Tag.FAILURE_REASON, reason)
    except Exception:  # noqa: BLE001 - best effort while shutting down
        pass


def train_point(job: dict[str, Any], run_fit: FitEntry, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train the job's point, in this process or as a child (multi-device DDP: no live callbacks,
    so a tuned slot trained that way is not pruned)."""
    if job.get("own_process"):
        return run_own_process(job["argv"], Path(job["log"]))
    return run_in_process(job["argv"], Path(job["log"]), run_fit, callbacks)


def train_trial(job: dict[str, Any], run_fit: FitEntry) -> dict[str, Any]:
    """A tuned sweep's slot: ask the arm's study for the trial (ending the slot's stale trials
    first: this worker holds its claim), train it with the pruning callback, tell the result."""
    from lit_nn.sweeps.runner import find_attempt_run
    from lit_nn.sweeps.study import TrialSlot
    from lit_nn.tracking.store import tracking_client

    try:
        slot = TrialSlot.start(job["tune"])
    except Exception as err:  # noqa: BLE001 - the study is away or broken: this slot fails, the worker lives on
        return _result(RunStatus.FAILED, f"cannot ask the arm's Optuna study in {job['tune']['storage']} "
                                         f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})")
    argv = list(job["argv"])
    at = argv.index("-c") + 1
    argv[at] = str(slot.config_file(Path(argv[at])))
    result = train_point({**job, "argv": argv}, run_fit, slot.callbacks())
    try:
        run = find_attempt_run(tracking_client(), job["experiment_id"], job["attempt"])
        state = slot.finish(run)
    except Exception as err:  # noqa: BLE001 - the study is away: the run is the record; a re-run re-tells
        state = f"not told ({type(err).__name__}: {str(err)[:200]})"
    return {**result, "trial": slot.trial.number, "trial_state": state, "params": slot.params}


def run_claimed(job: dict[str, Any], train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Train the job's point with ``train()`` if this worker wins its claim (jobs without a
    ``claim`` just train); else answer SKIPPED with whose it is."""
    global _lost_claim
    spec = job.get("claim")
    if not spec:
        return train()
    from lit_nn.sweeps import claims
    from lit_nn.tracking.store import tracking_client

    client = tracking_client()
    sweep = Sweep(spec["sweep"], job["experiment_id"])
    claim, note = claims.try_claim(client, spec["prefix"], spec["lease_s"])
    if claim is None:
        return {"status": SKIPPED, "error": note}
    if not spec.get("force"):
        done = finished_point_run(client, sweep, spec["config_hash"])
        if done is not None:
            claims.release(client, claim)
            return {"status": SKIPPED, "error": f"FINISHED by another sweep (run {done[:8]})"}
    if note:
        end_stale_runs(client, sweep, spec["config_hash"], note)

    def on_lost(reason: str) -> None:
        global _lost_claim
        _lost_claim = f"stopped: {reason} (this worker stalled past its lease)"
        os.kill(os.getpid(), signal.SIGINT)

    _lost_claim = ""
    with claims.kept(client, claim, spec["lease_s"], on_lost):
        result = train()
    if _lost_claim and result["status"] != RunStatus.FINISHED:
        result = _result(RunStatus.KILLED, _lost_claim)
    return result


def point_runs_with_status(client: Any, sweep: Sweep, config_hash: str, status: RunStatus) -> list[Any]:
    """The point's runs (under any parent) in one status."""
    return client.search_runs([sweep.experiment_id], f"{sweep.filter()} and "
                              f"tags.{Tag.CONFIG_HASH} = '{config_hash}' and attributes.status = '{status}'")


def finished_point_run(client: Any, sweep: Sweep, config_hash: str) -> str | None:
    """The id of a FINISHED run of the point, if any sweep has one."""
    found = point_runs_with_status(client, sweep, config_hash, RunStatus.FINISHED)
    return found[0].info.run_id if found else None


def end_stale_runs(client: Any, sweep: Sweep, config_hash: str, reason: str) -> None:
    """End the RUNNING runs of a point whose claim this worker took over (their owner is gone)."""
    from lit_nn.tracking.lifecycle import end_run

    for run in point_runs_with_status(client, sweep, config_hash, RunStatus.RUNNING):
        end_run(client, run.info.run_id, RunStatus.KILLED, f"another sweep {reason}")


def serve(run_fit: FitEntry) -> None:
    """Serve jobs from stdin until EOF or an interrupt, training in-process points with ``run_fit``;
    after SIGTERM, exit with status 143 once the point's result is sent."""
    die_with_parent(signal.SIGINT)
    parent = os.environ.get("LIT_NN_SWEEP_PID")
    if parent and os.getppid() != int(parent):
        sys.exit(1)  # the sweep died before the death signal was armed
    signal.signal(signal.SIGINT, _on_sigint)
    with sigterm_handled():
        _serve(run_fit)
        if sigterm_received():
            raise Terminated


def _serve(run_fit: FitEntry) -> None:
    results = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints must not corrupt the result channel
    os.close(devnull)
    try:
        for line in sys.stdin:
            job = json.loads(line)
            train = partial(train_trial if job.get("tune") else train_point, job, run_fit)
            result = run_claimed(job, train)
            if result["status"] == RunStatus.KILLED and job.get("experiment_id"):
                note_interrupt(job, result["error"])
            results.write(json.dumps({"attempt": job["attempt"], **result}) + "\n")
            results.flush()
            if _interrupted or sigterm_received():
                break
    except KeyboardInterrupt:
        pass

