"""The names lit-nn records runs under: metric keys and MLflow tag keys, written once.

Models log metrics by these names, the tracking callbacks and the sweep write tags by them,
and the reports, the runs listing and the MLflow UI read them back. A name spelt twice is a
name that can drift; import it from here.
"""

from __future__ import annotations

from typing import Final


class Metric:
    """Per-epoch metric keys (MLflow step = epoch)."""

    TRAIN_LOSS: Final = "train_loss"
    TRAIN_ACC: Final = "train_acc"
    VAL_LOSS: Final = "val_loss"
    VAL_ACC: Final = "val_acc"
    VAL_BPC: Final = "val_bpc"  # char-RNN: bits per character
    VAL_PPL: Final = "val_ppl"  # char-RNN: perplexity
    TEST_LOSS: Final = "test_loss"
    TEST_ACC: Final = "test_acc"
    BEST_EPOCH: Final = "best_epoch"  # the epoch of the best validation value (best.ckpt's)

    @staticmethod
    def best(monitor: str) -> str:
        """``best_val_acc``, ``best_val_loss``: the best value of the monitored metric over the run."""
        return f"best_{monitor}"


class Tag:
    """MLflow tag keys: MLflow's own (``mlflow.*``) and lit-nn's."""

    # MLflow's standard tags
    RUN_NAME: Final = "mlflow.runName"
    PARENT_RUN_ID: Final = "mlflow.parentRunId"
    GIT_COMMIT: Final = "mlflow.source.git.commit"
    GIT_DIRTY: Final = "git_dirty"  # "true" when the source tree had uncommitted changes
    NOTE: Final = "mlflow.note.content"
    RUN_COLOR: Final = "mlflow.runColor"  # the run's line color in the UI's charts
    EXPERIMENT_KIND: Final = "mlflow.experimentKind"  # "custom_model_development": a training experiment
    VIEW_STATE: Final = "mlflow.sharedViewState."  # + key: a saved UI view, opened by ?viewStateShareKey=key
    # how a run ended and who wrote it
    FAILURE_REASON: Final = "failure_reason"
    HOST: Final = "host"
    PID: Final = "pid"
    RESUMED_AT: Final = "resumed_at"  # ms since the epoch; a resumed run has a new pid
    CHECKPOINT_DIR: Final = "checkpoint_dir"
    COPIED_FROM: Final = "copied_from"  # a copied run's source store (lit-nn runs --copy_to)
    COPIED_FROM_RUN: Final = "copied_from_run"  # its id there: what a second copy looks for
    LAST_CHECKPOINT: Final = "last_checkpoint"
    # what was trained, for grouping and filtering in the UI
    MODEL: Final = "model"
    DATASET: Final = "dataset"
    DATA_SOURCE: Final = "data_source"
    LAB: Final = "lab"
    # where it trained
    DEVICE: Final = "device"  # "cpu", "cuda:0 (NVIDIA H200)", "cuda:0,1 (NVIDIA H200)", "mps"
    CUDA_VISIBLE_DEVICES: Final = "cuda_visible_devices"  # the process's pinning (a sweep worker's GPUs), when set
    # sweeps
    SWEEP: Final = "sweep"
    SWEEP_ROLE: Final = "sweep_role"  # "parent" or "point"
    SWEEP_POINT: Final = "sweep_point"
    SWEEP_ATTEMPT: Final = "sweep_attempt"
    SWEEP_FILE: Final = "sweep_file"
    SEED: Final = "seed"
    CONFIG_HASH: Final = "config_hash"
    GROUP_BY: Final = "group_by"
    # tuned sweeps (lit_nn.sweeps.tune): a trial is a point in one arm's budget
    PHASE: Final = "phase"  # "tune" for a tuning trial
    TUNE_ARM: Final = "tune_arm"  # the arm (setting) the trial belongs to
    TRIAL: Final = "trial"  # the trial's budget slot in its arm, 0 .. trials-1
    TUNE_STATE: Final = "tune_state"  # "pruned" when the pruner stopped the run early
    PRUNED_EPOCH: Final = "pruned_epoch"  # the last epoch a pruned run trained
    # per-layer dynamics (lit_nn.tracking.dynamics): their MLflow step is the optimizer step
    STEPS_PER_EPOCH: Final = "steps_per_epoch"


class Dynamics:
    """Per-layer metrics of :mod:`lit_nn.tracking.dynamics`: ``<quantity>/<layer>`` (``grad_norm/fc1``),
    MLflow step = optimizer step; and the run's histogram artifacts."""

    GRAD_NORM: Final = "grad_norm"
    WEIGHT_NORM: Final = "weight_norm"
    UPDATE_RATIO: Final = "update_ratio"
    ACT_MEAN: Final = "act_mean"
    ACT_STD: Final = "act_std"
    DEAD_FRAC: Final = "dead_frac"
    SATURATED_FRAC: Final = "saturated_frac"
    ARTIFACT_DIR: Final = "dynamics"  # dynamics/histograms.npz, dynamics/<quantity>.png
    HISTOGRAMS_FILE: Final = "histograms.npz"

    @staticmethod
    def key(quantity: str, layer: str) -> str:
        return f"{quantity}/{layer}"

    @staticmethod
    def split(key: str) -> tuple[str, str] | None:
        """(quantity, layer) of a dynamics metric key, None for any other metric."""
        quantity, sep, layer = key.partition("/")
        known = (Dynamics.GRAD_NORM, Dynamics.WEIGHT_NORM, Dynamics.UPDATE_RATIO, Dynamics.ACT_MEAN,
                 Dynamics.ACT_STD, Dynamics.DEAD_FRAC, Dynamics.SATURATED_FRAC)
        return (quantity, layer) if sep and quantity in known else None


class Param:
    """Params lit-nn adds to the flattened run config."""

    NUM_PARAMETERS: Final = "num_parameters"
    DATA_SOURCE: Final = "data_source"


class Artifact:
    """Artifact paths inside a run that other code and users address by name."""

    # the best checkpoint as an MLflow model: mlflow.pyfunc.load_model("runs:/<run id>/model")
    MODEL: Final = "model"
    SAMPLES: Final = "samples"  # a language model's text after each validation: samples/epoch_NNN.txt
