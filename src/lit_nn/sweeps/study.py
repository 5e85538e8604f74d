"""Each arm's Optuna study: where it lives, asking a slot's trial, pruning it, telling its result.

A tuned sweep's worker (:mod:`lit_nn.sweeps.worker`) calls :meth:`TrialSlot.start` after it won
a slot's claim, trains the slot with :class:`TrialPruning` among the Trainer's callbacks, then
:meth:`TrialSlot.finish` tells the study how the run ended. Ask and tell happen in the process
that holds the slot's claim, so the claim is the trial's heartbeat: a trial left RUNNING by a
killed worker belongs to a slot whose claim went stale, and whoever takes the slot over ends
that trial (FAIL, "stale") before asking again. Optuna's own heartbeats run only inside
``study.optimize`` and the journal storage has none.

Where studies live (concurrent writers must be safe): a journal file beside a local SQLite
store (``mlruns/optuna/<sweep>.journal``, Optuna's file lock), or the tracking store's own
PostgreSQL database (``RDBStorage`` over psycopg 3) for a ``postgresql://`` store; a sweep on an
HTTP tracking server names the database with ``tune.storage``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import Callback

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.sweeps.grid import set_dotted
from lit_nn.sweeps.tune import Dimension, TuneSpec
from lit_nn.tracking.callbacks import find_tracker
from lit_nn.tracking.server import OPTUNA_SCHEMA, in_schema

JOURNAL = "journal:"
PRUNED = "pruned"
ADVISORY_LOCK = 0x6C69746E6E  # "litnn": serializes the creation of the studies' tables in PostgreSQL


def storage_url(tune: TuneSpec, tracking_uri: str, sweep: str) -> str:
    """Where the sweep's studies live: ``tune.storage``, else beside the tracking store."""
    from lit_nn.tracking.store import local_store_dir

    if tune.storage:
        return tune.storage
    store = local_store_dir(tracking_uri)
    if store is not None:
        return f"{JOURNAL}{(store / 'optuna' / f'{sweep}.journal').resolve()}"
    scheme, _, rest = tracking_uri.partition("://")
    if scheme in ("postgresql", "postgresql+psycopg"):
        return in_schema(f"postgresql+psycopg://{rest}")  # SQLAlchemy 2's psycopg 3 driver, as MLflow's
    raise UserError(f"a tuned sweep on the tracking server {tracking_uri} needs a database for its Optuna "
                    "studies that every driver reaches: give --tune.storage postgresql+psycopg://USER@HOST:PORT/DB "
                    "(the server's PostgreSQL)")


def _open_postgres(url: str) -> Any:
    """Optuna's RDBStorage on PostgreSQL, created under an advisory lock: Optuna creates its
    schema and tables without one, and two drivers starting together collide ("duplicate key
    value violates unique constraint pg_type_typname_nsp_index")."""
    import optuna
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as lock:
            lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK})
            try:
                if f"search_path%3D{OPTUNA_SCHEMA}" in url:
                    lock.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
                    lock.commit()
                return optuna.storages.RDBStorage(url)
            finally:
                lock.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK})
                lock.commit()
    finally:
        engine.dispose()


def open_storage(url: str) -> Any:
    """An Optuna storage object for :func:`storage_url`'s URL."""
    import optuna

    quiet_optuna()
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        if url.startswith(("postgresql://", "postgresql+")):
            return _open_postgres(url)
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's errors: a wrong URL, a server away
        raise UserError(f"cannot open the Optuna storage {url} ({str(err).splitlines()[0][:200]}); "
                        "check tune.storage") from None


