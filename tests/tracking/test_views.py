"""The MLflow UI view a comparison writes: what the UI will read back from the experiment tag."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from lit_nn.core.names import Tag
from lit_nn.tracking.store import MODEL_TRAINING, ensure_experiment
from lit_nn.tracking.views import (
    LOCAL_UI,
    PALETTE,
    comparison_state,
    group_colors,
    save_view,
    view_key,
    view_url,
    where_to_view,
)

from helpers import run_cli


def test_view_key_is_a_valid_tag_suffix():
    assert view_key("compare_optimizers") == "lit-nn-compare_optimizers"
    assert view_key("my sweep/2 (fast)") == "lit-nn-my-sweep-2-fast"
    assert view_key("///") == "lit-nn-view"


def test_view_url_asks_for_the_charts_of_the_saved_view_as_a_training_experiment():
    url = view_url("http://team:5000", "7", "lit-nn-x")
    page, _, query = urlsplit(url).fragment.partition("?")
    assert url.startswith("http://team:5000/#/experiments/7/runs?") and page == "/experiments/7/runs"
    assert parse_qs(query) == {"workflowType": ["machine_learning"], "compareRunsMode": ["CHART"],
                               "viewStateShareKey": ["lit-nn-x"]}


def test_where_to_view_names_the_ui_that_serves_the_store(tmp_path: Path):
    assert where_to_view("https://team.example/mlflow/", "3", "k").endswith(
        "https://team.example/mlflow/#/experiments/3/runs?workflowType=machine_learning&compareRunsMode=CHART"
        "&viewStateShareKey=k")
    default = f"sqlite:///{Path('mlruns').resolve()}/mlflow.db"
    assert "`make ui`" in where_to_view(default, "3", "k") and LOCAL_UI in where_to_view(default, "3", "k")
    other = f"sqlite:///{tmp_path}/mlflow.db"
    line = where_to_view(other, "3", "k")
    assert f"mlflow ui --backend-store-uri {other}" in line and "viewStateShareKey=k" in line


def test_the_saved_state_is_json_the_ui_reads_on_the_experiment(client):
    exp = ensure_experiment("views")
    state = comparison_state("tags.sweep = 's' and tags.sweep_role = 'point'", ["val_acc", "train_loss"], "s")
    save_view(client, exp, "lit-nn-s", state)
    stored = json.loads(client.get_experiment(exp).tags[Tag.VIEW_STATE + "lit-nn-s"])
    assert stored["searchFilter"] == "tags.sweep = 's' and tags.sweep_role = 'point'"
    assert stored["runsHiddenMode"] == "SHOW_ALL"  # the UI's default charts only the first 10 runs
    charts = stored["compareRunCharts"]
    assert [(c["type"], c["metricKey"], c["xAxisKey"]) for c in charts] == [("LINE", "val_acc", "step"),
                                                                              ("LINE", "train_loss", "step")]
    (section,) = stored["compareRunSections"]
    assert all(c["metricSectionId"] == section["uuid"] for c in charts) and section["display"]


def test_new_and_old_experiments_are_typed_as_model_training(client):
    exp = ensure_experiment("kind")
    assert client.get_experiment(exp).tags[Tag.EXPERIMENT_KIND] == MODEL_TRAINING
    old = client.create_experiment("made-elsewhere")
    assert ensure_experiment("made-elsewhere") == old
    assert client.get_experiment(old).tags[Tag.EXPERIMENT_KIND] == MODEL_TRAINING


def test_group_colors_follow_the_report_order():
    assert group_colors(["sgd", "adam"]) == {"sgd": PALETTE[0], "adam": PALETTE[1]}
    assert group_colors([str(i) for i in range(12)])["10"] == PALETTE[0]


def test_sweep_ends_with_the_view_url_and_colors_points_by_group(tmp_path: Path, client):
    sweep = {"name": "viewsweep",
             "config": {"model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 0}},
                        "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
                        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
                                    "limit_test_batches": 1}},
             "grid": {"model.optimizer": ["sgd", "adam"]}, "seeds": [0]}
    path = tmp_path / "viewsweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    result = run_cli("sweep", str(path), "--out", str(tmp_path / "out"), "--log_checkpoint", "false", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    exp = client.get_experiment_by_name("viewsweep")
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith(f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
                         "&compareRunsMode=CHART&viewStateShareKey=lit-nn-viewsweep"), last
    state = json.loads(exp.tags[Tag.VIEW_STATE + "lit-nn-viewsweep"])
    assert len(client.search_runs([exp.experiment_id], state["searchFilter"], max_results=100)) == 2
    colors = {r.info.run_name: r.data.tags[Tag.RUN_COLOR] for r in
              client.search_runs([exp.experiment_id], "tags.sweep_role = 'point'")}
    assert colors == {"optimizer=sgd-s0": PALETTE[0], "optimizer=adam-s0": PALETTE[1]}  # the file's order

    again = run_cli("compare", str(path), "--out", str(tmp_path / "out2"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip().splitlines()[-1] == last


def test_a_run_color_two_reports_write_at_once_is_written_on_the_second_try():
    """Two sweeps of one file report together: MLflow's set_tag reads, then inserts, so the slower
    writer of a new tag fails on the unique key (seen on the team server: tag_pk); a second try updates."""
    import pytest
    from mlflow.exceptions import MlflowException

    from lit_nn.tracking.views import color_runs

    class RacingClient:
        def __init__(self, failures: int) -> None:
            self.failures, self.tags = failures, {}

        def set_tag(self, run_id, key, value):
            if self.failures:
                self.failures -= 1
                raise MlflowException('duplicate key value violates unique constraint "tag_pk"')
            self.tags[run_id, key] = value

    raced = RacingClient(failures=1)
    color_runs(raced, {"r1": "a", "r2": "b"}, {"a": "#1f77b4", "b": "#ff7f0e"})
    assert raced.tags == {("r1", "mlflow.runColor"): "#1f77b4", ("r2", "mlflow.runColor"): "#ff7f0e"}
    with pytest.raises(MlflowException):  # a store that keeps failing is not hidden
        color_runs(RacingClient(failures=2), {"r1": "a"}, {"a": "#1f77b4"})
