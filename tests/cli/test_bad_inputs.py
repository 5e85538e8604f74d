"""The bad-input catalogue: every user mistake gets one clear sentence, a non-zero exit, no
traceback, and leaves nothing RUNNING in MLflow.

Each row: an id, the ``lit-nn`` arguments (``{tmp}`` is the test's temp dir, ``{cores+1}``
one more device than this machine has cores), and fragments the error line must contain.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from helpers import assert_clean_error, run_main

MLP = ["fit", "-c", "experiments/mnist_mlp.yaml"]
QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar",
         "false"]

CASES = [
    # -- the command line
    ("unknown-command", ["fitt"], ["unknown command 'fitt'", "valid: fit"]),
    ("unknown-optimizer", [*MLP, "--model.init_args.optimizer", "adamm"], ["unknown optimizer 'adamm'", "adam"]),
    ("unknown-activation", [*MLP, "--model.init_args.activation", "relu6"], ["unknown activation 'relu6'", "gelu"]),
    ("unknown-dataset", [*MLP, "--data.init_args.dataset", "mnsit"], ["unknown dataset 'mnsit'", "fashion_mnist"]),
    ("negative-depth", [*MLP, "--model.init_args.depth", "-1"], ["model.depth must be >= 0, got -1"]),
    ("zero-width", [*MLP, "--model.init_args.hidden", "0"], ["model.hidden must be > 0, got 0"]),
    ("zero-lr", [*MLP, "--model.init_args.lr", "0"], ["model.lr: 0 does not conform to restriction v>0 and v<inf"]),
    ("negative-lr", [*MLP, "--model.init_args.lr", "-0.1"], ["model.lr: -0.1 does not conform to restriction v>0"]),
    ("zero-batch", [*MLP, "--data.init_args.batch_size", "0"], ["data.batch_size must be > 0, got 0"]),
    ("dropout-range", [*MLP, "--model.init_args.dropout", "1.5"], ["model.dropout must be in [0, 1), got 1.5"]),
    ("negative-epochs", [*MLP, "--trainer.max_epochs", "-3"], ["invalid Trainer setting", "max_epochs", "-3"]),
    ("too-many-cpu-devices", [*MLP, "--trainer.accelerator", "cpu", "--trainer.devices", "{cores+1}"],
     ["--trainer.devices {cores+1}", "cores"]),
    ("unknown-accelerator", [*MLP, "--trainer.accelerator", "tpux"],
     ["--trainer.accelerator tpux is not an accelerator Lightning knows", "valid here: auto, cpu"]),
    ("unknown-model-class", ["fit", "--model", "lit_nn.models.MLPX"], ["model: module 'lit_nn.models' has no attribute 'MLPX'", "did you mean 'MLP'"]),
    ("unknown-model-option", [*MLP, "--model.init_args.depht", "3"], ["model: Option 'depht' is not accepted", "did you mean 'depth'"]),
    ("wrong-type", [*MLP, "--model.init_args.depth", "abc"], ["model.depth: Expected int. Got value: abc"]),
    # -- config files
    ("yaml-syntax", ["fit", "-c", "{tmp}/syntax.yaml"], ["not valid YAML", "line 5"]),
    ("unknown-config-key", ["fit", "-c", "{tmp}/unknown_key.yaml"], ["does not accept option 'modle.class_path'", "did you mean 'model'"]),
    ("nan-in-yaml", [*MLP, "-c", "{tmp}/nan.yaml"], ["model.init_args.lr is NaN"]),
    ("missing-config", ["fit", "-c", "{tmp}/missing.yaml"], ["missing.yaml does not exist"]),
    ("config-is-directory", ["fit", "-c", "{tmp}"], ["is a directory"]),
    ("config-not-utf8", ["fit", "-c", "{tmp}/binary.yaml"], ["not UTF-8 text", "offset"]),
    ("missing-checkpoint", [*MLP, "--ckpt_path", "{tmp}/none.ckpt"], ["none.ckpt does not exist"]),
    ("not-a-checkpoint", ["test", "-c", "experiments/mnist_mlp.yaml", "--ckpt_path", "{tmp}/syntax.yaml"],
     ["not a readable checkpoint"]),
    ("resume-unknown-run", [*MLP, "--resume", "0123456789abcdef"], ["--resume 0123456789abcdef: no such run"]),
    ("resume-nothing", [*MLP, "--ckpt_path", "last"], ["--ckpt_path last", "no runs to resume"]),
    ("empty-corpus", ["fit", "-c", "experiments/char_rnn.yaml", "--data.init_args.path", "{tmp}/empty.txt", *QUICK],
     ["empty.txt", "empty"]),
    # -- sweeps
    ("sweep-missing-file", ["sweep", "{tmp}/nope.yaml"], ["nope.yaml", "does not exist"]),
    ("sweep-not-a-sweep", ["sweep", "experiments/mnist_mlp.yaml"], ["unknown key", "'seed_everything'", "grid"]),
    ("sweep-zero-workers", ["sweep", "experiments/compare_depth.yaml", "--workers", "0"], ["--workers must be >= 1"]),
    ("sweep-bad-launcher", ["sweep", "experiments/compare_depth.yaml", "--launcher", "slurm"],
     ["unknown --launcher 'slurm'", "local", "ray"]),
    ("sweep-address-without-ray", ["sweep", "experiments/compare_depth.yaml", "--address", "head:6379"],
     ["--address is the Ray cluster's address; it needs --launcher ray"]),
    # -- sampling
    ("generate-missing-checkpoint", ["generate", "--ckpt", "{tmp}/none.ckpt"], ["none.ckpt", "does not exist"]),
    ("generate-classifier-checkpoint", ["generate", "--ckpt", "{tmp}/rnn/mlp.ckpt"], ["not a char-RNN checkpoint"]),
    ("generate-prime-outside-vocab", ["generate", "--ckpt", "{tmp}/rnn/abc.ckpt", "--prime", "abz"], ["'z'"]),
    ("generate-negative-length", ["generate", "--ckpt", "{tmp}/rnn/abc.ckpt", "--length", "-5"],
     ["--length must be > 0, got -5"]),
    # -- labs
    ("lab-unknown", ["lab", "gatez"], ["unknown lab 'gatez'", "did you mean 'gates'"]),
    ("lab-zero-steps", ["lab", "trajectories", "--steps", "0"], ["steps must be > 0, got 0"]),
    ("lab-negative-lr", ["lab", "trajectories", "--lr", "-1"], ["lr must be > 0"]),
    ("lab-unknown-function", ["lab", "trajectories", "--functions", "saddle"], ["unknown function 'saddle'", "round"]),
    # -- issue 28's causes, each through the real command
    ("tpu-not-here", [*MLP, "--trainer.accelerator", "tpu"],
     ["--trainer.accelerator tpu is not available on this machine", "valid here: auto, cpu"]),
    ("experiment-name-too-long", [*MLP, "--experiment", "x" * 600],
     ["--experiment is 600 characters long; MLflow takes at most 500"]),
    ("text-file-as-checkpoint", ["predict", "-c", "experiments/mnist_mlp.yaml", "--ckpt_path", "{tmp}/hello.ckpt"],
     ["hello.ckpt is not a readable checkpoint", "lit-nn fit wrote"]),
    ("state-dict-only-checkpoint", ["test", "-c", "experiments/mnist_mlp.yaml", "--ckpt_path", "{tmp}/weights.pt"],
     ["weights.pt is a torch file but not a lit-nn (Lightning) checkpoint (no pytorch-lightning_version)"]),
    ("test-on-a-char-rnn", ["test", "-c", "experiments/char_rnn.yaml", "--ckpt_path", "{tmp}/rnn/abc_cli.ckpt",
                            "--data.init_args.path", "{tmp}/rnn/abc.txt"],
     ["lit-nn test evaluates a test split", "TextDataModule has none", "use lit-nn validate"]),
    ("resume-unknown-run-without-config", ["fit", "--resume", "0123456789abcdef0123456789abcdef"],
     ["--resume 0123456789abcdef0123456789abcdef: no such run", "lit-nn runs"]),
    ("predict-images-without-checkpoint", ["predict", "--images", "{tmp}/x.png"],
     ["lit-nn predict needs the model to use: --ckpt_path"]),
    ("checkpoint-file-without-config", ["test", "--ckpt_path", "{tmp}/rnn/mlp.ckpt"],
     ["needs the config the checkpoint was trained with (-c FILE), or the run id"]),
    ("lab-start-one-number", ["lab", "trajectories", "--start", "1"], ["--start takes two finite numbers X Y, got [1.0]"]),
    ("server-port-out-of-range", ["server", "--port", "99999", "--folder", "{tmp}/srv"],
     ["--port 99999 is not a TCP port; give one from 1 to 65535"]),
    ("negative-gradient-clip", [*MLP, "--trainer.gradient_clip_val", "-1"],
     ["--trainer.gradient_clip_val -1", "finite number >= 0"]),
    ("epochs-without-end", [*MLP, "--trainer.max_epochs", "-1"], ["--trainer.max_epochs -1 trains forever"]),
    ("lr-nan", [*MLP, "--model.init_args.lr", "nan"], ["model.lr: nan does not conform to restriction v>0 and v<inf"]),
    ("lr-inf", [*MLP, "--model.init_args.lr", "inf"], ["model.lr: inf does not conform to restriction v>0 and v<inf"]),
    ("config-disagrees-with-checkpoint", ["test", "-c", "experiments/mnist_mlp.yaml", "--ckpt_path",
                                          "{tmp}/rnn/abc.ckpt"], ["holds a CharRNN model", "builds a MLP"]),
    ("generate-seed-overflow", ["generate", "--ckpt", "{tmp}/rnn/abc.ckpt", "--seed", "18446744073709551616"],
     ["--seed 18446744073709551616 is out of range"]),
    ("path-starting-with-a-dash", ["fit", "-c", "experiments/char_rnn.yaml", "--data.init_args.path", "-corpus.txt"],
     ["--data.init_args.path -corpus.txt", "joined to its option: --data.init_args.path=-corpus.txt"]),
    ("sweep-file-is-a-directory", ["sweep", "{tmp}"], ["sweep file", "is a directory"]),
    ("sweep-yaml-syntax", ["sweep", "{tmp}/syntax.yaml"], ["sweep file", "not valid YAML", "line 5, column 4"]),
    ("tag-key-mlflow-refuses", [*MLP, "--tags", '{"bad key!": "v"}'], ["--tags key 'bad key!'", "letters, digits"]),
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny char-RNN checkpoint (vocabulary a, b, c) and a classifier checkpoint."""
    import lightning as L

    from lit_nn.data import TextDataModule
    from lit_nn.models import MLP, CharRNN

    folder = tmp_path_factory.mktemp("rnn")
    (folder / "abc.txt").write_text("abcabcabc" * 40)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=1)
    trainer.fit(CharRNN(embedding=4, hidden=8, sample_length=0),
                datamodule=TextDataModule(path=str(folder / "abc.txt"), seq_len=8, batch_size=4))
    trainer.save_checkpoint(folder / "abc.ckpt")
    checkpoint = torch.load(folder / "abc.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "lit_nn.models.CharRNN"  # as lit-nn fit (LightningCLI) saves it
    torch.save(checkpoint, folder / "abc_cli.ckpt")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(MLP(depth=0))
    trainer.save_checkpoint(folder / "mlp.ckpt")
    return folder


@pytest.fixture
def bad_files(tmp_path: Path, checkpoints: Path) -> Path:
    (tmp_path / "rnn").symlink_to(checkpoints)
    (tmp_path / "syntax.yaml").write_text("model:\n  class_path: lit_nn.models.MLP\n  init_args:\n"
                                          "    depth: 2\n   hidden: 3\n")
    (tmp_path / "unknown_key.yaml").write_text("modle:\n  class_path: lit_nn.models.MLP\n")
    (tmp_path / "nan.yaml").write_text("model:\n  init_args:\n    lr: .nan\n")
    (tmp_path / "binary.yaml").write_bytes(b"model: \xff\xfe\n")
    (tmp_path / "empty.txt").write_text("   \n\n")
    (tmp_path / "hello.ckpt").write_text("hello")  # unpickling it once raised KeyError: 101
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "weights.pt")  # a bare torch file
    return tmp_path


