"""``lit-nn fit|validate|test|predict``: LightningCLI with lit-nn's tracking.

Every model, data and Trainer option is a flag or a YAML key (``-c experiments/mnist_cnn.yaml``),
and Trainer flags such as ``--trainer.devices 2 --trainer.strategy ddp`` pass straight through.
Each command is one MLflow run (:mod:`lit_nn.tracking`), with checkpoints beside it and, for
``fit``, a test-set evaluation at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from lit_nn.cli.progress import ProgressBar
from lit_nn.cli.trainer_flags import check_trainer_flags
from lit_nn.compat.jsonargparse import subcommand_parsers
from lit_nn.compat.mlflow import name_refusal
from lit_nn.core.errors import UserError
from lit_nn.core.names import Metric
from lit_nn.data.datamodule import LitDataModule
from lit_nn.data.images import ImageDataModule
from lit_nn.models.base import Classifier, LitModel
from lit_nn.tracking.atomic import AtomicCheckpointIO
from lit_nn.tracking.callbacks import (
    LastCheckpoint,
    MLflowSaveConfig,
    RunCheckpoint,
    RunRecorder,
    find_tracker,
)
from lit_nn.tracking.checkpoints import check_checkpoint_matches
from lit_nn.tracking.dynamics import DEFAULT_EVERY as DYNAMICS_EVERY
from lit_nn.tracking.dynamics import LayerDynamics
from lit_nn.tracking.faults import store_fault
from lit_nn.tracking.interrupts import StopOnSigterm
from lit_nn.tracking.lifecycle import reopen_run
from lit_nn.tracking.logger import MLflowTracker
from lit_nn.tracking.model_export import ModelExport, check_register_name
from lit_nn.tracking.outputs import check_trainer_outputs
from lit_nn.tracking.resume import checkpoint_to_resume, find_run_to_resume
from lit_nn.tracking.store import ensure_experiment, prepare_store, tracking_client
from lit_nn.tracking.system_metrics import SystemMetrics
from lit_nn.tracking.views import where_to_open

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
TRAINER_DEFAULTS = {
    "max_epochs": 10,
    "log_every_n_steps": 50,
    "enable_model_summary": False,
    # the run's params are its whole config, flattened (MLflowSaveConfig); Lightning's own copy of
    # the hyperparameters would repeat them unprefixed, and clash with a resumed run's older ones
    "enable_autolog_hparams": False,
}


class LitNNCLI(LightningCLI):
    """LightningCLI plus lit-nn's tracking: an MLflow run per command, checkpoints beside it,
    and (for ``fit``) a test-set evaluation at the end."""

    def __init__(self, args: list[str] | None = None, run: bool = True, callbacks: Sequence[Callback] = ()) -> None:
        """``callbacks`` join the Trainer's own: live objects that no config can name (a sweep
        worker's Optuna trial, :class:`lit_nn.sweeps.study.TrialPruning`)."""
        self.extra_callbacks = list(callbacks)
        super().__init__(
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=0,
            save_config_callback=MLflowSaveConfig,  # config.yaml and params go to the MLflow run
            auto_configure_optimizers=False,  # models choose their optimizer by name
            parser_kwargs={"default_env": False, "exit_on_error": False,
                           "description": "lit-nn: train and compare neural networks.",
                           # no abbreviations: --trainer.max_epoch is a typo to report, not max_epochs;
                           # given to each subcommand's parser too (jsonargparse < 4.53 does not hand it on)
                           "allow_abbrev": False,
                           **{command: {"allow_abbrev": False} for command in TRAINER_COMMANDS}},
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
        group.add_argument("--log_model", type=bool, default=True,
                           help="fit only: log the best checkpoint as an MLflow model, "
                                "mlflow.pyfunc.load_model('runs:/<run id>/model') (~0.5 s)")
        group.add_argument("--register", type=str | None, default=None,
                           help="fit only: register the logged model in the MLflow Model Registry under this name")
        group.add_argument("--resume", type=str | None, default=None,
                           help="continue MLflow run RUN_ID from its last checkpoint (fit only); "
                                "--ckpt_path last picks the newest unfinished run of the same name")
        group.add_argument("--test_after_fit", type=bool, default=True,
                           help="evaluate the test set at the end of fit, so every run has test_acc")
        # watching a network learn (lit_nn.tracking.dynamics)
        group.add_argument("--dynamics", type=bool, default=True,
                           help="fit only: per-layer grad_norm/, weight_norm/, update_ratio/, act_mean/, act_std/, "
                                "dead_frac/ or saturated_frac/ metrics, and per-epoch histogram heatmaps")
        group.add_argument("--dynamics_every", type=int, default=DYNAMICS_EVERY,
                           help="record the per-layer dynamics every this many optimizer steps")
        group.add_argument("--system_metrics", type=bool, default=False,
                           help="fit only: MLflow's system metrics (system/cpu_utilization_percentage, memory, "
                                "disk, network; GPU with pip install 'lit-nn[gpu]') every 10 s")
        parser.add_argument("--images", type=str, nargs="+", default=None,
                            help="predict only: image files (PNG, JPEG...) of digits to classify instead of "
                                 "the test split; any size, dark on light or light on dark")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:  # jsonargparse re-wraps errors raised by model/data __init__
            from lit_nn.cli.parser_errors import user_error_in

            cause = user_error_in(err)
            if cause is None:
                raise
            raise cause from None

    def before_instantiate_classes(self) -> None:
        # Lightning's default is a full unpickle; lit-nn checkpoints need only tensors and containers
        settings = self._settings()
        if "weights_only" in settings and settings.weights_only is None:
            settings.weights_only = True
        check_register(settings, self.subcommand)
        check_names(settings)

    # -- building the Trainer ---------------------------------------------------------
    def _settings(self) -> Any:
        return self.config[self.subcommand]

    def _default_run_name(self) -> str:
        """``<model kind>-<optimizer>-<dataset>``, e.g. ``mlp-adam-mnist``."""
        model, data = self.model, self.datamodule
        parts = [model.kind, model.hparams.optimizer] if isinstance(model, LitModel) else [type(model).__name__]
        if isinstance(data, LitDataModule):
            parts.append(data.dataset_name)
        return "-".join(parts)

    def instantiate_trainer(self, **kwargs: Any):
        settings = self._settings()
        if settings.get("images") and self.subcommand != "predict":
            raise UserError(f"--images is an option of lit-nn predict, not of lit-nn {self.subcommand}")
        if self.subcommand == "test" and isinstance(self.datamodule, LitDataModule) \
                and not self.datamodule.has_test_split:
            raise UserError(f"lit-nn test evaluates a test split, and {type(self.datamodule).__name__} has none "
                            "(a char-RNN's held-out text is its validation split); use lit-nn validate with the "
                            "same options: its loss is in nats, val_bpc in bits per character")
        trainer_config = {**self.config_init[self.subcommand].get("trainer", {}), **kwargs}
        check_trainer_flags(self.subcommand, trainer_config)
        check_trainer_outputs(self.subcommand, settings.experiment, trainer_config)  # before any run or work
        # lit-nn's, StopOnSigterm first (a SIGTERM stops the stage before the others' end hooks); Lightning's
        # instantiate_trainer adds the config's callback keys
        callbacks: list[Callback] = [StopOnSigterm()]
        resume_id = self._resume() if self.subcommand == "fit" else None
        if settings.get("ckpt_path") and not resume_id:
            check_checkpoint_matches(settings.ckpt_path, self.model)
        tracker = None
        if trainer_config.get("logger") is not False:
            uri = prepare_store()
            ensure_experiment(settings.experiment, uri)
            tracker = MLflowTracker(settings.experiment, run_name=settings.run_name or self._default_run_name(),
                                    run_id=resume_id, tags=dict(settings.tags), tracking_uri=uri)
            trainer_config["logger"] = tracker
            callbacks.append(RunRecorder(log_checkpoint=settings.log_checkpoint))
            if self.subcommand == "fit" and settings.log_model:
                callbacks.append(ModelExport(register=settings.register))
            if self.subcommand == "fit" and settings.dynamics:
                callbacks.append(LayerDynamics(every=settings.dynamics_every))
            if self.subcommand == "fit" and settings.system_metrics:
                callbacks.append(SystemMetrics())
        elif settings.get("register"):
            raise UserError("--register needs the fit's MLflow run, and --trainer.logger false has none")
        if trainer_config.get("enable_progress_bar", True) is not False:
            callbacks.append(ProgressBar())
        if self.subcommand == "fit" and trainer_config.get("enable_checkpointing", True) is not False:
            callbacks += [RunCheckpoint(self.model), LastCheckpoint()]  # best.ckpt, then last.ckpt each epoch
        elif settings.get("register"):
            raise UserError("--register registers the best checkpoint, and --trainer.enable_checkpointing false "
                            "writes none")
        callbacks.extend(self.extra_callbacks)
        configured = trainer_config.get("callbacks") or []  # the config's trainer.callbacks come first
        trainer_config["callbacks"] = [*(configured if isinstance(configured, list) else [configured]), *callbacks]
        trainer_config["plugins"] = with_atomic_checkpoints(trainer_config.get("plugins"), tracker)
        try:
            trainer = super().instantiate_trainer(**trainer_config)
        except (MisconfigurationException, ValueError) as err:  # Trainer's own argument checks
            raise UserError(f"invalid Trainer setting: {err}") from None
        if resume_id is not None:  # nothing left to refuse the resume: only now is the run RUNNING again
            reopen_run(tracking_client(uri), resume_id)
        return trainer

    def _resume(self) -> str | None:
        """For ``--resume RUN_ID`` / ``--ckpt_path last``: find the run, check that its last.ckpt loads and
        fits the model, point fit at it. :meth:`instantiate_trainer` reopens the run once the Trainer is
        built, so a refusal (a truncated checkpoint, a bad Trainer flag) leaves the run as it was."""
        settings = self._settings()
        if not settings.resume and settings.ckpt_path != "last":
            return None
        if self.config_init[self.subcommand].get("trainer", {}).get("logger") is False:
            option = f"--resume {settings.resume}" if settings.resume else "--ckpt_path last"
            raise UserError(f"{option} continues an MLflow run, and --trainer.logger false records none; "
                            "drop --trainer.logger false")
        client = tracking_client()
        experiment = client.get_experiment_by_name(settings.experiment)
        run = find_run_to_resume(client, experiment.experiment_id if experiment else None, settings.experiment,
                                 settings.run_name or self._default_run_name(), settings.resume)
        last = checkpoint_to_resume(client, run)
        check_checkpoint_matches(last, self.model)
        self.config_init[self.subcommand].ckpt_path = str(last)
        print(f"resuming run {run.info.run_id} from {last}")
        return run.info.run_id

    # -- the command ------------------------------------------------------------------
    def fit(self, model: Any, **kwargs: Any) -> None:
        """``trainer.fit``; a tracking server that stopped answering ends it in one sentence."""
        with store_fault_as_error(self.trainer):
            try:
                self.trainer.fit(model, **kwargs)
            except MisconfigurationException:  # Lightning's check of a resumed run's epochs, made once restored
                epoch, max_epochs = self.trainer.current_epoch, self.trainer.max_epochs
                if max_epochs in (None, -1) or epoch <= max_epochs:
                    raise
                raise UserError(f"the resumed run's last checkpoint is from epoch {epoch} (counting from 0); "
                                f"--trainer.max_epochs {self.trainer.max_epochs} ends before it: give more than "
                                f"{epoch + 1} to continue the run") from None

    # -- after the command ------------------------------------------------------------
    def after_fit(self) -> None:
        has_test = not isinstance(self.datamodule, LitDataModule) or self.datamodule.has_test_split
        if self._settings().test_after_fit and not self.trainer.interrupted and has_test:
            with store_fault_as_error(self.trainer):
                self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        describe_finish(self.trainer)

    def after_test(self) -> None:
        describe_finish(self.trainer)

    def predict(self, model: Any, datamodule: Any = None, **kwargs: Any) -> None:
        """``trainer.predict``, then the predictions: a table, the accuracy, ``predictions.csv`` in the run."""
        from lit_nn.cli.predictions import prediction_rows, summary, to_csv
        from lit_nn.data.image_files import ImageFilesDataModule

        if not isinstance(model, Classifier):
            raise UserError(f"lit-nn predict classifies images; a {type(model).__name__} is not a classifier "
                            "(for a char-RNN use lit-nn generate --ckpt CHECKPOINT)")
        images = self._settings().images
        if images:
            trained_on = datamodule if isinstance(datamodule, ImageDataModule) else None
            datamodule = ImageFilesDataModule(images, trained_on.dataset_name if trained_on else "mnist",
                                              normalize=trained_on.normalization if trained_on else None)
        batches = self.trainer.predict(model, datamodule=datamodule, **kwargs)
        classes = datamodule.classes if isinstance(datamodule, LitDataModule) else None
        rows = prediction_rows(batches or [], classes, images or ())
        tracker = find_tracker(self.trainer)
        if tracker is not None:
            tracker.log_text(to_csv(rows), "predictions.csv")
        print(summary(rows), flush=True)
        describe_finish(self.trainer)

    def after_validate(self) -> None:
        describe_finish(self.trainer)


@contextmanager
def store_fault_as_error(trainer: Any) -> Iterator[None]:
    """A fit (or its test) that the tracking store failed under (a server that did not answer for
    the whole retry window, a read-only, locked or full SQLite file, an unreachable database:
    :mod:`lit_nn.tracking.faults`) ends in one sentence, saying where the run's last checkpoint is
    and how to resume it, instead of a traceback. Any other error passes through unchanged."""
    try:
        yield
    except Exception as err:
        tracker = find_tracker(trainer)
        if tracker is None:
            raise
        ckpt = trainer.checkpoint_callback
        last = (Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
                if isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath else None)
        fault = store_fault(err, tracker.tracking_uri, tracker.started_run_id, last)
        if fault is None:
            raise
        raise fault from None


def with_atomic_checkpoints(plugins: Any, tracker: MLflowTracker | None) -> list[Any]:
    """The Trainer's ``plugins`` with :class:`AtomicCheckpointIO`, so that no crash or full disk leaves
    a half-written checkpoint; a checkpoint plugin of the config's own is left to do its job."""
    configured = list(plugins) if isinstance(plugins, list | tuple) else [] if plugins is None else [plugins]
    if any(isinstance(plugin, CheckpointIO) for plugin in configured):
        return configured
    return [*configured, AtomicCheckpointIO(tracker)]


def check_names(settings: Any) -> None:
    """The experiment, run name and tag keys MLflow would refuse once the run exists, refused before."""
    checks = [("--experiment", settings.experiment, False), ("--run_name", settings.get("run_name"), False),
              *(("--tags", key, True) for key in (settings.get("tags") or {}))]
    for what, name, key in checks:
        if name is not None and (refusal := name_refusal(what, str(name), key=key)):
            raise UserError(refusal)


def check_register(settings: Any, command: str) -> None:
    """``--register NAME``: fit only, with the model logged, and a name MLflow accepts."""
    name = settings.get("register")
    if name is None:
        return
    if command != "fit":
        raise UserError(f"--register is an option of lit-nn fit, not of lit-nn {command}")
    if not settings.log_model:
        raise UserError("--register registers the logged model, and --log_model false logs none; drop one of them")
    check_register_name(name)


def describe_finish(trainer: Any) -> None:
    """Print the closing lines of a run: its headline metrics, its run id, where to look."""
    tracker = find_tracker(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)}
    keys = (Metric.TEST_ACC, Metric.TEST_LOSS, Metric.VAL_ACC, Metric.VAL_LOSS, Metric.VAL_BPC)
    shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
    if shown:
        rank_zero_info(f"result: {shown}")
    if tracker is not None and tracker.run_id:
        where = where_to_open(tracker.tracking_uri, tracker.experiment_id, tracker.run_id)
        rank_zero_info(f"mlflow: run {tracker.run_id} in experiment '{tracker.experiment_name}' "
                       f"({tracker.tracking_uri}); {where}")


class _ParserBuilt(Exception):  # noqa: N818 - a signal, not an error
    def __init__(self, parser: LightningArgumentParser) -> None:
        self.parser = parser


class _ParserOnly(LitNNCLI):
    """LitNNCLI that stops once its parser is built (parse_arguments is LightningCLI's public hook)."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        raise _ParserBuilt(parser)


@cache
def trainer_parser(command: str = "fit") -> LightningArgumentParser:
    """The parser of ``lit-nn fit`` (or validate/test/predict), exactly as ``LitNNCLI`` builds it,
    without parsing anything.

    The sweep validates every point with the fit parser and derives the options it passes to
    points from it; typo suggestions read the options from it.
    """
    try:
        _ParserOnly(args=[])
    except _ParserBuilt as built:
        return subcommand_parsers(built.parser)[command]
    raise RuntimeError("LitNNCLI did not build a parser")


def fit_parser() -> LightningArgumentParser:
    """The parser of ``lit-nn fit`` (see :func:`trainer_parser`)."""
    return trainer_parser("fit")
