"""Multi-node DDP on CPU (gloo): two "nodes" started by hand with the standard launch variables.

Each node is its own ``lit-nn fit --trainer.num_nodes 2 --trainer.devices 1`` process, in its own
working directory, with ``NODE_RANK`` 0 or 1 and the same ``MASTER_ADDR``/``MASTER_PORT``, as on two
real machines (Lightning's default LightningEnvironment reads them; with ``devices 1`` it starts
no further process). Both record into the test's tracking store. The run must be one MLflow run,
written by rank 0 alone, with its checkpoints in one place, and it must train exactly like one
process fed the same global batches: the loaders interleave a rank's shard out of the epoch's
seeded permutation (rank r takes positions r, r + 2, ...), so the two ranks' k-th batches of B
images together are the single process's k-th batch of 2B.

A node whose peer never comes waits in the rendezvous, up to the DDP strategy's timeout (30 minutes
by default): the test never waits on that, it kills both nodes when one fails or time runs out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_nn.core.names import Dynamics

from conftest import runs_of
from helpers import REPO, free_port

pytestmark = pytest.mark.slow

PER_PROCESS_BATCH = 32
FIT = ["fit", "-c", str(REPO / "experiments/mnist_mlp.yaml"), "--trainer.max_epochs", "2",
       "--trainer.limit_train_batches", "5", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
       "--trainer.enable_progress_bar", "false"]
TIMEOUT_S = 300  # both nodes and the reference run, started together; ~30-45 s on 2 idle cores
# what a scheduler or an outer launcher may have set for the test process itself: the nodes must see
# only the variables the test gives them (Lightning would otherwise pick the SLURM or torchelastic
# environment, or a rank, from the test's own job)
LAUNCH_VARS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
               "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "PL_GLOBAL_SEED")
# Losses differ by float32 rounding only: DDP averages two half-batch mean gradients where one
# process takes the mean over the whole batch, and the logged losses are averaged the same way
# (measured: at most 2.4e-7 absolute on values near 2). Accuracies and best_epoch are counts: exact.
LOSS_RTOL = 1e-5
# the per-layer statistics of activations are rank 0's batch under DDP (the gradient and weight ones are the
# same on every rank): they cannot equal one process's over the global batch
RANK_ZERO_BATCH = (Dynamics.ACT_MEAN, Dynamics.ACT_STD, Dynamics.DEAD_FRAC, Dynamics.SATURATED_FRAC)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _start(cwd: Path, log: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    cwd.mkdir()
    with log.open("w") as out:  # a file, not a pipe: an unread pipe that fills up would block the child
        return subprocess.Popen([sys.executable, "-m", "lit_nn", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait_all(procs: list[subprocess.Popen], timeout: float) -> None:
    """Wait until every process has exited, one has failed (its peer would wait for it forever),
    or ``timeout`` seconds have passed; the caller kills whatever still runs."""
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while pending and time.monotonic() < deadline:
        for proc in list(pending):
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            pending.remove(proc)
            if proc.returncode != 0:
                return


def _history(client, run) -> dict[str, list[tuple[int, float]]]:
    return {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics}


def test_two_nodes_make_one_run_that_trains_like_one_process_with_the_global_batch(
        tmp_path, client, migrated_store):
    store = tmp_path / "mlruns"  # the test's tracking store (tests/conftest.py), shared by both nodes
    node_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    node_args = [*FIT, "--experiment", "multinode", "--trainer.num_nodes", "2", "--trainer.strategy", "ddp",
                 "--data.init_args.batch_size", str(PER_PROCESS_BATCH)]
    # the reference: one process, the global batch, its own store (so the shared one holds only the nodes' run)
    single_store = tmp_path / "single_store"
    single_store.mkdir()
    shutil.copyfile(migrated_store, single_store / "mlflow.db")
    single_uri = f"sqlite:///{single_store}/mlflow.db"
    single_args = [*FIT, "--experiment", "single", "--trainer.num_nodes", "1",
                   "--data.init_args.batch_size", str(2 * PER_PROCESS_BATCH)]

    logs = {name: tmp_path / f"{name}.log" for name in ("node0", "node1", "single")}
    procs: list[subprocess.Popen] = []
    try:
        for rank in (0, 1):
            procs.append(_start(tmp_path / f"node{rank}", logs[f"node{rank}"], node_args,
                                _clean_env(**node_env, NODE_RANK=str(rank))))
        procs.append(_start(tmp_path / "single", logs["single"], single_args,
                            _clean_env(MLFLOW_TRACKING_URI=single_uri)))
        _wait_all(procs, TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    out = {name: log.read_text() for name, log in logs.items()}
    for proc, name in zip(procs, logs, strict=True):
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{out[name][-3000:]}"
    # both joined one process group of two, as ranks 0 and 1
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in out["node0"] and "Starting with 2 processes" in out["node0"]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out["node1"]

    # exactly one run in the shared store, whichever experiment: rank 1 created none
    all_runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    assert len(all_runs) == 1, [(r.info.experiment_id, r.info.run_name) for r in all_runs]
    (run,) = runs_of(client, "multinode")
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.num_nodes"] == "2" and run.data.params["trainer.devices"] == "1"
    assert "mlflow: run" in out["node0"] and "mlflow: run" not in out["node1"]

    # checkpoints written once, by rank 0, in the run's folder beside the store; nothing in either node's folder
    run_id = run.info.run_id
    assert [p.name for p in (store / "checkpoints").iterdir()] == [run_id]
    assert sorted(p.name for p in (store / "checkpoints" / run_id).iterdir()) == ["best.ckpt", "last.ckpt"]
    assert Path(run.data.tags["last_checkpoint"]) == store / "checkpoints" / run_id / "last.ckpt"
    for rank in (0, 1):
        assert list((tmp_path / f"node{rank}").rglob("*")) == [], f"node{rank} wrote into its working folder"

    # the same training as one process with the global batch: every metric at every epoch
    from mlflow.tracking import MlflowClient

    (single,) = runs_of(MlflowClient(single_uri), "single")
    assert single.info.status == "FINISHED"
    nodes, one = _history(client, run), _history(MlflowClient(single_uri), single)
    assert sorted(nodes) == sorted(one)
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"} <= set(nodes)
    for key in nodes:
        assert [s for s, _ in nodes[key]] == [s for s, _ in one[key]], key
        got, want = [v for _, v in nodes[key]], [v for _, v in one[key]]
        dynamics = Dynamics.split(key)
        if dynamics and dynamics[0] in RANK_ZERO_BATCH:
            continue  # statistics of rank 0's half of the batch (lit_nn.tracking.dynamics), not the global batch's
        if key.endswith("_loss") or dynamics:  # dynamics: norms of the all-reduced gradient, summed in another order
            assert got == pytest.approx(want, rel=LOSS_RTOL), key
        else:
            assert got == want, key
