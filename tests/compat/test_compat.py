"""One test per hook of lit_nn.compat: each fails naming the hook when a library release changes the
private name or behaviour the hook relies on (then update the module the message names)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lit_nn.compat import jsonargparse as compat_jsonargparse
from lit_nn.compat import mlflow as compat_mlflow

from helpers import free_port


@contextmanager
def hook(library: str, name: str, module: str) -> Iterator[None]:
    """Any failure inside names the hook, the library and the compat module to update."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - an AttributeError, KeyError... all mean the same here
        pytest.fail(f"{library} changed what {name} relies on ({type(err).__name__}: {err}): "
                    f"update lit_nn/compat/{module}.py", pytrace=False)


# -- jsonargparse ------------------------------------------------------------------------------
def test_subcommand_parsers():
    from jsonargparse import ArgumentParser

    parser, fit, lab = ArgumentParser(), ArgumentParser(), ArgumentParser()
    fit.add_argument("--epochs", type=int)
    subcommands = parser.add_subcommands()
    subcommands.add_subcommand("fit", fit)
    subcommands.add_subcommand("lab", lab)
    message = "jsonargparse changed ArgumentParser._subcommands_action._name_parser_map: " \
              "update lit_nn/compat/jsonargparse.py (subcommand_parsers)"
    with hook("jsonargparse", "subcommand_parsers (ArgumentParser._subcommands_action._name_parser_map)",
              "jsonargparse"):
        found = compat_jsonargparse.subcommand_parsers(parser)
        alone = compat_jsonargparse.subcommand_parsers(ArgumentParser())
    assert found == {"fit": fit, "lab": lab} and found["fit"] is fit, message
    assert alone == {}, message


def test_parser_actions():
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_argument("--alpha", type=int)
    parser.add_argument_group("group").add_argument("--beta.gamma", type=str)
    with hook("jsonargparse", "parser_actions (ArgumentParser._actions)", "jsonargparse"):
        options = {o for action in compat_jsonargparse.parser_actions(parser) for o in action.option_strings}
    assert {"-h", "--help", "-c", "--config", "--alpha", "--beta.gamma"} <= options, \
        f"jsonargparse changed ArgumentParser._actions (found {sorted(options)}): " \
        "update lit_nn/compat/jsonargparse.py (parser_actions)"


def test_action_typehint():
    from typing import Literal

    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--precision", type=Literal[32, 16] | Literal["bf16-mixed"] | None)
    parser.add_argument("--plain")
    with hook("jsonargparse", "action_typehint (ArgumentParser._actions[i]._typehint)", "jsonargparse"):
        found = compat_jsonargparse.action_typehint(parser, "precision")
    assert found == Literal[32, 16] | Literal["bf16-mixed"] | None, \
        f"jsonargparse changed its actions' _typehint (found {found!r}): update lit_nn/compat/jsonargparse.py " \
        "(action_typehint)"
    assert compat_jsonargparse.action_typehint(parser, "plain") is None
    assert compat_jsonargparse.action_typehint(parser, "nothing") is None


# -- MLflow ------------------------------------------------------------------------------------
def test_allow_http_retries(monkeypatch: pytest.MonkeyPatch):
    """Above the cap MLflow refuses the request outright; with the hook it retries (and here, with
    nothing listening and no waits, fails with the connection error)."""
    from mlflow import MlflowClient
    from mlflow.environment_variables import _MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT as cap

    message = "MLflow changed _MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT: update lit_nn/compat/mlflow.py (allow_http_retries)"
    assert (cap.name, cap.default) == (compat_mlflow.HTTP_RETRIES_CAP_ENV, compat_mlflow.HTTP_RETRIES_CAP), message
    retries = compat_mlflow.HTTP_RETRIES_CAP + 1
    monkeypatch.delenv(compat_mlflow.HTTP_RETRIES_CAP_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(Exception) as refused:  # noqa: PT011 - which error is the point
        client.get_run("0" * 32)
    assert "in excess of the maximum allowable retries" in str(refused.value), message
    compat_mlflow.allow_http_retries(compat_mlflow.HTTP_RETRIES_CAP)
    assert compat_mlflow.HTTP_RETRIES_CAP_ENV not in os.environ  # at the cap: nothing to lift
    compat_mlflow.allow_http_retries(retries)
    with pytest.raises(Exception) as retried:  # noqa: PT011
        client.get_run("0" * 32)
    assert "in excess" not in str(retried.value) and "Max retries exceeded" in str(retried.value), message


def test_modules_to_packages(monkeypatch: pytest.MonkeyPatch):
    """MLflow's requirement check fills its map by scanning every distribution unless it is set;
    with the hook it reads the map given, and afterwards scans as usual."""
    from importlib import metadata

    from mlflow.utils import requirements_utils

    message = "MLflow changed requirements_utils._MODULES_TO_PACKAGES: update lit_nn/compat/mlflow.py " \
              "(modules_to_packages)"
    assert hasattr(requirements_utils, "_MODULES_TO_PACKAGES"), message
    scans: list[int] = []

    def scan() -> dict[str, list[str]]:
        scans.append(1)
        return {"torch": ["torch"]}

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", scan)
    pinned = [f"torch=={metadata.version('torch').split('+')[0]}"]
    with compat_mlflow.modules_to_packages({"torch": ["torch"]}):
        requirements_utils.warn_dependency_requirement_mismatches(pinned)
    assert scans == [], message + " (it scanned the distributions despite the map)"
    assert requirements_utils._MODULES_TO_PACKAGES is None, message + " (the map was not reset)"
    requirements_utils.warn_dependency_requirement_mismatches(pinned)
    assert scans == [1], message + " (the requirement check no longer scans through it: the hook may go)"


def test_name_refusal_follows_mlflows_own_checks():
    """The rules come from mlflow.utils.validation: a name it refuses here, its store refuses too."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    assert compat_mlflow.name_refusal("--experiment", "x" * 500) is None
    assert "600 characters long; MLflow takes at most 500" in compat_mlflow.name_refusal("--experiment", "x" * 600)
    assert "at most 250" in compat_mlflow.name_refusal("--run_name", "r" * 251)
    assert compat_mlflow.name_refusal("--tags", "team/owner: a-b.c", key=True) is None
    refused = compat_mlflow.name_refusal("--tags", "bad key!", key=True)
    assert refused is not None and "'bad key!'" in refused
    with pytest.raises(MlflowException):  # what MLflow's store would have said after creating the run
        validation._validate_tag_name("bad key!")
    assert "not a normalized path" in compat_mlflow.name_refusal("--tags", "../up", key=True)
