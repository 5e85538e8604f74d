"""Every configuration the project ships still parses against the code: fit configs through
``lit-nn fit --print_config``, sweep files point by point through the fit parser.

Parsing builds nothing and reads no data, so configs whose data is absent here (Fashion-MNIST,
tiny-shakespeare) are checked too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import REPO, run_main

EXPERIMENTS = sorted((REPO / "experiments").rglob("*.yaml"))


def is_sweep(path: Path) -> bool:
    return bool({"grid", "points"} & set(yaml.safe_load(path.read_text()) or {}))


FIT_CONFIGS = [p for p in EXPERIMENTS if not is_sweep(p)]
SWEEP_FILES = [p for p in EXPERIMENTS if is_sweep(p)]


def test_the_experiments_folder_has_both_kinds():
    assert len(FIT_CONFIGS) >= 5 and len(SWEEP_FILES) >= 4


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: p.name)
def test_fit_config_prints(config: Path, capsys):
    result = run_main(capsys, "fit", "-c", str(config), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)
    written = yaml.safe_load(config.read_text())
    assert printed["model"]["class_path"] == written["model"]["class_path"]
    for key, value in (written["model"].get("init_args") or {}).items():
        assert printed["model"]["init_args"][key] == (list(value) if isinstance(value, tuple) else value), key
    for key, value in (written.get("trainer") or {}).items():
        assert printed["trainer"][key] == value, key


def sweep_points(path: Path) -> list:
    from lit_nn.sweeps.grid import expand, load_sweep

    return expand(load_sweep(path))


@pytest.mark.parametrize("sweep_file", SWEEP_FILES, ids=lambda p: p.name)
def test_every_point_of_every_sweep_parses_as_a_fit_config(sweep_file: Path, tmp_path: Path):
    from lit_nn.cli.train import fit_parser
    from lit_nn.sweeps.grid import short_key

    parser = fit_parser()
    points = sweep_points(sweep_file)
    assert points
    for point in points:
        path = tmp_path / f"{point.config_hash}.yaml"
        path.write_text(yaml.safe_dump(point.config))
        parsed = parser.dump(parser.parse_args(["--config", str(path)]), format="yaml")
        dumped = yaml.safe_load(parsed)
        for key, value in point.overrides.items():  # what the point varies is what fit would train
            if isinstance(value, dict | list):
                continue
            section = dumped[key.split(".")[0]]
            node = section.get("init_args", section) if isinstance(section, dict) else dumped
            assert node[short_key(key)] == value or dumped.get(key) == value, (point.run_name, key)


def test_a_sweep_key_fit_does_not_know_fails_before_any_point_runs(tmp_path: Path, capsys, client):
    sweep = {"name": "typo", "base": str(REPO / "experiments" / "mnist_mlp.yaml"),
             "grid": {"model.init_args.dept": [1, 2]}}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(sweep))
    for extra in ([], ["--dry_run"]):
        result = run_main(capsys, "sweep", str(path), *extra)
        assert result.returncode == 2
        assert "sweep point dept=1-s0: model: Option 'dept' is not accepted (did you mean 'depth'?)" in result.stderr
    assert client.get_experiment_by_name("typo") is None
