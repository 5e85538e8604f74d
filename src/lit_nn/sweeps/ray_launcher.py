"""Sweep points as Ray tasks, for sweeps across the machines of a Ray cluster.

Ray schedules, lit-nn does not: each point is one task (``num_cpus``/``num_gpus`` from the sweep's
flags, no automatic retry) that starts the sweep's own worker (``lit_nn.cli.sweep_worker``) for
that one point, on whichever node Ray picks. Everything a point needs travels with the task: its
config as text, the tracking URI (every node writes to the same tracking server or database); its
log comes back with the result. So the resume and fault rules are the local launcher's: the
sweep settles every point in MLflow (a task whose Ray worker died ends FAILED with that reason,
the run it left behind is never left RUNNING) and a re-run skips FINISHED points.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.signals import (
    Terminated,
    install_sigterm_handler,
    is_sigterm,
    sigterm_handled,
    sigterm_received,
)
from lit_nn.tracking.lifecycle import RunStatus

CANCEL_GRACE_S = 120.0
# what a point's process inherits on the node, when the sweep has it set
FORWARDED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "MLFLOW_TRACKING_INSECURE_TLS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "LIT_NN_TRACKING_RETRY_S")  # lit_nn.tracking.outage: how long to wait for a server gone


def run_point(message: str, config_text: str, worker_command: list[str]) -> tuple[dict[str, Any], str]:
    """On a Ray node: train one point with a fresh sweep worker; return its result and its log.

    The job's config file and log are paths on the sweep's machine: here they live in a
    temporary folder. A cancelled task (the sweep interrupted) stops its point as Ctrl-C does; a
    SIGTERM to the task's process stops it as SIGTERM does (KILLED, "terminated by SIGTERM"), and
    the task still returns the point's result.
    """
    job = json.loads(message)
    with tempfile.TemporaryDirectory(prefix="lit-nn-ray-point-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(config_text)
        log = Path(tmp) / "point.log"
        job["argv"] = [str(config) if i > 0 and job["argv"][i - 1] == "-c" else arg
                       for i, arg in enumerate(job["argv"])]
        job["log"] = str(log)
        env = {**os.environ, "LIT_NN_SWEEP_PID": str(os.getpid()), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        worker = subprocess.Popen(worker_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env)
        try:
            with sigterm_handled():
                out, _ = worker.communicate(json.dumps(job) + "\n")
        except (KeyboardInterrupt, Terminated) as stop:
            worker.send_signal(signal.SIGTERM if is_sigterm(stop) else signal.SIGINT)
            try:
                out, _ = worker.communicate(timeout=CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                out, _ = worker.communicate()
        lines = [line for line in out.splitlines() if line.strip()]
        result = json.loads(lines[-1]) if lines else {
            "status": RunStatus.FAILED.value, "error": f"the point's worker exited with status {worker.returncode}"}
        return result, log.read_text(errors="replace") if log.is_file() else ""


def connect(address: str | None, env: dict[str, str]) -> Any:
    """``ray.init`` on the cluster at ``address`` (None: a local one, started for this sweep)."""
    try:
        import ray
    except ImportError:
        raise UserError("--launcher ray needs Ray: pip install 'lit-nn[ray]' (or pip install ray)") from None
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, logging_level=logging.ERROR,
                 log_to_driver=False, include_dashboard=False, configure_logging=True)
    except ConnectionError as err:
        raise UserError(f"no Ray cluster answers at --address {address} ({err}); start one with "
                        "`ray start --head` or give the head's address (host:6379)") from None
    return ray


def run_jobs_on_ray(jobs: list[Any], settle: Callable[[Any, dict[str, Any]], None], worker_command: list[str],
                    address: str | None, cpus_per_point: float, gpus_per_point: float,
                    env: dict[str, str]) -> bool:
    """Run ``jobs`` (:class:`lit_nn.sweeps.runner.Job`) as Ray tasks; ``settle`` each as it ends.

    Returns False when interrupted: tasks are cancelled (running points stop as on Ctrl-C and
    are settled; points not started are left for the next run).
    """
    forwarded = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    ray = connect(address, {**forwarded, **env})
    if threading.current_thread() is threading.main_thread():
        install_sigterm_handler()  # ray.init put in its own, which exits at once: stop the points first
    try:
        task = ray.remote(run_point).options(num_cpus=cpus_per_point, num_gpus=gpus_per_point, max_retries=0,
                                             name="lit-nn sweep point")
        pending = {}
        for job in jobs:
            config = job.argv[job.argv.index("-c") + 1]
            pending[task.remote(job.message(), Path(config).read_text(), worker_command)] = job
            job.started = time.monotonic()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                _finish(ray, pending.pop(done[0]), done[0], settle)
            return True
        except (KeyboardInterrupt, SystemExit) as stop:  # Ray's wait turns SIGTERM's Terminated into SystemExit(1)
            if not (isinstance(stop, KeyboardInterrupt) or sigterm_received()):
                raise
            print("\nsweep: interrupted — cancelling the Ray tasks (running points stop as on Ctrl-C)",
                  file=sys.stderr, flush=True)
            for ref in pending:
                ray.cancel(ref)
            for ref, job in pending.items():
                _finish(ray, job, ref, settle, cancelled=True)
            return False
    finally:
        ray.shutdown()


def _finish(ray: Any, job: Any, ref: Any, settle: Callable[[Any, dict[str, Any]], None],
            cancelled: bool = False) -> None:
    """Write the point's log where the local launcher would, then settle it."""
    from ray.exceptions import RayError, TaskCancelledError

    try:
        result, log = ray.get(ref)
    except TaskCancelledError:
        if cancelled:
            return  # never started: nothing to settle
        result, log = {"status": RunStatus.KILLED.value, "error": "the Ray task was cancelled"}, ""
    except RayError as err:
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        result, log = {"status": RunStatus.FAILED.value,
                       "error": f"the Ray task died ({type(err).__name__}: {reason})"}, ""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job.log.write_text(log)
    settle(job, result)

