"""A tracking server that stops answering (lit_nn.tracking.outage): the wait as one setting mapped
onto MLflow's retries, the one-line notice, the one sentence, and no second wait to end the run.
The real thing, a team server stopped mid-fit, is in test_server_load.py (slow)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from lit_nn.core.errors import UserError
from lit_nn.tracking import outage
from lit_nn.tracking.outage import RETRY_ENV, TrackingServerDown

from helpers import free_port, run_main

MLFLOW_VARS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
               "MLFLOW_HTTP_REQUEST_TIMEOUT", "_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT", RETRY_ENV)


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    """Each test starts from MLflow's defaults and leaves neither variables nor the notice behind."""
    for name in MLFLOW_VARS:
        monkeypatch.delenv(name, raising=False)
    yield
    logger = logging.getLogger("urllib3.connectionpool")
    for notice in [f for f in logger.filters if isinstance(f, outage._RetryNotice)]:
        logger.removeFilter(notice)


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused


def refused(url: str) -> Exception:
    """What MLflow raises when it gives up on a server that refuses connections (one try)."""
    from mlflow import MlflowClient

    with outage.no_retries():
        try:
            MlflowClient(url).get_run("0" * 32)
        except Exception as err:  # noqa: BLE001 - the very error a fit meets
            return err
    raise AssertionError("a request to a closed port succeeded")


def test_the_wait_adds_up_urllib3s_backoffs():
    assert outage.backoff_total(7, 2) == 244  # MLflow's defaults: about 4 minutes
    assert [outage.backoff_total(r, 1) for r in range(9)] == [0, 0, 2, 6, 14, 30, 62, 126, 246]
    assert outage.backoff_total(10, 1) == 486  # each wait at most 120 s
    assert [outage.retries_for(s) for s in (0, 1, 6, 7, 120, 300, 3600)] == [0, 2, 3, 4, 7, 9, 36]


def test_the_setting_maps_onto_mlflows_retries():
    url = closed_url()
    assert outage.configure_retries(url) == 244  # unset: MLflow's own settings stand
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    os.environ[RETRY_ENV] = "6"
    assert outage.configure_retries(url) == 6
    assert (os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"], os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]) == ("3", "1")
    os.environ[RETRY_ENV] = "3600"  # more retries than MLflow allows by default: its limit is raised too
    assert outage.configure_retries(url) == outage.backoff_total(36, 1) == 3606
    assert os.environ["_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT"] == "36"


def test_mlflows_own_variables_stand_when_the_setting_is_unset(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "5")
    assert outage.configure_retries(closed_url()) == 10 + 20
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "1e9"])
def test_a_bad_setting_is_one_sentence(value: str):
    os.environ[RETRY_ENV] = value
    with pytest.raises(UserError, match=f"{RETRY_ENV}='{value}' is not a number of seconds from 0 to 86400"):
        outage.configure_retries(closed_url())


def test_a_refused_request_is_recognised_for_its_server_only():
    url = closed_url()
    err = refused(url)
    assert outage.unanswered(err, url) == "connection refused"
    assert outage.unanswered(err, closed_url()) is None  # another server's failure is not this one's
    assert outage.unanswered(err, "sqlite:///mlruns/mlflow.db") is None
    assert outage.unanswered(ValueError("bad value"), url) is None
    assert outage.unanswered(None, url) is None
    wrapped = RuntimeError("Lightning's wrapping")
    wrapped.__cause__ = err
    assert outage.unanswered(wrapped, url) == "connection refused"


