"""``lit-nn runs --copy_to``: a learner's local runs copied to another store with everything intact
(metric histories, params, tags, artifacts, logged models, nesting), once; bad targets refused in
one sentence with nothing written; a copy that fails midway leaves no run behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.tracking import MlflowClient

from lit_nn.core.names import Tag
from lit_nn.tracking.copy import COPY_FAILED
from lit_nn.tracking.store import artifact_location
from team import TINY, needs_postgres, team_server

from helpers import assert_clean_error, free_port, run_cli, run_main

MARKERS = {Tag.COPIED_FROM, Tag.COPIED_FROM_RUN, Tag.PARENT_RUN_ID}  # the tags a copy does not keep as they were


# -- what a copy must equal ------------------------------------------------------------------
def history(client, run_id: str, key: str) -> list[tuple]:
    rows = client.get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value) for m in rows)


def tree(client, run_id: str, dest: Path) -> dict[str, bytes]:
    """Every artifact file of a run: {path: bytes}."""
    dest.mkdir(parents=True)
    if not client.list_artifacts(run_id):
        return {}
    root = Path(client.download_artifacts(run_id, "", str(dest)))
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def model_tree(model, tracking_uri: str, dest: Path) -> dict[str, bytes]:
    import mlflow.artifacts

    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, tracking_uri=tracking_uri,
                                                    dst_path=str(dest)))
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def copies_by_source(target, experiment: str) -> dict[str, object]:
    exp = target.get_experiment_by_name(experiment)
    runs = target.search_runs([exp.experiment_id], max_results=1000)
    return {r.data.tags[Tag.COPIED_FROM_RUN]: r for r in runs}


def assert_copied(source, target, run, copy, copies: dict, tmp: Path, extra_files: dict | None = None) -> None:
    """``copy`` holds everything ``run`` holds; only the documented tags differ."""
    si, ti = run.info, copy.info
    assert (ti.run_name, ti.status, ti.start_time, ti.end_time) == (si.run_name, si.status, si.start_time, si.end_time)
    assert copy.data.params == run.data.params
    tags = {k: v for k, v in copy.data.tags.items() if k not in MARKERS}
    assert tags == {k: v for k, v in run.data.tags.items() if k not in MARKERS}
    assert copy.data.tags[Tag.COPIED_FROM_RUN] == si.run_id
    parent = run.data.tags.get(Tag.PARENT_RUN_ID)
    assert copy.data.tags.get(Tag.PARENT_RUN_ID) == (copies[parent].info.run_id if parent else None)
    assert set(copy.data.metrics) == set(run.data.metrics)
    for key in run.data.metrics:
        assert history(target, ti.run_id, key) == history(source, si.run_id, key), key
    expected = {**tree(source, si.run_id, tmp / si.run_id / "source"), **(extra_files or {})}
    assert tree(target, ti.run_id, tmp / si.run_id / "target") == expected


def assert_model_copied(source, target, source_uri: str, target_uri: str, run, copy, tmp: Path) -> None:
    """The run's logged model is a logged model of the copy: same name, type, params, metrics, status,
    output step and files; its MLmodel names the copy's run and model instead; runs:/<copy>/model finds it."""
    import mlflow.artifacts

    (model,) = source.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    (new,) = target.search_logged_models([copy.info.experiment_id], filter_string=f"source_run_id = '{copy.info.run_id}'")
    assert (new.name, new.model_type, new.params, new.status) == (model.name, model.model_type, model.params, model.status)
    assert sorted((m.key, m.step, m.timestamp, m.value) for m in new.metrics) == \
        sorted((m.key, m.step, m.timestamp, m.value) for m in model.metrics)
    assert [(o.model_id, o.step) for o in copy.outputs.model_outputs] == \
        [(new.model_id, o.step) for o in run.outputs.model_outputs]
    before = model_tree(model, source_uri, tmp / "model-source")
    after = model_tree(new, target_uri, tmp / "model-target")
    assert {k: v for k, v in after.items() if k != "MLmodel"} == {k: v for k, v in before.items() if k != "MLmodel"}
    renamed = before["MLmodel"].decode()
    for old, fresh in ((model.artifact_location, new.artifact_location), (model.model_id, new.model_id),
                       (run.info.run_id, copy.info.run_id)):
        renamed = renamed.replace(old, fresh)
    assert after["MLmodel"].decode() == renamed
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow resolves the logged model behind runs:/ in the default store, whatever tracking_uri says: the
    # variable, or the process-wide URI an earlier in-process fit set (mlflow.set_tracking_uri), which wins
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_URI": target_uri}), _use_tracking_uri(target_uri):
        found = mlflow.artifacts.download_artifacts(f"runs:/{copy.info.run_id}/model/MLmodel",
                                                    dst_path=str(tmp / "by-runs-uri"))
    assert Path(found).read_bytes() == after["MLmodel"]


