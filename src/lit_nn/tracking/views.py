"""Comparisons that open in the MLflow UI as charts, from one URL.

MLflow 3's experiment page can be opened on a saved view: the UI reads the experiment tag
``mlflow.sharedViewState.<key>`` (a JSON object of its search facets and UI state) when the URL
carries ``?viewStateShareKey=<key>``; its own "Share" button writes the same tag. lit-nn writes
one such view per comparison: only the compared runs (a search filter, so a sweep's points are
listed flat instead of folded under the parent), every run shown (the UI's default shows the
first 10), and line charts over epochs, one line per run, first on the page. Each run's line is
colored by its group (``mlflow.runColor``, the tag the UI's color picker writes) with the colors
of the report's figure, so the UI and ``curves.png`` read the same way.

Which page an experiment opens on is the UI's "workflow type" (GenAI or machine learning), kept
in the browser (local storage, default GenAI) and overridden by ``?workflowType=``: a client can
only decide it through the URL. The ``mlflow.experimentKind`` tag that ``ensure_experiment``
sets is what the UI shows as the experiment's type where that switch is off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from lit_nn.core.names import Tag
from lit_nn.tracking.store import DEFAULT_STORE, local_store_dir

LOCAL_UI = "http://127.0.0.1:5000"  # where `make ui` serves the default store

SECTION = "lit-nn-comparison"
# matplotlib's tab10, the report figure's colors, in order
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def view_key(name: str) -> str:
    """A share key from a sweep or experiment name (letters, digits, ``-`` and ``_`` only)."""
    return "lit-nn-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "view")


def line_chart(metric: str) -> dict[str, Any]:
    """One line chart of ``metric`` against the step (lit-nn logs one step per epoch)."""
    return {"uuid": f"lit-nn-{metric}", "type": "LINE", "metricSectionId": SECTION, "deleted": False,
            "isGenerated": False, "displayName": metric, "metricKey": metric, "selectedMetricKeys": [metric],
            "xAxisKey": "step", "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [],
            "scaleType": "linear", "xAxisScaleType": "linear", "lineSmoothness": 0, "ignoreOutliers": False,
            "useGlobalXaxisKey": False, "useGlobalLineSmoothing": False, "range": {}}


def comparison_state(run_filter: str, metrics: Sequence[str], title: str) -> dict[str, Any]:
    """The view: runs matching ``run_filter`` sorted by name, all visible, and a chart per metric."""
    return {
        "searchFilter": run_filter,
        "orderByKey": "tags.`mlflow.runName`",
        "orderByAsc": True,
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": [line_chart(m) for m in metrics],
        "compareRunSections": [{"uuid": SECTION, "name": title, "display": True, "isReordered": False,
                                "deleted": False, "isGenerated": False}],
        "isAccordionReordered": True,  # keep this section first; the UI appends the other metrics after it
        "hideEmptyCharts": True,
        "groupBy": None,
    }


def _set_once_more_if_raced(set_tag: Any, *args: Any) -> None:
    """``set_tag(*args)``, tried a second time if the first failed: MLflow's SQL store writes a tag by
    reading, then inserting or updating, so two writers of the same new tag (two sweeps of one file
    reporting at once) can both insert, and the slower one fails on the unique key
    ("duplicate key value violates unique constraint tag_pk"). Its second try finds the row and
    updates it; any other fault fails the second try too and is raised."""
    from mlflow.exceptions import MlflowException

    try:
        set_tag(*args)
    except MlflowException:
        set_tag(*args)


def save_view(client: Any, experiment_id: str, key: str, state: Mapping[str, Any]) -> None:
    """Store the view on the experiment (rewritten each time: the latest comparison wins)."""
    _set_once_more_if_raced(client.set_experiment_tag, experiment_id, Tag.VIEW_STATE + key,
                            json.dumps(state, separators=(",", ":")))


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """The color of each group, in report order."""
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}


def color_runs(client: Any, run_groups: Mapping[str, str], colors: Mapping[str, str]) -> None:
    """Tag each run (id → group) with its group's color."""
    for run_id, group in run_groups.items():
        _set_once_more_if_raced(client.set_tag, run_id, Tag.RUN_COLOR, colors[group])


def ui_base(uri: str) -> str | None:
    """The UI's address for a store: the server itself, ``make ui``'s for the default local store;
    None for another local store (it needs its own ``mlflow ui``)."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    store = local_store_dir(uri)
    if store is not None and store.resolve() == DEFAULT_STORE.resolve():
        return LOCAL_UI
    return None


def where_to_open(uri: str, experiment_id: str, run_id: str) -> str:
    """How to look at a run in the MLflow UI: its page on the server, or on ``make ui`` for the
    default local store; ``mlflow ui`` on the store otherwise."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    base = ui_base(uri)
    if base is None:
        return f"open it with `mlflow ui --backend-store-uri {uri}`"
    if base == LOCAL_UI:
        return f"open it with `make ui` → {LOCAL_UI}/{page}"
    return f"open it at {base}/{page}"


def view_url(base: str, experiment_id: str, key: str) -> str:
    """The experiment's runs page on the saved view, charts shown, as a machine-learning experiment."""
    query = urlencode({"workflowType": "machine_learning", "compareRunsMode": "CHART", "viewStateShareKey": key})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def where_to_view(uri: str, experiment_id: str, key: str) -> str:
    """The line a command ends with: the URL, and how to start the UI when it is not a server."""
    base = ui_base(uri)
    if base is None:
        return (f"compare in the MLflow UI: start `mlflow ui --backend-store-uri {uri}`, then open "
                f"{view_url('http://127.0.0.1:5000', experiment_id, key)}")
    if base == LOCAL_UI:
        return f"compare in the MLflow UI (`make ui`): {view_url(base, experiment_id, key)}"
    return f"compare in the MLflow UI: {view_url(base, experiment_id, key)}"
