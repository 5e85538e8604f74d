"""One GPU per sweep worker: which ``CUDA_VISIBLE_DEVICES`` each worker gets, checked on a CPU.

The GPU count is handed in (``pin_gpus``'s ``gpus``, ``SweepOptions.gpus``); the worker pool is
run with a stand-in worker that reports the environment it was started with. The real sweep
(workers training points, each run tagged with its pinning) is checked in test_driver.py.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from lit_nn.core.errors import UserError
from lit_nn.sweeps.driver import SweepOptions, gpus_per_point, visible_gpus, worker_pins
from lit_nn.sweeps.runner import Job, pin_gpus, run_jobs, worker_env

from helpers import run_main


@pytest.mark.parametrize(
    ("workers", "gpus", "per_point", "expected"),
    [
        (2, "01", 1, ["0", "1"]),
        (5, "01", 1, ["0", "1", "0", "1", "0"]),  # round-robin: worker i gets GPU i % G
        (2, "0123", 1, ["0", "1"]),  # fewer workers than GPUs: the rest stay free
        (3, "0123", 2, ["0,1", "2,3", "0,1"]),  # K consecutive GPUs per worker
        (2, "012", 2, ["0,1", "0,1"]),  # the GPU left over by 3 // 2 goes unused
        (2, "0123", 4, ["0,1,2,3", "0,1,2,3"]),
        (3, "", 1, [None, None, None]),  # no GPUs: the environment is left alone
    ],
)
def test_pin_gpus_round_robin_in_blocks(workers, gpus, per_point, expected):
    assert pin_gpus(workers, list(gpus), per_point) == expected


def test_pin_gpus_keeps_the_entries_it_is_given():
    """A sweep started under ``CUDA_VISIBLE_DEVICES=2,3`` (or GPU UUIDs) hands out those, not 0 and 1."""
    assert pin_gpus(3, ["2", "3"]) == ["2", "3", "2"]
    assert pin_gpus(2, ["GPU-aa", "GPU-bb"], 2) == ["GPU-aa,GPU-bb", "GPU-aa,GPU-bb"]


def test_pin_gpus_refuses_impossible_counts():
    with pytest.raises(UserError, match=r"--gpus_per_point 3 asks for more GPUs per point than the 2 "):
        pin_gpus(2, ["0", "1"], 3)
    with pytest.raises(UserError, match=r"--gpus_per_point must be > 0, got 0"):
        pin_gpus(2, ["0", "1"], 0)


def test_visible_gpus_follow_torch_and_an_existing_pinning(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ("0", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert visible_gpus() == ("5", "7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert visible_gpus() == ()


def spec(trainer: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(config={"trainer": trainer if trainer is not None else {"devices": 1}})


def test_gpus_per_point_defaults_to_the_points_devices():
    assert gpus_per_point({"trainer": {"devices": 1}}, (), None) == 1
    assert gpus_per_point({"trainer": {"devices": 2}}, (), None) == 2
    assert gpus_per_point({"trainer": {"devices": 1}}, ("--trainer.devices", "2"), None) == 2
    assert gpus_per_point({"trainer": {}}, ("--trainer.devices=[0, 1, 2]",), None) == 3
    assert gpus_per_point({"trainer": {"devices": "auto"}}, (), None) == 1
    assert gpus_per_point({"trainer": {"devices": 4}}, (), 1) == 1  # the option wins


def test_worker_pins_from_the_sweep_settings():
    four = ("0", "1", "2", "3")
    assert worker_pins(spec(), [], SweepOptions(workers=3, gpus=four)) == ["0", "1", "2"]
    assert worker_pins(spec(), ["--trainer.devices", "2"], SweepOptions(workers=3, gpus=four)) == ["0,1", "2,3", "0,1"]
    assert worker_pins(spec(), [], SweepOptions(workers=2, gpus=four, gpus_per_point=4)) == ["0,1,2,3"] * 2
    # a CPU sweep, or no GPUs: nothing pinned, whatever trainer.devices says (CPU DDP)
    assert worker_pins(spec(), ["--trainer.accelerator", "cpu"], SweepOptions(workers=2, gpus=four)) == [None, None]
    assert worker_pins(spec({"devices": 2}), [], SweepOptions(workers=2, gpus=())) == [None, None]


@pytest.mark.parametrize(
    ("trainer", "extra", "options", "message"),
    [
        ({"devices": 1}, [], SweepOptions(gpus=("0", "1"), gpus_per_point=3),
         "each point needs 3 GPUs (--gpus_per_point 3) but this machine has 2; use at most 2"),
        ({"devices": 4}, [], SweepOptions(gpus=("0", "1")),
         "each point needs 4 GPUs (--trainer.devices 4) but this machine has 2; use at most 2"),
        ({"devices": 1}, [], SweepOptions(gpus=(), gpus_per_point=1),
         "--gpus_per_point 1 needs GPUs, but this machine has none (torch.cuda.device_count() is 0); drop the option"),
        ({"devices": 1}, ["--trainer.accelerator", "cpu"], SweepOptions(gpus_per_point=1),
         "--gpus_per_point 1 needs GPUs, but the points train on the CPU (--trainer.accelerator cpu); drop the option"),
        ({"devices": 1}, [], SweepOptions(gpus=("0",), gpus_per_point=0), "--gpus_per_point must be > 0, got 0"),
    ],
)
def test_impossible_gpu_counts_are_one_sentence(trainer, extra, options, message):
    with pytest.raises(UserError) as err:
        worker_pins(spec(trainer), extra, options)
    assert str(err.value) == message


def test_worker_env_sets_the_pin_or_leaves_the_variable_alone(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert worker_env(1, "1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert worker_env(1, None)["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(1, None)


# A stand-in for lit_nn.cli.sweep_worker: notes the GPUs it was started with and answers each job
# with them; on the job ["die"] it dies (as an out-of-memory kill would), on ["wait", N] it answers
# only once N workers have started.
FAKE_WORKER = """
import json, os, sys, time
started = sys.argv[1]
gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
with open(started, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "gpus": gpus}) + "\\n")
for line in sys.stdin:
    job = json.loads(line)
    if job["argv"] == ["die"]:
        os._exit(3)
    if job["argv"][0] == "wait":
        deadline = time.time() + 60
        while len(open(started).read().splitlines()) < int(job["argv"][1]) and time.time() < deadline:
            time.sleep(0.05)
    print(json.dumps({"attempt": job["attempt"], "status": "FINISHED", "gpus": gpus, "pid": os.getpid()}), flush=True)
