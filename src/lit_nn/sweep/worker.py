"""A sweep worker: a long-lived process that trains the points the sweep sends it, one by one.

Starting Python with torch, Lightning and MLflow costs ~10 s, far more than an MLP epoch on
the MNIST sample, so a worker imports them once and runs each point in-process through the
same ``LitNNCLI`` as ``lit-nn fit``. Failure isolation still holds: a point that raises (a
NaN loss, a bad option) is caught here and reported, and a point that kills the process
(segfault, OOM) kills only this worker; the sweep records the point as FAILED and starts a
fresh worker. Points that need their own process (multi-device DDP re-launches ``sys.argv``)
run as a ``python -m lit_nn fit`` child instead (``own_process`` in the job).

Protocol: one JSON job per line on stdin, one JSON result per line on the original stdout
(the training output of each point goes to its log file instead). EOF on stdin ends the
worker. If the sweep process dies (even by ``kill -9``), Linux sends this worker SIGINT
(``PR_SET_PDEATHSIG``): the current point stops like on Ctrl-C and its run ends KILLED.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
INTERRUPTED = "interrupted: the sweep was stopped (Ctrl-C, SIGTERM, or its process died)"
_interrupted = False


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


# jsonargparse's boilerplate around the one line that says what is wrong
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:",
          "- Expected a <class 'NoneType'>", "Given value type:", "Given value:")


def error_from_log(log: Path, limit: int = 600) -> str:
    """The ``error:`` message a CLI printed (jsonargparse, lit-nn), condensed to one line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error:"):
            kept = [line.strip() for line in lines[i:i + 16] if line.strip()]
            kept = [line for line in kept if not line.startswith(_NOISE)]
            return " ".join(kept).removeprefix("error:").strip()[:limit]
    tail = [line.strip() for line in lines[-3:] if line.strip()]
    return " ".join(tail)[:limit]


def describe_exception(err: BaseException) -> str:
    """One line for the run's failure reason: a lit-nn UserError anywhere in the chain wins
    (jsonargparse wraps errors raised while it builds the model)."""
    from lit_nn.errors import UserError

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return str(cur)
        cur = cur.__cause__ or cur.__context__
    return f"{type(err).__name__}: {err}"[:2000]


def run_in_process(argv: list[str], log: Path) -> dict[str, Any]:
    """Train one point with ``LitNNCLI`` in this process; report how it ended."""
    global _interrupted
    with _output_to(log):
        try:
            from lit_nn.cli import LitNNCLI

            LitNNCLI(args=argv)
            return {"status": "FINISHED"}
        except KeyboardInterrupt:
            return {"status": "KILLED", "error": INTERRUPTED}
        except SystemExit as err:  # jsonargparse errors, Lightning after a Ctrl-C
            if _interrupted:
                return {"status": "KILLED", "error": INTERRUPTED}
            sys.stderr.flush()
            reason = error_from_log(log) or f"exited with status {err.code}"
            return {"status": "FAILED", "error": reason}
        except Exception as err:  # noqa: BLE001 - any failure of a point is reported, not fatal
            traceback.print_exc()
            return {"status": "FAILED", "error": describe_exception(err)}


def run_own_process(argv: list[str], log: Path) -> dict[str, Any]:
    """Train one point as a ``python -m lit_nn fit`` child (needed for multi-device DDP).

    The child gets its own session so that a terminal Ctrl-C reaches it once, through this
    worker; it gets SIGINT too if this worker dies.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "lit_nn", *argv], stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=die_with_parent)
        try:
            code = child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return {"status": "KILLED", "error": INTERRUPTED}
    if code == 0:
        return {"status": "FINISHED"}
    return {"status": "FAILED", "error": error_from_log(log) or f"lit-nn fit exited with status {code}"}


def note_interrupt(job: dict[str, Any], reason: str) -> None:
    """Give the interrupted point's run a reason (Lightning records an empty one for Ctrl-C);
    the sweep may be dead by now, so the worker does it itself."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI") or None)
        found = client.search_runs([job["experiment_id"]], f"tags.sweep_attempt = '{job['attempt']}'", max_results=1)
        if found and not found[0].data.tags.get("failure_reason"):
            client.set_tag(found[0].info.run_id, "failure_reason", reason)
    except Exception:  # noqa: BLE001 - best effort while shutting down
        pass


def main() -> None:
    """Serve jobs from stdin until EOF or an interrupt."""
    die_with_parent(signal.SIGINT)
    parent = os.environ.get("LIT_NN_SWEEP_PID")
    if parent and os.getppid() != int(parent):
        sys.exit(1)  # the sweep died before the death signal was armed
    signal.signal(signal.SIGINT, _on_sigint)
    results = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints must not corrupt the result channel
    os.close(devnull)
    try:
        for line in sys.stdin:
            job = json.loads(line)
            run = run_own_process if job.get("own_process") else run_in_process
            result = run(job["argv"], Path(job["log"]))
            if result["status"] == "KILLED" and job.get("experiment_id"):
                note_interrupt(job, result["error"])
            results.write(json.dumps({"attempt": job["attempt"], **result}) + "\n")
            results.flush()
            if _interrupted:
                break
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