def _fill(args: list[str], tmp: Path) -> list[str]:
    cores = os.cpu_count() or 1
    return [a.replace("{tmp}", str(tmp)).replace("{cores+1}", str(cores + 1)) for a in args]


@pytest.mark.parametrize(("args", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error(args, fragments, bad_files, capsys, client):
    result = run_main(capsys, *_fill(args, bad_files))
    assert_clean_error(result, *_fill(fragments, bad_files))
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    running = [r for exp in client.search_experiments() for r in client.search_runs([exp.experiment_id])
               if r.info.status == "RUNNING"]
    assert running == [], "a run was left RUNNING"


def test_non_writable_tracking_store(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the store's folder should be: not writable even for root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlruns/mlflow.db")
    result = run_main(capsys, *MLP, *QUICK)
    assert_clean_error(result, "cannot write the MLflow store", "MLFLOW_TRACKING_URI")


def test_catalogue_is_large_enough():
    assert len(CASES) >= 60


def test_a_server_port_in_use_is_named_before_anything_starts(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_main(capsys, "server", "--port", str(port), "--folder", str(tmp_path / "srv"))
    if "psycopg" in result.stderr:
        pytest.skip("needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    assert_clean_error(result, f"--port {port} on 127.0.0.1 cannot be used", "give a free port")
    assert not (tmp_path / "srv").exists()  # no cluster initialised, nothing started


def test_server_auth_without_its_extra_is_named_before_anything_starts(tmp_path, monkeypatch):
    from lit_nn.core.errors import UserError
    from lit_nn.tracking import server

    monkeypatch.setattr(server, "importlib_missing", lambda module: module == "flask_wtf")
    with pytest.raises(UserError, match=r"--auth true .*Flask-WTF.*pip install 'lit-nn\[server\]'"):
        server.check_plan(server.ServerPlan(folder=tmp_path / "srv", port=5000, auth=True))
    assert not (tmp_path / "srv").exists()


def test_a_constrained_learning_rate_reaches_the_checkpoint_as_a_plain_float():
    """jsonargparse passes ``lr`` as its restricted type (a float subclass); the hyperparameters a
    checkpoint keeps must be plain numbers, or torch.load(weights_only=True) refuses to read them."""
    from lit_nn.cli.train import trainer_parser

    parser = trainer_parser("fit")
    config = parser.parse_args(["-c", "experiments/mnist_mlp.yaml", "--model.init_args.lr", "0.25"])
    model = parser.instantiate_classes(config).model
    assert type(config.model.init_args.lr) is not float  # what the type gives: FinitePositiveFloat
    assert type(model.hparams.lr) is float and model.hparams.lr == 0.25


def test_resuming_with_fewer_epochs_than_trained_is_one_sentence(capsys, client):
    first = run_main(capsys, *MLP, "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "2",
                     "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                     "--test_after_fit", "false", "--log_model", "false")
    assert first.returncode == 0, first.stderr[-2000:]
    run_id = re.search(r"mlflow: run ([0-9a-f]{32})", first.stdout + first.stderr)[1]
    client.set_terminated(run_id, "KILLED")  # as if it had been stopped: resumable
    result = run_main(capsys, *MLP, "--resume", run_id, "--trainer.max_epochs", "1",
                      "--trainer.enable_progress_bar", "false")
    assert_clean_error(result, "last checkpoint is from epoch 2", "--trainer.max_epochs 1", "more than 3")
    assert client.get_run(run_id).info.status != "RUNNING"


def test_a_config_file_whose_name_starts_with_a_dash_is_joined_to_its_option(tmp_path, monkeypatch, capsys):
    """argparse takes ``-cfg.yaml`` after ``-c`` for an option, and once said only "expected one argument"."""
    import shutil

    from helpers import REPO

    shutil.copy(REPO / "experiments" / "mnist_mlp.yaml", tmp_path / "-cfg.yaml")
    monkeypatch.chdir(tmp_path)
    result = run_main(capsys, "fit", "-c", "-cfg.yaml")
    assert_clean_error(result, "-c -cfg.yaml: a value that starts with '-' must be joined to its option: -c=-cfg.yaml")
