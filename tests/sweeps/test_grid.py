"""Sweep files: expansion into points, config hashing, resume decisions, and bad input."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lit_nn.core.errors import UserError
from lit_nn.sweeps.driver import needs_own_process
from lit_nn.sweeps.grid import config_hash, expand, load_sweep, parse_sweep, set_dotted, short_key
from lit_nn.sweeps.plan import DIVERGED, decide, done_summary

from helpers import REPO, run_main

BASE = {
    "seed_everything": 0,
    "model": {"class_path": "lit_nn.models.MLP", "init_args": {"depth": 2, "optimizer": "adam", "lr": 0.001}},
    "data": {"class_path": "lit_nn.data.ImageDataModule", "init_args": {"batch_size": 64}},
    "trainer": {"max_epochs": 2, "devices": 1},
}


def spec_of(**raw):
    return parse_sweep({"config": BASE, **raw})


def test_grid_is_a_cartesian_product_times_seeds_in_seed_major_order():
    spec = spec_of(name="g", grid={"model.init_args.depth": [0, 1], "model.init_args.activation": ["relu", "tanh"]},
                   seeds=[0, 1])
    points = expand(spec)
    assert len(points) == 2 * 2 * 2
    assert [p.run_name for p in points[:4]] == [
        "depth=0,activation=relu-s0", "depth=0,activation=tanh-s0",
        "depth=1,activation=relu-s0", "depth=1,activation=tanh-s0"]
    assert {p.seed for p in points[:4]} == {0} and {p.seed for p in points[4:]} == {1}
    p = points[5]  # depth=0, tanh, seed 1
    assert p.config["model"]["init_args"] == {"depth": 0, "optimizer": "adam", "lr": 0.001, "activation": "tanh"}
    assert p.config["seed_everything"] == 1
    assert p.varied == {"depth": "0", "activation": "tanh"}
    assert BASE["model"]["init_args"]["depth"] == 2, "expansion must not modify the base config"
    assert len({p.config_hash for p in points}) == len(points)


def test_named_points_change_keys_together_and_combine_with_the_grid():
    spec = spec_of(points=[{"name": "sgd_momentum", "model.optimizer": "sgd", "model.momentum": 0.9, "model.lr": 0.05},
                           {"name": "adam", "model.optimizer": "adam"}],
                   grid={"model.init_args.hidden": [32, 64]}, seeds=[7])
    points = expand(spec)
    assert [p.run_name for p in points] == ["sgd_momentum,hidden=32-s7", "sgd_momentum,hidden=64-s7",
                                            "adam,hidden=32-s7", "adam,hidden=64-s7"]
    args = points[1].config["model"]["init_args"]
    assert (args["optimizer"], args["momentum"], args["lr"], args["hidden"]) == ("sgd", 0.9, 0.05, 64)
    assert points[1].tags("sw", "parent123") == {
        "optimizer": "sgd", "momentum": "0.9", "lr": "0.05", "hidden": "64", "sweep": "sw", "sweep_role": "point",
        "sweep_point": "sgd_momentum,hidden=64", "seed": "7", "config_hash": points[1].config_hash,
        "mlflow.parentRunId": "parent123"}
    assert spec.group_by == "sweep_point"


def test_a_dict_value_replaces_the_whole_section():
    spec = spec_of(points=[{"name": "cnn", "model": {"class_path": "lit_nn.models.CNN", "init_args": {"lr": 0.002}}},
                           {"name": "mlp", "model.depth": 1}])
    cnn, mlp = expand(spec)
    assert cnn.config["model"] == {"class_path": "lit_nn.models.CNN", "init_args": {"lr": 0.002}}
    assert mlp.config["model"]["init_args"]["depth"] == 1 and mlp.config["model"]["class_path"].endswith("MLP")
    assert "model" not in cnn.varied  # a section is named by the point, not tagged


def test_set_dotted_short_keys_go_through_init_args():
    config = {"model": {"class_path": "X", "init_args": {"lr": 1}}}
    set_dotted(config, "model.lr", 2)
    set_dotted(config, "trainer.max_epochs", 3)
    assert config == {"model": {"class_path": "X", "init_args": {"lr": 2}}, "trainer": {"max_epochs": 3}}
    assert short_key("model.init_args.depth") == "depth" and short_key("model.class_path") == "model"
    with pytest.raises(UserError, match="trainer.max_epochs is 3, not a section"):
        set_dotted(config, "trainer.max_epochs.x", 1)


def test_hash_tracks_what_a_point_computes():
    config = {**BASE, "experiment": "a", "run_name": "r", "tags": {"k": "v"}}
    h = config_hash(config)
    assert h == config_hash(dict(reversed(list(config.items())))), "key order must not matter"
    assert h == config_hash({**config, "experiment": "b", "run_name": "other", "tags": {}}), "labels are not hashed"
    changed = {**config, "trainer": {"max_epochs": 3, "devices": 1}}
    assert config_hash(changed) != h
    assert config_hash(config, ("--trainer.max_epochs", "3")) != h
    assert config_hash(config, ("--trainer.max_epochs", "3")) == config_hash(config, ("--trainer.max_epochs=3",))
    # the same file expanded twice hashes the same (resume depends on it)
    spec = spec_of(grid={"model.depth": [1, 2]})
    assert [p.config_hash for p in expand(spec)] == [p.config_hash for p in expand(spec)]


def test_base_file_is_merged_under_the_inline_config(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "config": {"trainer": {"max_epochs": 5}},
                                                     "grid": {"model.depth": [1, 3]}}))
    spec = load_sweep(tmp_path / "s.yaml")
    assert spec.name == "s" and spec.experiment == "s" and spec.group_by == "depth"
    assert spec.config["trainer"] == {"max_epochs": 5, "devices": 1}
    assert spec.config["model"]["init_args"]["optimizer"] == "adam"


@pytest.mark.parametrize("raw, message", [
    ({"gird": {}}, "unknown key in sweep: 'gird' (did you mean 'grid'?)"),
    ({"grid": {"model.depth": []}}, "grid key 'model.depth' needs a non-empty list"),
    ({"grid": {"model.depth": 3}}, "each value of grid must be a list, got '3'"),
    ({"grid": 3}, "grid must be a mapping, got '3'"),
    ({"points": [3]}, "each entry of points must be a mapping, got '3'"),
    ({"points": [{"model.lr": 1}]}, "point #1 must be a mapping with a 'name'"),
    ({"points": [{"name": "a"}, {"name": "a", "model.lr": 1}]}, "two points are named 'a'"),
    ({"seeds": [0, "one"]}, "each entry of seeds must be an int, got 'one'"),
    ({"seeds": [0, True]}, "each entry of seeds must be an int, got 'True'"),
    ({"seeds": []}, "'seeds' must be a non-empty list of integers"),
    ({"seeds": [1, 1]}, "'seeds' has duplicates"),
    ({"grid": {"model.depth": [1]}, "group_by": "dpeth"},
     "group_by 'dpeth' is not a key this sweep varies (valid: depth, seed, sweep_point); the nearest varied key "
     "is 'depth'"),
    ({"grid": {"model.depht": [1]}, "group_by": "depth"},  # the grid key misspelt, the group right
     "group_by 'depth' is not a key this sweep varies (valid: depht, seed, sweep_point); the nearest varied key "
     "is 'depht': is one of the two misspelt?"),
    ({"points": [{"name": "a", "model.lr": 1}], "grid": {"model.lr": [1, 2]}}, "which the grid also varies"),
    ({"grid": {"model..lr": [1]}}, "bad config key 'model..lr'"),
])
def test_bad_sweep_files_name_the_bad_value(raw, message):
    with pytest.raises(UserError) as err:
        expand(spec_of(**raw))
    assert message in str(err.value)


def test_identical_points_and_reserved_extra_args_are_refused():
    with pytest.raises(UserError, match="resolve to the same config"):
        expand(spec_of(points=[{"name": "a", "model.lr": 0.001}, {"name": "b", "model.lr": 0.001}]))
    with pytest.raises(UserError, match="--experiment is set by the sweep"):
        expand(spec_of(), ["--experiment", "x"])


def test_multi_device_points_get_their_own_process():
    assert not needs_own_process(BASE, ())
    assert needs_own_process(BASE, ("--trainer.devices", "2"))
    assert needs_own_process(BASE, ("--trainer.devices=auto",))
    assert needs_own_process({"trainer": {}}, ())  # devices default "auto" may mean DDP on a multi-GPU host
    assert not needs_own_process({"trainer": {"devices": 4}}, ("--trainer.devices", "1"))


def fake_run(config_hash: str, status: str, start: int, run_id: str = "r"):
    return SimpleNamespace(info=SimpleNamespace(status=status, start_time=start, run_id=run_id + "0" * 8),
                           data=SimpleNamespace(tags={"config_hash": config_hash, "pid": "1", "host": "h"}))


def test_resume_skips_finished_and_live_points_and_reruns_the_rest():
    a, b, c, d, e = expand(spec_of(grid={"model.depth": [0, 1, 2, 3, 4]}))
    runs = [fake_run(a.config_hash, "FAILED", 1), fake_run(a.config_hash, "FINISHED", 2, "fin"),
            fake_run(b.config_hash, "FINISHED", 1), fake_run(b.config_hash, "FAILED", 2),
            fake_run(c.config_hash, "KILLED", 1), fake_run(d.config_hash, "RUNNING", 1, "live"),
            fake_run("other", "FINISHED", 1)]
    decisions = {x.point.label: x for x in decide([a, b, c, d, e], runs)}
    assert [decisions[k].action for k in ("depth=0", "depth=1", "depth=2", "depth=3", "depth=4")] == [
        "done", "done", "run", "running", "run"]
    assert decisions["depth=0"].run_id.startswith("fin")
    assert decisions["depth=2"].note == "previous: KILLED" and decisions["depth=4"].note == "new"
    forced = [x.action for x in decide([a, b, c, d, e], runs, force=True)]
    assert forced == ["run", "run", "run", "running", "run"], "--force never doubles a live run"


def test_a_diverged_trial_is_done_but_not_counted_as_finished():
    """A tuning trial whose training diverged is its slot's result: skipped on a re-run, and the
    re-run's line says so instead of calling it FINISHED; any other diverged point runs again."""
    import dataclasses

    a, b, c = (dataclasses.replace(p, phase="tune") for p in expand(spec_of(grid={"model.depth": [0, 1, 2]})))
    blown = fake_run(b.config_hash, "FAILED", 1)
    blown.data.tags["failure_reason"] = f"{DIVERGED}: the mean training loss of epoch 0 is nan"
    runs = [fake_run(a.config_hash, "FINISHED", 1), blown, fake_run(c.config_hash, "FINISHED", 1)]
    decisions = decide([a, b, c], runs)
    assert [d.action for d in decisions] == ["done", "done", "done"]
    assert done_summary(decisions) == "3 already done (2 FINISHED, 1 diverged trial)"
    assert done_summary(decide([a, c], runs)) == "2 already FINISHED"
    untuned = dataclasses.replace(b, phase=None)
    assert [d.action for d in decide([untuned], runs)] == ["run"]


