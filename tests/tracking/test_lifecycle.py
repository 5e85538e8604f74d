"""One run lifecycle: every run ends FINISHED, FAILED or KILLED, and never other than FINISHED
without saying why."""

from __future__ import annotations

import pytest

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.tracking.lifecycle import INTERRUPTED, RunStatus, end_run, failure_reason, reopen_run, tracked_run
from lit_nn.tracking.store import ensure_experiment


def test_every_end_other_than_finished_carries_a_reason(client):
    exp = ensure_experiment("life")
    for status in (RunStatus.FAILED, RunStatus.KILLED):
        run_id = client.create_run(exp).info.run_id
        end_run(client, run_id, status)  # no reason given: a generic one is written all the same
        run = client.get_run(run_id)
        assert run.info.status == status.value
        assert f"ended {status.value} without a recorded reason" == run.data.tags[Tag.FAILURE_REASON]
    run_id = client.create_run(exp).info.run_id
    end_run(client, run_id, RunStatus.FINISHED)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and Tag.FAILURE_REASON not in finished.data.tags
    with pytest.raises(ValueError, match="end status"):
        end_run(client, run_id, RunStatus.RUNNING)


def test_tracked_run_ends_by_how_the_block_ends(client):
    exp = ensure_experiment("life")
    with tracked_run(client, exp, "ok", {"k": "v"}) as ok:
        pass
    with pytest.raises(UserError), tracked_run(client, exp, "bad") as bad:
        raise UserError("lr must be > 0, got -1")
    with pytest.raises(KeyboardInterrupt), tracked_run(client, exp, "stopped") as stopped:
        raise KeyboardInterrupt
    with tracked_run(client, exp, "partial") as partial:
        partial.end_as(RunStatus.FAILED, "2 of 7 points failed")
    got = {name: client.get_run(r.run_id) for name, r in
           {"ok": ok, "bad": bad, "stopped": stopped, "partial": partial}.items()}
    assert got["ok"].info.status == "FINISHED" and got["ok"].data.tags["k"] == "v"
    assert Tag.GIT_COMMIT in got["ok"].data.tags and Tag.PID in got["ok"].data.tags
    assert (got["bad"].info.status, got["bad"].data.tags[Tag.FAILURE_REASON]) == ("FAILED", "lr must be > 0, got -1")
    assert (got["stopped"].info.status, got["stopped"].data.tags[Tag.FAILURE_REASON]) == ("KILLED", INTERRUPTED)
    assert got["partial"].info.status == "FAILED"
    assert got["partial"].data.tags[Tag.FAILURE_REASON] == "2 of 7 points failed"


def test_reopening_a_run_clears_its_old_reason(client):
    exp = ensure_experiment("life")
    with pytest.raises(RuntimeError), tracked_run(client, exp, "again") as run:
        raise RuntimeError("boom")
    reopen_run(client, run.run_id)
    reopened = client.get_run(run.run_id)
    assert reopened.info.status == "RUNNING" and Tag.FAILURE_REASON not in reopened.data.tags
    with tracked_run(client, exp, "again", run_id=run.run_id):
        pass
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_failure_reason_finds_the_user_error_inside_wrappers():
    try:
        try:
            raise UserError("unknown optimizer 'adamm'")
        except UserError as inner:
            raise ValueError("Problem with given class_path 'lit_nn.models.MLP'") from inner
    except ValueError as outer:
        assert failure_reason(outer) == "unknown optimizer 'adamm'"
    assert failure_reason(RuntimeError("x")) == "RuntimeError: x"
    assert failure_reason(KeyboardInterrupt()) == INTERRUPTED


def test_the_lightning_logger_ends_through_end_run(client):
    """MLflowTracker.finalize: FAILED with the reason, KILLED for Ctrl-C, and a later "success"
    (Lightning finalizes again after test) never overwrites a recorded failure."""
    from lit_nn.tracking.logger import MLflowTracker

    for error, status in ((RuntimeError("disk full"), "FAILED"), (KeyboardInterrupt(), "KILLED"), (None, "FAILED")):
        tracker = MLflowTracker("life-logger", run_name="t")
        run_id = tracker.run_id
        tracker.failure = error
        tracker.finalize("failed")
        tracker.finalize("success")
        run = client.get_run(run_id)
        assert run.info.status == status
        assert run.data.tags[Tag.FAILURE_REASON]
    tracker = MLflowTracker("life-logger", run_name="ok")
    run_id = tracker.run_id  # the run exists from the first use of the logger
    tracker.finalize("success")
    assert client.get_run(run_id).info.status == "FINISHED"
