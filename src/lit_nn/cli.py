"""The ``lit-nn`` command.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI subcommands: every model,
data and Trainer option is a flag or a YAML key (``-c experiments/mnist_cnn.yaml``), and
Trainer flags such as ``--trainer.devices 2 --trainer.strategy ddp`` pass straight through.
The other commands (``generate``, ``sweep``, ``compare``, ``lab``, ``runs``) are small
argparse programs in their own modules, dispatched from :func:`main`.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import warnings
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentError
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI

from lit_nn.callbacks import RunCheckpoint, RunRecorder, describe_finish
from lit_nn.checkpoints import check_checkpoint_matches, load_checkpoint
from lit_nn.cli_errors import check_config_file, condense_parser_error, config_paths, option_values
from lit_nn.errors import UserError
from lit_nn.progress import ProgressBar
from lit_nn.resume import find_run_to_resume, reopen_run
from lit_nn.torch_env import skip_failing_nvml_probe
from lit_nn.tracking import MLflowTracker, ensure_experiment, prepare_store

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
# command -> (module with a ``main(argv)``, one-line description)
TOOL_COMMANDS = {
    "generate": ("lit_nn.generate", "sample text from a char-RNN checkpoint"),
    "sweep": ("lit_nn.sweep", "run a comparison grid from experiments/compare_*.yaml"),
    "compare": ("lit_nn.compare", "plot and tabulate the runs of a sweep or experiment"),
    "lab": ("lit_nn.lab", "fundamentals labs: gates, activations, losses, trajectories, scratch"),
    "runs": ("lit_nn.runs", "list runs; mark runs whose process died as KILLED (--cleanup)"),
}
TRAINER_DEFAULTS = {
    "max_epochs": 10,
    "log_every_n_steps": 50,
    "enable_model_summary": False,
}


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"class_path": C, "init_args": {"depth": 2}}}`` → ``{"model": C, "model.depth": 2}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "init_args" and isinstance(value, dict):
            flat.update(flatten_config(value, prefix))
            continue
        name = prefix[:-1] if key == "class_path" else f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif key not in ("config", "__path__"):
            flat[name] = value
    return flat


class LitNNCLI(LightningCLI):
    """LightningCLI plus lit-nn's tracking: an MLflow run per command, checkpoints beside it,
    and (for ``fit``) a test-set evaluation at the end."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        skip_failing_nvml_probe()
        super().__init__(
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=0,
            save_config_callback=None,  # MLFlowLogger on SQLite has no log_dir; RunRecorder logs the config
            auto_configure_optimizers=False,  # models choose their optimizer by name
            parser_kwargs={"default_env": False, "exit_on_error": False,
                           "description": "lit-nn: train and compare neural networks."},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:
        group = parser.add_argument_group("tracking (MLflow)")
        group.add_argument("--experiment", type=str, default="lit-nn",
                           help="MLflow experiment the run is recorded in")
        group.add_argument("--run_name", type=str | None, default=None,
                           help="MLflow run name (default: <model>-<optimizer>-<dataset>)")
        group.add_argument("--tags", type=dict[str, str], default={},
                           help="extra MLflow tags, e.g. '{\"sweep\": \"opt\", \"mlflow.parentRunId\": \"<id>\"}'")
        group.add_argument("--log_checkpoint", type=bool, default=True,
                           help="store the best checkpoint as an MLflow artifact")
        group.add_argument("--resume", type=str | None, default=None,
                           help="continue MLflow run RUN_ID from its last checkpoint (fit only); "
                                "--ckpt_path last picks the newest unfinished run of the same name")
        group.add_argument("--test_after_fit", type=bool, default=True,
                           help="evaluate the test set at the end of fit, so every run has test_acc")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:  # jsonargparse re-wraps errors raised by model/data __init__
            cause = UserError.wrapped_in(err)
            if cause is None:
                raise
            raise cause from None

    def before_instantiate_classes(self) -> None:
        # Lightning's default is a full unpickle; lit-nn checkpoints need only tensors and containers
        settings = self._settings()
        if "weights_only" in settings and settings.weights_only is None:
            settings.weights_only = True

    # -- building the Trainer ---------------------------------------------------------
    def _settings(self) -> Any:
        return self.config[self.subcommand]

    def _default_run_name(self) -> str:
        parts = [getattr(self.model, "kind", type(self.model).__name__.lower())]
        if "optimizer" in self.model.hparams:
            parts.append(self.model.hparams.optimizer)
        if self.datamodule is not None:
            hp = self.datamodule.hparams
            parts.append(str(hp.get("dataset") or hp.get("corpus") or "data"))
        return "-".join(parts)

    def instantiate_trainer(self, **kwargs: Any):
        settings = self._settings()
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        resume_id = self._resume() if self.subcommand == "fit" else None
        if settings.get("ckpt_path") and not resume_id:
            check_checkpoint_matches(settings.ckpt_path, self.model)
        if trainer_config.get("logger") is not False:
            uri = prepare_store()
            ensure_experiment(settings.experiment, uri)
            tracker = MLflowTracker(settings.experiment, run_name=settings.run_name or self._default_run_name(),
                                    run_id=resume_id, tags=dict(settings.tags), tracking_uri=uri)
            trainer_config["logger"] = tracker
            config_dict = self._parser(self.subcommand).dump(settings, skip_none=False, format="yaml")
            params = flatten_config(yaml.safe_load(config_dict))
            callbacks.append(RunRecorder(params, config_dict, log_checkpoint=settings.log_checkpoint,
                                         resumed=resume_id is not None))
        if trainer_config.get("enable_progress_bar", True) is not False:
            callbacks.append(ProgressBar())
        if self.subcommand == "fit" and trainer_config.get("enable_checkpointing", True) is not False:
            monitor = getattr(self.model, "monitor", ("val_acc", "max"))
            callbacks.append(RunCheckpoint(*monitor))
        check_devices(trainer_config)
        try:
            return self._instantiate_trainer(trainer_config, callbacks)
        except (MisconfigurationException, ValueError) as err:  # Trainer's own argument checks
            raise UserError(f"invalid Trainer setting: {err}") from None

    def _resume(self) -> str | None:
        """For ``--resume RUN_ID`` / ``--ckpt_path last``: reopen the run, point fit at its last.ckpt."""
        settings = self._settings()
        if not settings.resume and settings.ckpt_path != "last":
            return None
        from mlflow.tracking import MlflowClient

        uri = prepare_store()
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(settings.experiment)
        run = find_run_to_resume(client, experiment.experiment_id if experiment else None, settings.experiment,
                                 settings.run_name or self._default_run_name(), settings.resume)
        last = reopen_run(client, run)
        check_checkpoint_matches(last, self.model)
        self.config_init[self.subcommand].ckpt_path = str(last)
        print(f"resuming run {run.info.run_id} from {last}")
        return run.info.run_id

    # -- after the command ------------------------------------------------------------
    def after_fit(self) -> None:
        if self._settings().test_after_fit and not self.trainer.interrupted:
            has_test = getattr(self.datamodule, "has_test_split", True)
            if has_test:
                self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        describe_finish(self.trainer)

    def after_test(self) -> None:
        describe_finish(self.trainer)

    def after_validate(self) -> None:
        describe_finish(self.trainer)


def check_devices(trainer_config: dict[str, Any]) -> None:
    """Refuse more CPU processes than cores: DDP on CPU would oversubscribe and crawl (or hang)."""
    accelerator = str(trainer_config.get("accelerator", "auto"))
    devices = trainer_config.get("devices", "auto")
    devices = int(devices) if isinstance(devices, str) and devices.isdigit() else devices
    cores = os.cpu_count() or 1
    cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if cpu and isinstance(devices, int) and devices > cores:
        raise UserError(f"--trainer.devices {devices} asks for more CPU processes than this machine's "
                        f"{cores} cores; use at most {cores}")


def _print_overview() -> None:
    lines = ["usage: lit-nn COMMAND [options]   (lit-nn COMMAND --help for each)", "",
             "training (LightningCLI: -c experiments/<file>.yaml, --model.*, --data.*, --trainer.*):",
             "  fit        train a model, then evaluate it on the test set",
             "  validate   evaluate a checkpoint on the validation split",
             "  test       evaluate a checkpoint on the test split",
             "  predict    predict classes for the test split", "", "tools:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in TOOL_COMMANDS.items()]
    lines += ["", "example: lit-nn fit -c experiments/mnist_cnn.yaml --trainer.max_epochs 5"]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lit-nn`` console script (``argv`` defaults to ``sys.argv[1:]``)."""
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        if not argv or argv[0] in ("-h", "--help"):
            _print_overview()
            return
        command = argv[0]
        if command in TOOL_COMMANDS:
            importlib.import_module(TOOL_COMMANDS[command][0]).main(argv[1:])
        elif command in TRAINER_COMMANDS:
            for config in config_paths(argv):
                check_config_file(config)
            for ckpt in option_values(argv, "--ckpt_path"):
                if ckpt not in ("last", "best", "hpc", "registry"):
                    load_checkpoint(ckpt)  # LightningCLI reads it while parsing: check it first
            try:
                LitNNCLI(args=None if from_console else argv)
            except ArgumentError as err:
                raise UserError(condense_parser_error(str(err))) from None
        else:
            valid = ", ".join([*TRAINER_COMMANDS, *TOOL_COMMANDS])
            raise UserError(f"unknown command {command!r}; valid: {valid}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    finally:
        if from_console:
            # the process ends next: spare the interpreter's final garbage collections over the
            # ~10^6 objects torch, Lightning and MLflow created (seconds on 2 cores)
            gc.freeze()


if __name__ == "__main__":
    main()
