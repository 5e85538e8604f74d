"""``lit-nn lr_find``: Lightning's learning-rate finder (``Tuner.lr_find``) on any fit config.

It trains the config's model from its initial weights for ``--num_training`` steps while the
learning rate grows exponentially from ``--min_lr`` to ``--max_lr`` (stopping early once the loss
exceeds 4× its best), then suggests the lr where the loss falls fastest. One MLflow run in the
experiment ``lr_find`` records it: the curve as ``lr_find.png`` and as metrics (``lr_find_lr`` and
``lr_find_loss`` at step = the finder's step), the suggestion as ``suggested_lr``, the config as
``config.yaml`` and params, the data as dataset inputs. It prints the suggestion and the ``lit-nn fit``
command that uses it. Every option of ``lit-nn fit`` is accepted (``-c FILE``, ``--model.*``,
``--data.*``, ``--trainer.accelerator``...); the model's own divergence check is off during the
search, which drives the loss up on purpose.
"""

from __future__ import annotations

import logging
import math
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lit_nn.core.errors import UserError

EXPERIMENT = "lr_find"
OWN_OPTIONS = ("min_lr", "max_lr", "num_training")


def lr_find_parser() -> Any:
    """``lit-nn fit``'s parser, with the finder's own options added to it: one parser reads both."""
    from lit_nn.cli.train import trainer_parser

    parser = trainer_parser.__wrapped__("fit")  # a parser of its own: the cached one is shared
    parser.prog, parser.description = "lit-nn lr_find", __doc__
    group = parser.add_argument_group("the learning-rate finder")
    group.add_argument("--min_lr", type=float, default=1e-6, help="the learning rate the search starts from")
    group.add_argument("--max_lr", type=float, default=1.0, help="the learning rate it would end at")
    group.add_argument("--num_training", type=int, default=100, help="training steps (one lr each)")
    return parser


def check_options(options: dict[str, Any]) -> None:
    """The finder's options make sense together (jsonargparse checked their types)."""
    if not 0 < options["min_lr"] < options["max_lr"] or not math.isfinite(options["max_lr"]):
        raise UserError(f"--min_lr {options['min_lr']:g} and --max_lr {options['max_lr']:g}: give 0 < min_lr < max_lr")
    if options["num_training"] < 2:
        raise UserError(f"--num_training {options['num_training']} is too few steps; give at least 2 (default 100)")


def config_args(argv: list[str]) -> list[str]:
    """The ``-c FILE`` options of a command line, to repeat them in the suggested fit command."""
    out = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            out += [arg, argv[i + 1]]
        elif arg.startswith("--config="):
            out.append(arg)
    return out