def test_the_sentence_says_where_the_checkpoint_is_and_how_to_resume(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    url = closed_url()
    os.environ[RETRY_ENV] = "6"
    outage.configure_retries(url)
    err = refused(url)
    last = tmp_path / "checkpoints" / "abc123" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    down = outage.server_down(err, url, "abc123", last)
    assert isinstance(down, TrackingServerDown) and down.exit_code == 1
    assert str(down) == (f"the tracking server at {url} did not answer for 6 s (connection refused; {RETRY_ENV} sets "
                         f"the wait); the run's last checkpoint is {last}; once the server answers, resume the run "
                         "with: lit-nn fit --resume abc123")
    monkeypatch.chdir(tmp_path / "checkpoints")  # elsewhere: the resume goes where the checkpoint is
    assert str(outage.server_down(err, url, "abc123", last)).endswith(f"with: cd {tmp_path} && lit-nn fit --resume abc123")
    assert str(outage.server_down(err, url, "abc123", tmp_path / "none.ckpt")).endswith(
        "run abc123 had written no checkpoint yet; once the server answers, run the same command again")
    assert str(outage.server_down(err, url)).endswith("; run the command again once the server answers")
    assert outage.server_down(ValueError("x"), url, "abc123", last) is None


def test_one_notice_per_request_that_finds_the_server_gone(capsys):
    url = closed_url()
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "3"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"  # no waits: the retries at once
    outage.configure_retries(url)
    from mlflow import MlflowClient

    with pytest.raises(Exception, match="Connection refused"):
        MlflowClient(url).get_run("0" * 32)
    err = capsys.readouterr().err
    assert err.splitlines() == [f"warning: the tracking server at {url} is not answering (connection refused); "
                                f"waiting up to 0 s for it ({RETRY_ENV})"], err


def test_no_retries_is_one_quick_try_and_restores_the_settings():
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "7"
    with outage.no_retries(timeout_s=3):
        assert (os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"], os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) == ("0", "3")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7" and "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def tracker_of_run(url: str, run_id: str, monkeypatch: pytest.MonkeyPatch):
    """A tracker whose run was found before the outage: MLFlowLogger's client without its request."""
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow import MlflowClient

    from lit_nn.tracking.logger import MLflowTracker

    monkeypatch.setattr(MLFlowLogger, "experiment", property(lambda self: MlflowClient(url)))
    tracker = MLflowTracker("outage", run_id=run_id, tracking_uri=url)
    assert tracker.experiment is not None and tracker.started_run_id == run_id
    return tracker


def test_a_run_failed_by_the_outage_records_its_end_with_one_try(monkeypatch: pytest.MonkeyPatch):
    """No second retry window after the first one ran out; a failed try leaves the run to --cleanup."""
    from lit_nn.tracking import logger

    url = closed_url()
    tries = []

    def end_run(client, run_id, status, reason):
        tries.append((os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES"), run_id, str(status), reason))
        raise refused(url)

    monkeypatch.setattr(logger, "end_run", end_run)
    tracker = tracker_of_run(url, "abc123", monkeypatch)
    tracker.failure = refused(url)
    tracker.finalize("failed")  # does not raise
    ((retries, run_id, status, reason),) = tries
    assert (retries, run_id, status) == ("0", "abc123", "FAILED")
    assert reason.startswith(f"the tracking server at {url} did not answer for ")


def test_a_fit_ended_by_the_outage_raises_the_sentence(monkeypatch: pytest.MonkeyPatch):
    from lit_nn.cli.train import store_fault_as_error

    url = closed_url()
    trainer = SimpleNamespace(loggers=[tracker_of_run(url, "abc123", monkeypatch)], checkpoint_callback=None)
    with pytest.raises(TrackingServerDown, match="run abc123 had written no checkpoint yet"):
        with store_fault_as_error(trainer):
            raise refused(url)
    with pytest.raises(ZeroDivisionError):  # anything else passes through
        with store_fault_as_error(trainer):
            raise ZeroDivisionError


def test_any_command_ended_by_the_outage_is_one_sentence(capsys, monkeypatch: pytest.MonkeyPatch):
    from lit_nn.cli import commands

    url = closed_url()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)

    def run_tool(command, argv):
        raise refused(url)

    monkeypatch.setattr(commands, "run_tool", run_tool)
    result = run_main(capsys, "runs")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: the tracking server at {url} did not answer for ")
    assert result.stderr.rstrip().endswith("run the command again once the server answers")
    assert "Traceback" not in result.stderr
