"""Continuing a killed or failed fit in the same MLflow run, from its ``last.ckpt``.

``--resume RUN_ID`` names the run; ``--ckpt_path last`` picks the newest unfinished run of
the experiment with the same run name. A RUNNING run whose process is gone (SIGKILL, a
power cut) is first marked KILLED; one whose process is still alive is refused.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.tracking.lifecycle import RunStatus
from lit_nn.tracking.liveness import reap_dead_runs, run_process_alive
from lit_nn.tracking.store import checkpoint_root


def find_run_to_resume(client: Any, experiment_id: str | None, experiment: str, run_name: str,
                       run_id: str | None) -> Any:
    """The run to continue: the one named by id, else the newest unfinished run of that name."""
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:  # noqa: BLE001 - MLflow raises its own RestException/MlflowException
            raise UserError(f"--resume {run_id}: no such run in the tracking store") from None
        return run
    if experiment_id is None:
        raise UserError(f"--ckpt_path last: experiment {experiment!r} has no runs to resume")
    escaped = run_name.replace("'", "\\'")
    runs = client.search_runs([experiment_id], f"attributes.run_name = '{escaped}'",
                              order_by=["attributes.start_time DESC"], max_results=50)
    for run in runs:
        if run.info.status != RunStatus.FINISHED and (checkpoint_root() / run.info.run_id / "last.ckpt").is_file():
            return run
    raise UserError(f"--ckpt_path last: no unfinished run named {run_name!r} with a last.ckpt in experiment "
                    f"{experiment!r}; use --resume RUN_ID, or start a new run without --ckpt_path last")


def checkpoint_to_resume(client: Any, run: Any) -> Path:
    """The last.ckpt to continue ``run`` from (reaping the run first if its process died), fetched
    from its artifacts if need be. The run is not reopened here: the caller does that once nothing
    else can refuse the resume (:func:`~lit_nn.tracking.lifecycle.reopen_run`), so that a refusal
    leaves it as it was, not RUNNING."""
    run_id = run.info.run_id
    if run.info.status == RunStatus.FINISHED:
        raise UserError(f"run {run_id} already FINISHED; start a new run instead of resuming it")
    if run.info.status == RunStatus.RUNNING:
        if run_process_alive(run, socket.gethostname()):
            raise UserError(f"run {run_id} is still running (pid {run.data.tags.get(Tag.PID)}); "
                            "stop it before resuming")
        reap_dead_runs(client, [run.info.experiment_id])
    last = checkpoint_root() / run_id / "last.ckpt"
    if not last.is_file():
        fetch_last_checkpoint(client, run_id, last)
    return last


def fetch_last_checkpoint(client: Any, run_id: str, dest: Path) -> None:
    """The run's ``checkpoints/last.ckpt`` artifact (what a fit on a tracking server uploads every
    epoch) into ``dest``, where the resumed fit goes on writing."""
    if "checkpoints/last.ckpt" not in {a.path for a in client.list_artifacts(run_id, "checkpoints")}:
        raise UserError(f"run {run_id} has no last checkpoint, neither at {dest} nor among its artifacts; "
                        "it cannot be resumed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lit-nn-resume-", dir=dest.parent) as tmp:
        Path(client.download_artifacts(run_id, "checkpoints/last.ckpt", tmp)).replace(dest)
    print(f"fetched the last checkpoint of run {run_id} from the tracking server")