"""


def run_fake_pool(tmp_path: Path, argvs: list[list[str]], workers: int, pins) -> tuple[list[dict], dict]:
    """Run jobs with these argvs on the stand-in workers; return what each worker started with and each job's result."""
    started = tmp_path / "started.jsonl"
    jobs = [Job(SimpleNamespace(run_name=str(i)), argv, tmp_path / f"{i}.log", False) for i, argv in enumerate(argvs)]
    results: dict[int, dict] = {}
    completed = run_jobs(jobs, workers, lambda job, result: results.__setitem__(jobs.index(job), result),
                         [sys.executable, "-c", FAKE_WORKER, str(started)], threads=1, pins=pins)
    assert completed
    return [json.loads(line) for line in started.read_text().splitlines()], results


def test_each_worker_process_is_started_with_its_own_gpus(tmp_path: Path):
    workers, results = run_fake_pool(tmp_path, [["a"], ["b"], ["c"], ["d"], ["e"]], 2, ["0", "1"])
    assert sorted(w["gpus"] for w in workers) == ["0", "1"]
    gpus_of = {w["pid"]: w["gpus"] for w in workers}
    assert all(r["status"] == "FINISHED" and r["gpus"] == gpus_of[r["pid"]] for r in results.values())


def test_a_worker_started_in_place_of_a_dead_one_gets_its_gpus(tmp_path: Path):
    # worker 0 (GPU 0) dies on its first job; worker 1 (GPU 1) stays busy until the replacement has started
    workers, results = run_fake_pool(tmp_path, [["die"], ["wait", "3"], ["b"]], 2, ["0", "1"])
    assert Counter(w["gpus"] for w in workers) == {"0": 2, "1": 1}
    assert results[0]["status"] == "FAILED" and "the worker process died" in results[0]["error"]
    assert (results[1]["gpus"], results[2]["gpus"]) == ("1", "0")


def test_without_gpus_the_workers_inherit_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    workers, _ = run_fake_pool(tmp_path, [["a"], ["b"]], 2, None)
    assert [w["gpus"] for w in workers] == ["7", "7"]


def test_sweep_refuses_a_zero_gpu_count_before_any_run(capsys, client):
    result = run_main(capsys, "sweep", "experiments/compare_depth.yaml", "--gpus_per_point", "0",
                      "--out", "/nonexistent/never-written")
    assert result.returncode != 0
    assert "error: --gpus_per_point must be > 0, got 0" in result.stderr
    assert client.get_experiment_by_name("mnist") is None


def test_no_more_worker_processes_start_than_there_are_points(tmp_path: Path):
    """--workers 10000 on 3 points once started 10000 processes and trained nothing."""
    workers, results = run_fake_pool(tmp_path, [["a"], ["b"], ["c"]], 50, None)
    assert len(workers) == 3 and len(results) == 3