def test_dry_run_lists_points_and_creates_nothing(capsys, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh}")
    result = run_main(capsys, "sweep", str(REPO / "experiments" / "compare_optimizers.yaml"), "--dry-run",
                      "--trainer.max_epochs", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "21 points (7 settings × 3 seed(s))" in lines[0]
    assert sum(line.lstrip().startswith("run ") for line in lines) == 21
    assert "21 of 21 point(s) would run" in lines[-1]
    assert not fresh.exists() and not fresh.parent.exists(), "a dry run must not create the store"


@pytest.mark.parametrize("name", ["compare_optimizers", "compare_depth", "compare_activations", "compare_models"])
def test_shipped_sweep_files_expand(name):
    spec = load_sweep(REPO / "experiments" / f"{name}.yaml")
    points = expand(spec)
    assert spec.name == name and len(spec.seeds) == 3 and len(points) >= 6
    assert not needs_own_process(spec.config, ()), "the shipped sweeps run in-process by default"
    groups = {p.varied.get(spec.group_by, p.label) for p in points}
    assert len(groups) == len(points) // len(spec.seeds), "every setting is its own group in the report"


def test_sweep_cli_rejects_bad_input(capsys, tmp_path):
    result = run_main(capsys, "sweep", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "sweep file" in result.stderr and "does not exist" in result.stderr
    result = run_main(capsys, "sweep", str(REPO / "experiments" / "compare_depth.yaml"), "--workers", "0")
    assert result.returncode == 2 and "--workers must be >= 1, got 0" in result.stderr
    result = run_main(capsys, "sweep", str(REPO / "experiments" / "compare_depth.yaml"), "--worker", "2")
    assert result.returncode == 2 and "unknown option '--worker' for lit-nn sweep (did you mean '--workers'?)" in result.stderr


def test_the_sweep_parent_says_what_it_compares():
    from lit_nn.sweeps.driver import describe

    spec = load_sweep(REPO / "experiments" / "compare_depth.yaml")
    assert describe(spec, expand(spec)) == ("Compares depth (0, 1, 2, 3), 3 seed(s) each, 12 runs, on mnist; "
                                            f"sweep file {spec.path}.")
    spec = load_sweep(REPO / "experiments" / "compare_optimizers.yaml")
    assert describe(spec, expand(spec)).startswith("Compares sgd, sgd_momentum, adagrad, rmsprop, adadelta, adam, adamw,")


def test_where_the_data_comes_from_is_part_of_a_points_identity(tmp_path: Path):
    """The same `dataset: mnist` is the embedded sample here and full MNIST where its IDX files are:
    the two must be different points, so a re-run on the full set neither skips nor mixes with
    results on the sample; the sample (the offline default) keeps the hashes it always had."""
    from lit_nn.data.datamodule import source_identity
    from lit_nn.data.images import _idx_pair

    config = {"model": {"class_path": "lit_nn.models.MLP"},
              "data": {"class_path": "lit_nn.data.ImageDataModule",
                       "init_args": {"dataset": "mnist", "root": str(tmp_path / "data")}}}
    assert source_identity(config["data"]) is None
    spec = parse_sweep({"name": "d", "config": config, "grid": {"model.init_args.depth": [1]}})
    sample = expand(spec)[0].config_hash
    assert sample == config_hash(expand(spec)[0].config, ())

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"")
    assert _idx_pair(raw, "train") is not None
    assert source_identity(config["data"]) == "mnist: full (IDX files)"
    full = expand(spec)[0].config_hash
    assert full != sample
    assert source_identity({"class_path": "lit_nn.data.ImageDataModule",
                            "init_args": {"dataset": "nope"}}) is None  # the run reports bad options


def test_the_help_lists_every_key_of_the_sweep_file_with_its_type_and_meaning(capsys):
    """The reference is generated from the dataclasses the parser checks, so it cannot drift from them."""
    import dataclasses

    from lit_nn.cli.main import main
    from lit_nn.sweeps.grid import SweepFile
    from lit_nn.sweeps.tune import Confirm, Objective, TuneSpec

    main(["sweep", "--help"])
    text = capsys.readouterr().out
    reference = text[text.index("sweep file keys"):]
    keys = [f.name for f in dataclasses.fields(SweepFile)]
    keys += [f"tune.{f.name}" for f in dataclasses.fields(TuneSpec)]
    keys += [f"tune.objective.{f.name}" for f in dataclasses.fields(Objective)]
    keys += [f"tune.confirm.{f.name}" for f in dataclasses.fields(Confirm)]
    for key in keys:
        assert re.search(rf"^  {re.escape(key)}[ :]", reference, re.M), f"{key} missing from the help"
    assert "tune.trials (int, default 8): runs per arm" in reference
    assert "seeds (list[int], default [0]): every setting runs once per seed" in reference


def test_one_sweep_names_its_claims_studies_and_runs_from_one_key():
    from lit_nn.sweeps.claims import claim_prefix
    from lit_nn.sweeps.sweep import Sweep

    sweep = Sweep.of(spec_of(name="opt", grid={"model.depth": [1]}), "7")
    assert sweep.key == Sweep("opt", "7").key and len(sweep.key) == 16
    assert sweep.key not in (Sweep("opt", "8").key, Sweep("opt2", "7").key)
    assert claim_prefix(sweep, "abc") == f"lit-nn-claim/{sweep.key}/abc/"
    assert sweep.study_name("sgd") == f"lit-nn/{sweep.key}/sgd"
    assert sweep.filter(phase="confirm") == ("tags.sweep = 'opt' and tags.sweep_role = 'point' and "
                                            "tags.phase = 'confirm'")
    assert sweep.with_parent("p1").parent_run_id == "p1" and sweep.parent_run_id is None
