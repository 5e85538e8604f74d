"""MLflow internals lit-nn relies on: the cap on HTTP retries, the module → distribution map.

Checked against MLflow 3.17.2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

HTTP_RETRIES_CAP = 10  # MLflow refuses more MLFLOW_HTTP_REQUEST_MAX_RETRIES than this by default
HTTP_RETRIES_CAP_ENV = "_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT"


def allow_http_retries(retries: int) -> None:
    """Let MLflow retry a request ``retries`` times, above its cap of 10 if need be.

    Why: ``LIT_NN_TRACKING_RETRY_S`` may ask for a wait that takes more than 10 retries (an hour
    is 36); MLflow refuses every request with more than ``_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT``
    (a private environment variable, default 10) instead of retrying. Below the cap nothing is set.
    """
    if retries > HTTP_RETRIES_CAP:
        os.environ[HTTP_RETRIES_CAP_ENV] = str(retries)


@contextmanager
def modules_to_packages(known: dict[str, list[str]]) -> Iterator[None]:
    """Within the block, MLflow's module → distribution map is ``known`` instead of a scan of every
    installed distribution's file list.

    Why: MLflow fills the map (``mlflow.utils.requirements_utils._MODULES_TO_PACKAGES``, a private
    global) on first use with ``packages_distributions()``, ~1.6 s with torch installed, only to
    check a logged model's requirements against the environment. If the global is gone or already
    filled, nothing changes (the scan happens, it is only slower); afterwards it is reset to None,
    so a later use in this process scans as usual.
    """
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", known) is not None:
        yield
        return
    requirements_utils._MODULES_TO_PACKAGES = known
    try:
        yield
    finally:
        if requirements_utils._MODULES_TO_PACKAGES is known:
            requirements_utils._MODULES_TO_PACKAGES = None


def name_refusal(what: str, name: str, *, key: bool = False) -> str | None:
    """Why MLflow would refuse ``name`` as an experiment name (``what`` = "--experiment"), a run name
    or a tag (``key``: a tag key, which lit-nn also logs as the param ``tags.KEY``), or None.

    Why here: MLflow checks names only when the run is being written (a run created, then FAILED, for
    a name it could have refused at once); its rules and limits live in ``mlflow.utils.validation``.
    """
    from mlflow.utils import validation

    limit = {"--experiment": validation.MAX_EXPERIMENT_NAME_LENGTH}.get(what, validation.MAX_ENTITY_KEY_LENGTH)
    if not name:
        return f"{what} is empty; give a name"
    if len(name) > limit:
        return f"{what} is {len(name)} characters long; MLflow takes at most {limit}"
    if key and not validation.validate_param_and_metric_name(name):
        return (f"{what} key {name!r} has a character MLflow refuses in names; use letters, digits, "
                "underscores, dashes, periods, spaces, colons and slashes")
    if key and validation.path_not_unique(name):
        return f"{what} key {name!r} is not a normalized path (no '..', './' or leading '/'); rename it"
    return None
