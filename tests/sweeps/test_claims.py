"""Claims of sweep points in the tracking store (``lit_nn.sweeps.claims``).

The rules on a local SQLite store (fast); the race — 4 claimer processes × 50 points × 3
rounds — and two real ``lit-nn sweep`` commands sharing a sweep on the PostgreSQL team server
(slow).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lit_nn.sweeps import claims
from lit_nn.sweeps.sweep import Sweep
from lit_nn.sweeps.worker import SKIPPED, run_claimed
from team import needs_postgres, team_server

from helpers import REPO


@pytest.fixture
def client(tracking_store: str):
    from lit_nn.tracking.store import tracking_client

    return tracking_client(tracking_store)


def _finished_job(client, experiment_id: str, point: str) -> tuple[dict, list, Callable[[], dict]]:
    """A point job whose "training" records itself and creates the point's FINISHED run."""
    ran: list[str] = []

    def train() -> dict:
        ran.append(point)
        run = client.create_run(experiment_id, tags={"sweep": "s", "sweep_role": "point", "config_hash": point})
        client.set_terminated(run.info.run_id, "FINISHED")
        return {"status": "FINISHED"}

    job = {"experiment_id": experiment_id, "claim": {"prefix": claims.claim_prefix(Sweep("s", experiment_id), point),
                                                     "lease_s": 300.0, "sweep": "s", "config_hash": point}}
    return job, ran, train


def test_a_held_claim_keeps_others_out_until_released(client):
    prefix = claims.claim_prefix(Sweep("sweep", "1"), "abc")
    first, note = claims.try_claim(client, prefix)
    assert first is not None and first.generation == 0 and note == ""
    second, why = claims.try_claim(client, prefix)
    assert second is None and f"pid {os.getpid()}" in why and "claimed by another sweep" in why
    renewed = claims.renew(client, first)
    assert renewed.generation == 1 and claims.try_claim(client, prefix)[0] is None
    claims.release(client, renewed)
    third, note = claims.try_claim(client, prefix)
    assert third is not None and third.generation == 3 and note == ""  # a released claim is free, not taken over
    # claims are hidden from the UI's experiment list, yet their names stay taken
    assert not [e for e in client.search_experiments() if e.name.startswith(claims.PREFIX)]
    assert claims.latest_claim(client, prefix).generation == 3


def test_points_of_other_sweeps_and_experiments_are_separate(client):
    assert claims.try_claim(client, claims.claim_prefix(Sweep("a", "1"), "p"))[0] is not None
    assert claims.try_claim(client, claims.claim_prefix(Sweep("b", "1"), "p"))[0] is not None
    assert claims.try_claim(client, claims.claim_prefix(Sweep("a", "2"), "p"))[0] is not None
    assert claims.try_claim(client, claims.claim_prefix(Sweep("a", "1"), "q"))[0] is not None


def test_a_claim_not_renewed_within_its_lease_is_taken_over_and_its_owner_loses_it(client):
    prefix = claims.claim_prefix(Sweep("sweep", "1"), "abc")
    owner, _ = claims.try_claim(client, prefix)
    assert claims.try_claim(client, prefix, lease_s=60, now=lambda: owner.created + 59)[0] is None
    taker, note = claims.try_claim(client, prefix, lease_s=60, now=lambda: owner.created + 61)
    assert taker is not None and taker.generation == 1
    assert note.startswith(f"took over the claim of pid {os.getpid()}") and "not renewed for 61 s" in note
    with pytest.raises(claims.LostClaim):
        claims.renew(client, owner)  # the stalled owner finds out at its next renewal


def test_a_claim_whose_process_is_gone_on_this_host_is_taken_over_at_once(client):
    prefix = claims.claim_prefix(Sweep("sweep", "1"), "abc")
    code = (f"from lit_nn.sweeps import claims; from lit_nn.tracking.store import tracking_client; "
            f"assert claims.try_claim(tracking_client(), {prefix!r})[0] is not None")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "LIT_NN_SWEEP_PID": ""})
    taker, note = claims.try_claim(client, prefix)
    assert taker is not None and "is gone" in note


def test_a_renewal_that_finds_its_claim_taken_stops_the_point(client):
    prefix = claims.claim_prefix(Sweep("sweep", "1"), "abc")
    claim, _ = claims.try_claim(client, prefix)
    claims._create(client, prefix, 1, claims.HELD, {"host": "elsewhere", "pid": 1})  # someone took it over
    lost = threading.Event()
    reasons = []
    with claims.kept(client, claim, lease_s=0.05, on_lost=lambda why: (reasons.append(why), lost.set())):
        assert lost.wait(timeout=60)
    assert "taken over after generation 0" in reasons[0]
    assert claims.latest_claim(client, prefix).owner["host"] == "elsewhere"  # the loser released nothing


def test_a_worker_skips_points_claimed_or_finished_elsewhere(client):
    experiment_id = client.create_experiment("e")
    job, ran, train = _finished_job(client, experiment_id, "p1")
    holder, _ = claims.try_claim(client, job["claim"]["prefix"])
    result = run_claimed(job, train)
    assert result["status"] == SKIPPED and "claimed by another sweep" in result["error"] and ran == []
    claims.release(client, holder)
    assert run_claimed(job, train) == {"status": "FINISHED"} and ran == ["p1"]
    result = run_claimed(job, train)  # released again; its FINISHED run now keeps it done
    assert result["status"] == SKIPPED and result["error"].startswith("FINISHED by another sweep") and ran == ["p1"]
    job["claim"]["force"] = True
    assert run_claimed(job, train)["status"] == "FINISHED" and ran == ["p1", "p1"]


