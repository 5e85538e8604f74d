"""``lit-nn runs``: listing, and reaping RUNNING runs whose process is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from lit_nn.tracking.liveness import process_alive, process_start_time, reap_dead_runs

from helpers import run_main


def dead_pid() -> int:
    """The pid of a process that has exited (and been waited for)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def running_run(client, exp_id: str, name: str, pid: int, host: str | None = None,
                start_ms: int | None = None) -> str:
    tags = {"host": host or socket.gethostname(), "pid": str(pid)}
    return client.create_run(exp_id, run_name=name, tags=tags, start_time=start_ms).info.run_id


def test_process_alive_sees_dead_zombie_and_reused_pids():
    me = os.getpid()
    assert process_alive(me)
    assert not process_alive(dead_pid())
    # a process that exited but was not waited for yet is a zombie: it still has its pid
    child = os.fork()
    if child == 0:
        os._exit(0)
    time.sleep(0.3)
    try:
        assert not process_alive(child), "a zombie is dead"
    finally:
        os.waitpid(child, 0)
    started = process_start_time(me)
    assert started is not None and started <= time.time()
    # a run that began before this process started cannot be this process's run: the pid was reused
    assert not process_alive(me, started_before=started - 3600)
    assert process_alive(me, started_before=started + 5)


def test_reap_marks_only_this_hosts_dead_runs_killed(client):
    exp_id = client.create_experiment("reap")
    dead = running_run(client, exp_id, "dead", dead_pid())
    alive = running_run(client, exp_id, "alive", os.getpid())
    reused = running_run(client, exp_id, "reused", os.getpid(),
                         start_ms=int((process_start_time(os.getpid()) - 3600) * 1000))
    elsewhere = running_run(client, exp_id, "elsewhere", dead_pid(), host="another-host")
    untagged = client.create_run(exp_id, run_name="untagged").info.run_id
    done = running_run(client, exp_id, "done", dead_pid())
    client.set_terminated(done, "FINISHED")

    reaped = reap_dead_runs(client, [exp_id])
    assert sorted(reaped) == sorted([dead, reused])
    status = {rid: client.get_run(rid).info.status for rid in (dead, alive, reused, elsewhere, untagged, done)}
    assert status == {dead: "KILLED", alive: "RUNNING", reused: "KILLED", elsewhere: "RUNNING",
                      untagged: "RUNNING", done: "FINISHED"}
    reason = client.get_run(dead).data.tags["failure_reason"]
    assert "is gone; marked KILLED" in reason and socket.gethostname() in reason
    assert reap_dead_runs(client, [exp_id]) == [], "reaping twice changes nothing"


def test_runs_command_lists_and_cleans_up(client, capsys):
    exp_id = client.create_experiment("listing")
    ok = client.create_run(exp_id, run_name="good-run").info.run_id
    client.log_metric(ok, "val_acc", 0.91234)
    client.set_terminated(ok, "FINISHED")
    dead = running_run(client, exp_id, "crashed-run", dead_pid())

    result = run_main(capsys, "runs", "--experiment", "listing")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "experiment", "name", "status"]
    assert any("good-run" in line and "FINISHED" in line and "0.9123" in line for line in lines)
    assert any("crashed-run" in line and "RUNNING" in line for line in lines)

    result = run_main(capsys, "runs", "--experiment", "listing", "--cleanup", "--status", "killed")
    assert result.returncode == 0, result.stderr
    assert f"marked 1 dead RUNNING run(s) as KILLED: {dead[:8]}" in result.stdout
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 2 and "crashed-run" in rows[1] and "KILLED" in rows[1] and "is gone" in rows[1]
    assert client.get_run(dead).info.status == "KILLED"


def test_runs_command_rejects_bad_input(client, capsys):
    client.create_experiment("mnist")
    result = run_main(capsys, "runs", "--experiment", "minst")
    assert result.returncode == 2 and "unknown experiment 'minst' (did you mean 'mnist'?)" in result.stderr
    result = run_main(capsys, "runs", "--status", "DONE")
    assert result.returncode == 2 and "unknown status 'DONE'" in result.stderr and "FINISHED" in result.stderr
    result = run_main(capsys, "runs", "--limit", "0")
    assert result.returncode == 2 and "--limit must be > 0, got 0" in result.stderr
