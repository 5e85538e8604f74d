"""Every file in experiments/seeds/ (the learner's programs, one file each) still works: fit
configs and every setting of a sweep train for one batch through ``lit-nn fit``; a lab page's
command parses with ``lit-nn lab``'s parser and runs (shortened)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from helpers import REPO, run_main

SEEDS = REPO / "experiments" / "seeds"
FILES = sorted(p for p in SEEDS.iterdir() if p.suffix in (".yaml", ".md") and p.name != "README.md")
ONE_BATCH = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
             "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false")
NOTES = re.compile(r"\b00\d_[0-9a-f]{16}\.txt\b")  # a file name in /work/shared/seeds


def is_sweep(path: Path) -> bool:
    return path.suffix == ".yaml" and bool({"grid", "points"} & set(yaml.safe_load(path.read_text())))


def lab_command(path: Path) -> list[str]:
    """The one ``lit-nn lab ...`` command of a lab page, as argv after ``lit-nn``."""
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)
                for line in block.splitlines() if line.strip().startswith("lit-nn lab ")]
    assert len(commands) == 1, f"{path.name}: expected one `lit-nn lab` command, found {commands}"
    return shlex.split(commands[0])[1:]


def test_every_program_has_its_file_and_every_file_names_its_note():
    names = {p.name for p in FILES}
    assert {"selu_mlp.yaml", "mnist_cnn.yaml", "mlp_depth_1_to_3.yaml", "optimizer_paths.md",
            "numpy_two_layer.md", "char_rnn_classic.yaml"} <= names
    index = (SEEDS / "README.md").read_text()
    for path in FILES:
        head = path.read_text().split("\nexperiment:")[0].split("\nname:")[0]
        assert NOTES.search(head), f"{path.name} does not name the note it reproduces"
        assert f"`{path.name}`" in index, f"{path.name} is missing from experiments/seeds/README.md"


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".yaml" and not is_sweep(p)], ids=lambda p: p.name)
def test_fit_config_trains_one_batch(path: Path, capsys, client):
    extra = ("--model.init_args.sample_length", "20") if "CharRNN" in path.read_text() else ()
    result = run_main(capsys, "fit", "-c", str(path), *ONE_BATCH, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    (experiment,) = [e for e in client.search_experiments() if e.name == "seeds"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and "train_loss" in run.data.metrics


@pytest.mark.parametrize("path", [p for p in FILES if is_sweep(p)], ids=lambda p: p.name)
def test_every_setting_of_a_sweep_trains_one_batch(path: Path, tmp_path: Path, capsys):
    from lit_nn.sweeps.grid import expand, load_sweep

    points = expand(load_sweep(path))
    settings = {p.run_name.rsplit("-s", 1)[0]: p for p in reversed(points)}  # one point per setting
    assert len(settings) >= 2
    for label, point in settings.items():
        config = tmp_path / f"{point.config_hash}.yaml"
        config.write_text(yaml.safe_dump(point.config))
        result = run_main(capsys, "fit", "-c", str(config), "--experiment", "seed_sweeps", *ONE_BATCH)
        assert result.returncode == 0, (label, result.stderr[-3000:])


def built(name: str) -> tuple[list[tuple[int, ...]], tuple[float, float]]:
    """The parameter shapes of a seeds config's model and the normalization of its data."""
    from lit_nn.data import ImageDataModule
    from lit_nn.models import CNN, MLP

    config = yaml.safe_load((SEEDS / name).read_text())
    model = {"lit_nn.models.MLP": MLP, "lit_nn.models.CNN": CNN}[config["model"]["class_path"]]
    network = model(**config["model"]["init_args"])
    data = ImageDataModule(**config["data"]["init_args"])
    return [tuple(p.shape) for p in network.parameters()], data.normalization


def test_selu_mlp_is_the_notes_network_with_the_shape_bug_fixed():
    shapes, normalization = built("selu_mlp.yaml")
    assert shapes == [(128, 784), (128,), (64, 128), (64,), (10, 64), (10,)]  # the notes' Linear(96, 10) is (10, 64)
    assert normalization == (0.5, 0.5)


def test_notes_cnn_has_the_notes_parameter_shapes():
    shapes, normalization = built("mnist_cnn.yaml")
    # what the notes print for their Net(): conv 16x1x3x3, 32x16x3x3, fc 128x800, 64x128, 10x64
    assert shapes == [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (128, 800), (128,), (64, 128), (64,), (10, 64), (10,)]
    assert normalization == (0.0, 1.0)


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".md"], ids=lambda p: p.name)
def test_lab_page_command_parses_and_runs(path: Path, capsys, client):
    import importlib

    from lit_nn.cli.tool_parser import ToolCommand, parse

    argv = lab_command(path)
    assert argv[0] == "lab"
    name = argv[1]
    run = importlib.import_module(f"lit_nn.lab.{name}").run
    parsed = parse(ToolCommand(f"lab {name}", run, "", positional=False), argv[2:])
    shorter = ["--epochs", "1"] if "epochs" in parsed else []  # the page's command, one epoch of training
    result = run_main(capsys, *argv, *shorter)
    assert result.returncode == 0, result.stderr[-3000:]
    (lab,) = [e for e in client.search_experiments() if e.name == "lab"]
    (recorded,) = client.search_runs([lab.experiment_id])
    assert recorded.info.status == "FINISHED"