def quiet_optuna() -> None:
    """No "Trial 3 finished with value ..." line per trial, and no ExperimentalWarning for
    PartialFixedSampler (experimental since Optuna 2.4; its constructor is all lit-nn uses)."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def pruner_of(name: str) -> Any:
    """The pruner a ``tune.pruner`` name stands for.

    median: stop a trial whose epoch-``e`` value is worse than the median of the arm's earlier
    trials at ``e``, once two trials finished and after its first epoch (Optuna's MedianPruner).
    hyperband: successive halving brackets over epochs (Li et al. 2018).
    """
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def ensure_study(url: str, name: str, direction: str) -> None:
    """Create the arm's study unless it exists (several drivers may race to create it)."""
    import optuna

    storage = open_storage(url)
    try:
        optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:
        pass  # another driver created it between the check and the create


def distribution(dim: Dimension) -> Any:
    import optuna.distributions as d

    if dim.choices is not None:
        return d.CategoricalDistribution(dim.choices)
    if dim.integer:
        return d.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return d.FloatDistribution(float(dim.low), float(dim.high), log=dim.log)


@dataclass
class TrialSlot:
    """Slot ``slot`` of an arm, as a worker runs it: its Optuna trial and the params it trains."""

    job: dict[str, Any]   # the job's ``tune`` entry (see lit_nn.sweeps.driver)
    study: Any
    trial: Any
    params: dict[str, Any]
    stale_ended: int = 0

    @classmethod
    def start(cls, job: dict[str, Any]) -> TrialSlot:
        """End the slot's stale trials, then ask the arm's study for this slot's trial."""
        import optuna
        from optuna.trial import TrialState

        quiet_optuna()
        space = {k: Dimension(**v) for k, v in job["space"].items()}
        if job.get("params") is not None:  # a fixed design row: the sampler only records it
            sampler = optuna.samplers.PartialFixedSampler(job["params"], optuna.samplers.RandomSampler(job["seed"]))
        else:
            sampler = optuna.samplers.TPESampler(seed=job["seed"] + job["slot"])
        study = optuna.load_study(study_name=job["study"], storage=open_storage(job["storage"]),
                                  sampler=sampler, pruner=pruner_of(job["pruner"]))
        stale = 0
        for old in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if old.user_attrs.get("slot") == job["slot"]:  # its owner lost the slot's claim: it is gone
                study.tell(old.number, state=TrialState.FAIL, skip_if_finished=True)
                stale += 1
        trial = study.ask()
        trial.set_user_attr("slot", job["slot"])
        params = {key: suggest(trial, key, dim) for key, dim in sorted(space.items())}
        return cls(job, study, trial, params, stale)

    def config_file(self, config: Path) -> Path:
        """The slot's run config: the arm's, with this trial's params set (beside ``config``)."""
        data = yaml.safe_load(config.read_text())
        for key, value in self.params.items():
            set_dotted(data, key, value)
        out = config.with_name(f"{config.stem}-trial{self.trial.number}.yaml")
        out.write_text(yaml.safe_dump(data, sort_keys=False))
        return out

    def callbacks(self) -> list[Callback]:
        return [TrialPruning(self.trial, self.job["metric"])]

    def finish(self, run: Any | None) -> str:
        """Tell the study how the slot's run ended; return the trial state's name."""
        return tell_from_run(self.study, self.trial, run, self.job["objective"])


def tell_from_run(study: Any, trial: Any, run: Any | None, objective: str) -> str:
    """Tell ``study`` the end of ``trial`` (a Trial or its number) as its MLflow ``run`` ended:
    COMPLETE with the objective, PRUNED, or FAIL. The run is the record; this mirrors it."""
    from optuna.trial import TrialState

    from lit_nn.tracking.lifecycle import RunStatus

    state, value = TrialState.FAIL, None
    if run is not None and run.info.status == RunStatus.FINISHED:
        if run.data.tags.get(Tag.TUNE_STATE) == PRUNED:
            state = TrialState.PRUNED
        else:
            value = run.data.metrics.get(objective)
            state = TrialState.COMPLETE if value is not None and value == value else TrialState.FAIL
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True)
    return state.name


def settle_finished_slots(url: str, name: str, finished: dict[int, Any], objective: str) -> int:
    """Tell the arm's study the results of slots whose run FINISHED while their trial stayed
    RUNNING (the worker died between the run's end and its tell); return how many were told."""
    import optuna
    from optuna.trial import TrialState

    quiet_optuna()
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    told = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run = finished.get(trial.user_attrs.get("slot"))
        if run is not None:
            tell_from_run(study, trial.number, run, objective)
            told += 1
    return told


def suggest(trial: Any, key: str, dim: Dimension) -> Any:
    """Ask the trial for ``key`` within ``dim`` (a fixed design row comes back as given)."""
    if dim.choices is not None:
        return trial.suggest_categorical(key, dim.choices)
    if dim.integer:
        return trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(key, float(dim.low), float(dim.high), log=dim.log)


class TrialPruning(Callback):
    """Report the per-epoch validation metric to the trial; stop the run when the pruner says so.

    A pruned run stops after that epoch's validation and ends FINISHED, with the tags
    ``tune_state=pruned`` and ``pruned_epoch``: it was stopped on purpose, it did not fail.
    """

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.metric]), epoch)
        if epoch + 1 < (trainer.max_epochs or 0) and self.trial.should_prune():
            trainer.should_stop = True
            tracker = find_tracker(trainer)
            if tracker is not None and trainer.is_global_zero:
                tracker.experiment.set_tag(tracker.run_id, Tag.TUNE_STATE, PRUNED)
                tracker.experiment.set_tag(tracker.run_id, Tag.PRUNED_EPOCH, str(epoch))