# -- runs to copy ------------------------------------------------------------------------------
def made_runs(client, tmp: Path) -> dict[str, str]:
    """Runs written with the client, each stressing one thing: a sweep parent with its points,
    metric histories past one batch (several values per step, a NaN), more params and tags than
    one batch holds, a nested artifact tree, a FAILED run with a local last.ckpt, a RUNNING run
    and a finished child of it."""
    exp = client.create_experiment("made", artifact_location=artifact_location("made"),
                                   tags={Tag.NOTE: "copy me", "course": "nn-101"})
    parent = client.create_run(exp, run_name="sweep-parent", tags={Tag.SWEEP_ROLE: "parent", Tag.SWEEP: "s"}).info.run_id
    big = client.create_run(exp, run_name="point-big", tags={Tag.PARENT_RUN_ID: parent}).info.run_id
    t0 = 1_700_000_000_000
    metrics = [Metric("loss", 1.0 / (i + 1), t0 + i, i // 2) for i in range(2500)]  # two values per step
    metrics += [Metric("val_acc", float("nan") if i == 3 else i / 10, t0 + i, i) for i in range(10)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(big, metrics=metrics[start:start + 1000])
    params = [Param(f"p{i:03d}", f"value {i}") for i in range(250)]
    tags = [RunTag(f"t{i:03d}", f"tag {i}") for i in range(150)]
    for start in range(0, 250, 100):
        client.log_batch(big, params=params[start:start + 100])
    for start in range(0, 150, 100):
        client.log_batch(big, tags=tags[start:start + 100])
    files = tmp / "files"
    (files / "checkpoints" / "deep").mkdir(parents=True)
    (files / "config.yaml").write_text("model: x\n")
    (files / "checkpoints" / "best.ckpt").write_bytes(os.urandom(300_000))
    (files / "checkpoints" / "deep" / "note.txt").write_text("nested\n")
    client.log_artifacts(big, str(files))
    client.set_terminated(big, "FINISHED", end_time=t0 + 5000)

    failed = client.create_run(exp, run_name="point-failed", tags={Tag.PARENT_RUN_ID: parent}).info.run_id
    last = tmp / "ckpts" / failed / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(os.urandom(1000))
    client.log_metric(failed, "train_loss", 2.5, t0, 0)
    client.set_tag(failed, Tag.LAST_CHECKPOINT, str(last))
    client.set_tag(failed, Tag.FAILURE_REASON, "training diverged at epoch 0")
    client.set_terminated(failed, "FAILED", end_time=t0 + 100)
    client.set_terminated(parent, "FINISHED", end_time=t0 + 9000)

    running = client.create_run(exp, run_name="still-running").info.run_id
    orphan = client.create_run(exp, run_name="done-under-running", tags={Tag.PARENT_RUN_ID: running}).info.run_id
    client.set_terminated(orphan, "FINISHED")
    return {"parent": parent, "big": big, "failed": failed, "running": running, "orphan": orphan, "last": str(last)}


def test_copy_keeps_histories_params_tags_artifacts_models_and_nesting_and_runs_once(
        tmp_path: Path, tracking_store: str, client, capsys):
    fit = run_cli("fit", *TINY, cwd=tmp_path)  # a real run: config, checkpoints, confusion matrix, logged model
    assert fit.returncode == 0, fit.stdout[-2000:] + fit.stderr[-2000:]
    made = made_runs(client, tmp_path)
    target_uri = f"sqlite:///{tmp_path}/team/mlflow.db"

    first = run_main(capsys, "runs", "--copy_to", target_uri)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[-1] == f"copy: 4 run(s) copied to {target_uri}, 0 already there, " \
                                            "2 not copied (not ended yet)", first.stdout
    assert lines[0].startswith("[1/6]") and "sweep-parent" in first.stdout
    assert f"{made['running'][:8]} still-running: not copied, it is RUNNING (only ended runs are copied" in first.stdout
    assert f"{made['orphan'][:8]} done-under-running: not copied yet, its parent run {made['running'][:8]} " \
           "has not ended" in first.stdout

    target = MlflowClient(target_uri)
    copies = copies_by_source(target, "made")
    assert set(copies) == {made["parent"], made["big"], made["failed"]}  # nothing RUNNING, no orphan
    assert target.get_experiment_by_name("made").tags == client.get_experiment_by_name("made").tags
    for name in ("parent", "big"):
        assert_copied(client, target, client.get_run(made[name]), copies[made[name]], copies, tmp_path)
    # a FAILED run carries its local last.ckpt along: what `fit --resume` fetches from a server
    assert_copied(client, target, client.get_run(made["failed"]), copies[made["failed"]], copies, tmp_path,
                  extra_files={"checkpoints/last.ckpt": Path(made["last"]).read_bytes()})
    assert copies[made["failed"]].data.tags[Tag.FAILURE_REASON] == "training diverged at epoch 0"

    (fitted,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    (copied,) = copies_by_source(target, "team").values()
    assert_copied(client, target, fitted, copied, {}, tmp_path)
    assert {"config.yaml", "confusion_matrix.png", "checkpoints/best.ckpt"} <= set(tree(target, copied.info.run_id,
                                                                                       tmp_path / "fit-tree"))
    assert_model_copied(client, target, tracking_store, target_uri, fitted, copied, tmp_path)

    again = run_main(capsys, "runs", "--copy_to", target_uri)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == f"copy: 0 run(s) copied to {target_uri}, 4 already there, " \
                                                    "2 not copied (not ended yet)"
    assert len(target.search_runs([e.experiment_id for e in target.search_experiments()], max_results=100)) == 4


def test_run_selects_a_sweep_with_its_points_and_a_point_brings_its_parent(tmp_path: Path, client, capsys):
    made = made_runs(client, tmp_path)
    target_uri = f"sqlite:///{tmp_path}/team/mlflow.db"
    one = run_main(capsys, "runs", "--copy_to", target_uri, "--run", made["big"][:8])
    assert one.returncode == 0, one.stderr
    target = MlflowClient(target_uri)
    copies = copies_by_source(target, "made")
    assert set(copies) == {made["parent"], made["big"]}
    assert copies[made["big"]].data.tags[Tag.PARENT_RUN_ID] == copies[made["parent"]].info.run_id
    sweep = run_main(capsys, "runs", "--copy_to", target_uri, "--run", made["parent"], "--status", "FINISHED")
    assert sweep.returncode == 0, sweep.stderr
    assert sweep.stdout.strip().splitlines()[-1] == f"copy: 0 run(s) copied to {target_uri}, 2 already there"
    everything = run_main(capsys, "runs", "--copy_to", target_uri, "--run", made["parent"])
    assert "copy: 1 run(s) copied" in everything.stdout  # the FAILED point
    assert set(copies_by_source(target, "made")) == {made["parent"], made["big"], made["failed"]}


def test_a_copy_that_fails_midway_leaves_no_run_behind_and_the_next_copy_goes_on(
        tmp_path: Path, client, capsys, monkeypatch):
    from lit_nn.tracking import copy as copy_module

    made = made_runs(client, tmp_path)
    target_uri = f"sqlite:///{tmp_path}/team/mlflow.db"
    real = copy_module.copy_artifacts
    calls = []

    def failing(source, target, run, new_id):
        calls.append(run.info.run_id)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(source, target, run, new_id)

    monkeypatch.setattr(copy_module, "copy_artifacts", failing)
    broken = run_main(capsys, "runs", "--copy_to", target_uri, "--experiment", "made")
    assert_clean_error(broken, f"copying run {calls[1]} to {target_uri} failed", "No space left on device",
                       "run the same command again")
    assert f"{calls[1][:8]} " in broken.stdout and ": failed (" in broken.stdout
    assert broken.stdout.strip().splitlines()[-1].startswith("copy: 1 run(s) copied")
    target = MlflowClient(target_uri)
    exp = target.get_experiment_by_name("made").experiment_id
    assert [r.data.tags[Tag.COPIED_FROM_RUN] for r in target.search_runs([exp])] == [calls[0]]
    (gone,) = target.search_runs([exp], run_view_type=ViewType.DELETED_ONLY)
    assert gone.info.status == "FAILED" and gone.data.tags[Tag.COPIED_FROM_RUN] == calls[1]
    assert gone.data.tags[Tag.FAILURE_REASON].startswith(COPY_FAILED + "OSError")

    # a copy cut off where even the clean-up could not reach the target: left RUNNING, replaced next time
    stale = target.create_run(exp, run_name="cut-off", tags={Tag.COPIED_FROM_RUN: made["failed"]}).info.run_id
    monkeypatch.setattr(copy_module, "copy_artifacts", real)
    fixed = run_main(capsys, "runs", "--copy_to", target_uri, "--experiment", "made")
    assert fixed.returncode == 0, fixed.stderr
    assert "1 already there" in fixed.stdout.strip().splitlines()[-1]
    assert target.get_run(stale).info.lifecycle_stage == "deleted"
    active = target.search_runs([exp])
    assert sorted(r.data.tags[Tag.COPIED_FROM_RUN] for r in active) == sorted([made["parent"], made["big"], made["failed"]])
    assert "RUNNING" not in {r.info.status for r in active}


@pytest.mark.parametrize(("target", "fragments"), [
    ("ftp://host/x", ["--copy_to 'ftp://host/x' has the scheme 'ftp'", "http://"]),
    ("tracking.lab.org:5000", ["has no scheme", "--copy_to http://"]),
    ("postgresql://ann:s3cret@db/mlflow", ["'postgresql://db/mlflow' is a database", "through its tracking server"]),
    ("SOURCE", ["is the store the runs are read from"]),
    ("UNREACHABLE", ["--copy_to: the MLflow tracking server at http://127.0.0.1:", "is not reachable"]),
])
def test_a_bad_target_is_one_sentence_and_nothing_is_written(target, fragments, tmp_path, tracking_store, client,
                                                             capsys):
    made_runs(client, tmp_path)
    target = {"SOURCE": tracking_store, "UNREACHABLE": f"http://127.0.0.1:{free_port()}"}.get(target, target)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_main(capsys, "runs", "--copy_to", target)
    assert_clean_error(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1 and "s3cret" not in result.stderr
    assert result.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(("args", "fragments"), [
    (["--run", "abc"], ["--run picks the runs to copy: use it with --copy_to"]),
    (["--copy_to", "TARGET", "--run", "0123456789"], ["--run 0123456789: no such run"]),
    (["--copy_to", "TARGET", "--experiment", "nope"], ["unknown experiment 'nope'"]),
])
def test_bad_selections_are_one_sentence(args, fragments, tmp_path, client, capsys):
    made_runs(client, tmp_path)
    target = f"sqlite:///{tmp_path}/team/mlflow.db"
    result = run_main(capsys, "runs", *[target if a == "TARGET" else a for a in args])
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "team").exists()


def test_run_ids_and_experiment_names_stay_text():
    """About one run id in 40 starts with 8 digits; 12345678 or 1e5 must reach --run as typed."""
    from lit_nn.cli.commands import COMMANDS
    from lit_nn.cli.tool_parser import parse

    args = parse(COMMANDS["runs"], ["--copy_to", "http://h:5000", "--run", "12345678", "1e5", "--experiment", "2024"])
    assert (args["run"], args["experiment"]) == (["12345678", "1e5"], ["2024"])


def test_an_unreachable_server_through_the_console_script(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("runs", "--copy_to", url, cwd=tmp_path)
    assert_clean_error(result, f"the MLflow tracking server at {url} is not reachable")


# -- a real team server --------------------------------------------------------------------------
PREDICT = """
import json, os, sys
import numpy as np
import mlflow.pyfunc
images = np.linspace(0, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28)
out = []
for uri, store in zip(sys.argv[1::2], sys.argv[2::2]):
    os.environ["MLFLOW_TRACKING_URI"] = store  # where runs:/ is looked up
    out.append(mlflow.pyfunc.load_model(uri).predict(images).tolist())
print(json.dumps(out))
"""


def predictions(env: dict, cwd: Path, *uris_and_stores: str) -> list:
    """Each model's class probabilities for the same two images, loaded in one fresh process."""
    result = subprocess.run([sys.executable, "-c", PREDICT, *uris_and_stores], capture_output=True, text=True,
                            timeout=300, cwd=cwd, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_postgres
def test_copy_to_a_team_server_with_credentials(tmp_path: Path, tracking_store: str, client, monkeypatch):
    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    fit = run_cli("fit", *TINY, cwd=tmp_path)
    assert fit.returncode == 0, fit.stdout[-2000:] + fit.stderr[-2000:]
    made = made_runs(client, tmp_path)
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "s3cret-Passw0rd"}
    with team_server(tmp_path / "srv", "--auth", env={"LIT_NN_ADMIN_PASSWORD": admin["MLFLOW_TRACKING_PASSWORD"]}) as url:
        wrong = run_cli("runs", "--copy_to", url, cwd=tmp_path, env={**admin, "MLFLOW_TRACKING_PASSWORD": "wrong"})
        assert_clean_error(wrong, f"the MLflow tracking server at {url} refused user 'admin'")
        first = run_cli("runs", "--copy_to", url, cwd=tmp_path, env=admin)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
        assert first.stdout.strip().splitlines()[-1] == f"copy: 4 run(s) copied to {url}, 0 already there, " \
                                                        "2 not copied (not ended yet)"
        for key, value in admin.items():
            monkeypatch.setenv(key, value)
        target = MlflowClient(url)
        copies = copies_by_source(target, "made")
        for name in ("parent", "big"):
            assert_copied(client, target, client.get_run(made[name]), copies[made[name]], copies, tmp_path)
        (fitted,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
        (copied,) = copies_by_source(target, "team").values()
        assert_copied(client, target, fitted, copied, {}, tmp_path)
        assert_model_copied(client, target, tracking_store, url, fitted, copied, tmp_path)
        # the copied model predicts from the server exactly as the local one
        here, there = predictions(admin, tmp_path, f"runs:/{fitted.info.run_id}/model", tracking_store,
                                  f"runs:/{copied.info.run_id}/model", url)
        assert there == here and len(here) == 2

        again = run_cli("runs", "--copy_to", url, cwd=tmp_path, env=admin)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stdout.strip().splitlines()[-1] == f"copy: 0 run(s) copied to {url}, 4 already there, " \
                                                        "2 not copied (not ended yet)"