@contextmanager
def quiet_finder() -> Iterator[None]:
    """The finder's own checkpoint round trip is no news to the user: Lightning's info lines about it
    ("Restoring states...", "`Trainer.fit` stopped", "`weights_only` was not set") are dropped; its
    warnings stay."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch.utilities.rank_zero",
                                                    "lightning.pytorch.trainer.connectors.checkpoint_connector")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def run_lr_find(argv: list[str]) -> float | None:
    """Run the finder on the fit command line ``argv``; return the suggested lr (None: no suggestion)."""
    import lightning as L
    import yaml
    from lightning.pytorch.tuner import Tuner

    from lit_nn.cli.config_checks import check_config_file, config_paths
    from lit_nn.cli.parser_errors import parser_error
    from lit_nn.cli.train import TRAINER_DEFAULTS
    from lit_nn.models.base import LitModel
    from lit_nn.tracking.callbacks import flatten_config
    from lit_nn.tracking.datasets import log_data_inputs
    from lit_nn.tracking.figures import plt
    from lit_nn.tracking.logger import MLflowTracker
    from lit_nn.tracking.store import ensure_experiment, prepare_store

    parser = lr_find_parser()
    if {"-h", "--help"} & set(argv):
        parser.print_help()
        return None
    for path in config_paths(argv):
        check_config_file(path)
    try:
        config = parser.parse_args(argv)
        options = {name: config.pop(name) for name in OWN_OPTIONS}
        check_options(options)
        built = parser.instantiate_classes(config)
    except UserError:
        raise
    except Exception as err:  # jsonargparse's errors, a model's or data's UserError in their chain
        raise parser_error(err, parser, "lit-nn lr_find", argv) from None
    model, data = built.model, built.data
    if not isinstance(model, LitModel):
        raise UserError(f"lr_find tunes a lit-nn model; {type(model).__name__} is not one")
    # the search diverges on purpose at its end: neither divergence check may stop it
    model.check_finite = lambda loss, batch_idx: None
    model.raise_if_exploded = lambda mean_loss: None

    uri = prepare_store()
    ensure_experiment(EXPERIMENT, uri)
    parts = [model.kind, model.hparams.optimizer, getattr(data, "dataset_name", type(data).__name__)]
    tracker = MLflowTracker(EXPERIMENT, run_name="lr_find-" + "-".join(parts), tracking_uri=uri)
    trainer_args = {key: value for key, value in dict(config.trainer).items()
                    if key in ("accelerator", "devices", "precision", "gradient_clip_val", "accumulate_grad_batches",
                               "max_epochs")  # a schedule sizes itself by it (the finder then replaces it)
                    and value is not None}
    with tempfile.TemporaryDirectory(prefix="lit-nn-lr-find-") as root:
        trainer = L.Trainer(**{**TRAINER_DEFAULTS, **trainer_args}, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, default_root_dir=root)
        with quiet_finder():
            finder = Tuner(trainer).lr_find(model, datamodule=data, min_lr=options["min_lr"],
                                            max_lr=options["max_lr"], num_training=options["num_training"],
                                            update_attr=False)
    suggestion = finder.suggestion() if finder is not None else None
    client, run_id = tracker.experiment, tracker.run_id
    config_yaml = parser.dump(config, skip_none=False, skip_check=True, format="yaml")
    tracker.log_hyperparams({**flatten_config(yaml.safe_load(config_yaml)),
                             **{f"lr_find.{k}": v for k, v in options.items()}})
    tracker.log_text(config_yaml, "config.yaml")
    tracker.set_tags({**model.run_tags(), "lr_find": "true"})
    log_data_inputs(client, run_id, data, ("train",))
    lrs, losses = (finder.results.get("lr", []), finder.results.get("loss", [])) if finder else ([], [])
    from mlflow.entities import Metric as MlflowMetric

    points = [(step, lr, loss) for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True))
              if math.isfinite(lr) and math.isfinite(loss)]
    client.log_batch(run_id, metrics=[MlflowMetric(key, value, 0, step) for step, lr, loss in points
                                      for key, value in (("lr_find_lr", lr), ("lr_find_loss", loss))])
    if suggestion is not None:
        tracker.log_metrics({"suggested_lr": suggestion})
    if finder is not None and points:
        figure = finder.plot(suggest=suggestion is not None)
        figure.axes[0].set_title(f"lr_find: {' '.join(parts)} — suggested lr {suggestion:.3g}" if suggestion
                                 else f"lr_find: {' '.join(parts)} — no suggestion")
        tracker.log_figure(figure, "lr_find.png")
        plt.close(figure)
    tracker.finalize("success")
    if suggestion is None:
        print(f"lr_find: no suggestion: the curve has {len(points)} finite points and Lightning's suggestion skips "
              f"the first 10; raise --num_training (run {run_id} has the curve)")
        return None
    command = shlex.join(["lit-nn", "fit", *config_args(argv), "--model.init_args.lr", f"{suggestion:.3g}"])
    print(f"suggested lr: {suggestion:.3g} (loss fell fastest there, over {len(points)} steps from "
          f"{options['min_lr']:g} to {lrs[-1]:.3g})")
    print(f"use it: {command}")
    print(f"mlflow: run {run_id} in experiment '{EXPERIMENT}' ({uri}): lr_find.png, lr_find_loss against lr_find_lr")
    return suggestion