def test_taking_over_a_dead_owners_point_ends_its_run(client):
    experiment_id = client.create_experiment("e")
    job, ran, train = _finished_job(client, experiment_id, "p1")
    stale = client.create_run(experiment_id, tags={"sweep": "s", "sweep_role": "point", "config_hash": "p1"})
    claims._create(client, job["claim"]["prefix"], 0, claims.HELD, {"host": "elsewhere", "pid": 7})
    job["claim"]["lease_s"] = 1e-3  # the owner elsewhere stopped renewing long ago
    assert run_claimed(job, train)["status"] == "FINISHED"
    old = client.get_run(stale.info.run_id)
    assert old.info.status == "KILLED" and "took over the claim of pid 7 on elsewhere" in old.data.tags["failure_reason"]


# -- the race and two real sweeps on the team server ------------------------------------------------
@pytest.mark.slow
@needs_postgres
def test_four_claimers_race_over_fifty_points_three_rounds_and_run_each_once(tmp_path: Path):
    from mlflow import MlflowClient

    with team_server(tmp_path / "srv") as url:
        client = MlflowClient(url)
        experiment_id = client.create_experiment("race")
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONPATH": str(REPO / "src")}
        for round_ in range(3):
            sweep = f"round{round_}"
            procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "scripts" / "claim_race.py"),
                                       experiment_id, sweep, "50", str(10 * round_ + i)], cwd=tmp_path, env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for i in range(4)]
            try:
                for proc in procs:
                    assert proc.stdout.readline().strip() == "ready"
                for proc in procs:  # all four start together
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                outputs = [proc.communicate(timeout=600)[0] for proc in procs]
            finally:
                for proc in procs:
                    proc.kill()
            assert all(p.returncode == 0 and out.rstrip().endswith("done") for p, out in zip(procs, outputs, strict=True)), outputs
            ran = Counter(line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("ran "))
            assert sorted(ran) == [f"p{i:03d}" for i in range(50)] and set(ran.values()) == {1}, ran
            assert sum(1 for out in outputs if "ran " in out) >= 2, "the claimers did not overlap"
            runs = client.search_runs([experiment_id], f"tags.sweep = '{sweep}'", max_results=500)
            assert Counter(r.data.tags["config_hash"] for r in runs) == Counter({p: 1 for p in ran})


@pytest.mark.slow
@needs_postgres
def test_two_sweeps_of_one_file_from_two_folders_run_every_point_once(tmp_path: Path):
    from mlflow import MlflowClient

    spec = {"name": "shared", "experiment": "team-sweep",
            "config": {"seed_everything": 0,
                       "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 1, "hidden": 16}},
                       "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
                       "trainer": {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 1,
                                   "limit_test_batches": 1}},
            "grid": {"model.optimizer": ["sgd", "adam", "rmsprop"]}, "seeds": [0, 1]}
    sweep_file = tmp_path / "shared.yaml"
    sweep_file.write_text(yaml.safe_dump(spec))
    with team_server(tmp_path / "srv") as url:
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONPATH": str(REPO / "src")}
        folders = [tmp_path / "alice", tmp_path / "bob"]
        procs = []
        for folder in folders:
            folder.mkdir()
            procs.append(subprocess.Popen([sys.executable, "-m", "lit_nn", "sweep", str(sweep_file), "--log_model",
                                           "false", "--log_checkpoint", "false"], cwd=folder, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        try:
            outputs = [proc.communicate(timeout=900)[0] for proc in procs]
        finally:
            for proc in procs:
                proc.kill()
        assert [p.returncode for p in procs] == [0, 0], "\n\n".join(outputs)  # whole, not cut by pytest
        client = MlflowClient(url)
        experiment_id = client.get_experiment_by_name("team-sweep").experiment_id
        points = client.search_runs([experiment_id], "tags.sweep = 'shared' and tags.sweep_role = 'point'")
        assert len(points) == 6 and {r.info.status for r in points} == {"FINISHED"}, [
            (r.info.run_name, r.info.status) for r in points]
        assert len({r.data.tags["config_hash"] for r in points}) == 6
        parents = client.search_runs([experiment_id], "tags.sweep = 'shared' and tags.sweep_role = 'parent'")
        assert len(parents) == 1 and {r.data.tags["mlflow.parentRunId"] for r in points} == {parents[0].info.run_id}
        summaries = [re.search(r"sweep 'shared': ran (\d+) point\(s\) .* skipped (\d+) finished", out)
                     for out in outputs]
        assert all(summaries), outputs
        ran = [int(m.group(1)) for m in summaries]
        assert sum(ran) == 6, outputs
        for out, m in zip(outputs, summaries, strict=True):  # the rest: FINISHED before it looked, or SKIPPED as the other's
            assert out.count(" SKIPPED ") == 6 - int(m.group(1)) - int(m.group(2)), out
