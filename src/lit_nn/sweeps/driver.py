"""Running a sweep: from its expanded points to finished MLflow runs and a report.

``lit-nn sweep`` (``lit_nn.cli``) expands a sweep file (``experiments/compare_*.yaml``, format in ``lit_nn.sweeps.grid``) into
points, and trains every point that has no FINISHED run yet as a normal lit-nn run nested
under the sweep's parent MLflow run. A failing or diverging point ends FAILED with its reason
and the sweep goes on; the exit status says how many failed. At the end it writes the
comparison report (``lit-nn compare``). Options of ``lit-nn fit`` given after the file
(``--trainer.max_epochs 3``, ``--trainer.accelerator gpu``) go to every point.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from lit_nn.core.errors import UserError, check_positive, unknown_choice
from lit_nn.core.names import Metric, Tag
from lit_nn.core.signals import SIGTERM_EXIT, SIGTERM_REASON, install_sigterm_handler, sigterm_received
from lit_nn.sweeps.grid import POINT_NAME, Point, SweepSpec, arms, point_settings_count, short_key
from lit_nn.sweeps.plan import DIVERGED, decide, done_summary
from lit_nn.sweeps.sweep import PARENT, Sweep
from lit_nn.sweeps.worker import SKIPPED
from lit_nn.tracking.lifecycle import RunStatus, tracked_run

REPORTS = Path("reports")


def trainer_setting(config: dict[str, Any], extra_args: tuple[str, ...], key: str, default: Any) -> Any:
    """The value of ``trainer.KEY`` for the points: the last ``--trainer.KEY`` given after the
    sweep file, else the sweep config's, else ``default``."""
    value = (config.get("trainer") or {}).get(key, default)
    flag = f"--trainer.{key}"
    for i, arg in enumerate(extra_args):
        if arg == flag and i + 1 < len(extra_args):
            value = extra_args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def needs_own_process(config: dict[str, Any], extra_args: tuple[str, ...]) -> bool:
    """Multi-device or multi-node training re-launches ``sys.argv``: it needs a real ``lit-nn fit``."""
    devices = trainer_setting(config, extra_args, "devices", "auto")
    num_nodes = trainer_setting(config, extra_args, "num_nodes", 1)
    return str(devices).strip() not in ("1", "[0]") or str(num_nodes).strip() != "1"


def visible_gpus() -> tuple[str, ...]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries: those it already lists
    (indices or UUIDs, as many as torch counts), else ``0`` to ``torch.cuda.device_count() - 1``."""
    import torch

    count = torch.cuda.device_count()  # 0 without CUDA (CPU, Apple mps): no pinning
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(d.strip() for d in listed.split(",") if d.strip())[:count]
    return tuple(str(i) for i in range(count))


def sweep_gpus(config: dict[str, Any], extra_args: tuple[str, ...],
               gpus: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The GPUs the sweep's workers share: ``gpus`` (default :func:`visible_gpus`), none when the
    points train on the CPU (``--trainer.accelerator cpu``)."""
    accelerator = str(trainer_setting(config, extra_args, "accelerator", "auto")).strip().lower()
    if accelerator == "cpu":
        return ()
    return visible_gpus() if gpus is None else tuple(gpus)


def gpus_per_point(config: dict[str, Any], extra_args: tuple[str, ...], given: int | None) -> int:
    """GPUs each point gets: ``given`` (``--gpus_per_point``), else the points' ``trainer.devices``
    when it is a count or a list of devices (``2``, ``[0, 1]``), else 1."""
    if given is not None:
        return given
    devices = trainer_setting(config, extra_args, "devices", "auto")
    if isinstance(devices, str) and devices.strip().startswith("["):
        devices = yaml.safe_load(devices)
    if isinstance(devices, list):
        return max(len(devices), 1)
    if isinstance(devices, int) or (isinstance(devices, str) and devices.strip().isdigit()):
        return max(int(devices), 1)
    return 1


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (the options of ``lit-nn sweep`` besides the file and the pass-through flags)."""

    workers: int = 1
    force: bool = False
    report: bool = True
    out: Path | None = None
    process_per_point: bool = False
    threads: int | None = None
    orphan_wait: float = 120.0
    gpus_per_point: int | None = None  # None: the points' trainer.devices when a count, else 1
    gpus: tuple[str, ...] | None = None  # the GPUs the workers share; None: the visible ones
    launcher: str = "local"  # "local": worker processes here; "ray": one Ray task per point
    address: str | None = None  # the Ray cluster (host:port); None: a local Ray started for the sweep
    claim_timeout: float = 300.0  # a point whose claim is not renewed for this long is taken over


LAUNCHERS = ("local", "ray")


def worker_pins(spec: SweepSpec, extra: list[str], options: SweepOptions) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (None: left alone), see :func:`lit_nn.sweeps.runner.pin_gpus`."""
    from lit_nn.sweeps.runner import pin_gpus

    if options.gpus_per_point is not None:
        check_positive("--gpus_per_point", options.gpus_per_point)
    args = tuple(extra)
    gpus = sweep_gpus(spec.config, args, options.gpus)
    if not gpus and options.gpus_per_point is None:
        return [None] * options.workers  # a CPU sweep or a machine without GPUs: nothing to pin
    per_point = gpus_per_point(spec.config, args, options.gpus_per_point)
    if not gpus:  # only with --gpus_per_point given
        cpu = str(trainer_setting(spec.config, args, "accelerator", "auto")).strip().lower() == "cpu"
        why = ("the points train on the CPU (--trainer.accelerator cpu)" if cpu
               else "this machine has none (torch.cuda.device_count() is 0)")
        raise UserError(f"--gpus_per_point {per_point} needs GPUs, but {why}; drop the option")
    if per_point > len(gpus):
        asked = (f"--gpus_per_point {per_point}" if options.gpus_per_point is not None
                 else f"--trainer.devices {trainer_setting(spec.config, args, 'devices', 'auto')}")
        raise UserError(f"each point needs {per_point} GPUs ({asked}) but this machine has {len(gpus)}; "
                        f"use at most {len(gpus)}")
    return pin_gpus(options.workers, gpus, per_point)


def run_sweep(spec: SweepSpec, points: list[Point], extra: list[str], options: SweepOptions,
              worker_command: list[str]) -> int:
    """Run (or resume) a sweep; return the exit status: 0, 1 when points failed, 130 when interrupted
    (143 by SIGTERM).

    ``worker_command`` starts one worker process (``lit_nn.sweeps.worker.serve`` with a fit entry).
    """
    from lit_nn.sweeps.claims import parent_to_create, wait_for_orphans
    from lit_nn.sweeps.runner import run_jobs, summarize_failures
    from lit_nn.sweeps.study import ensure_study, settle_finished_slots, storage_url
    from lit_nn.tracking.store import ensure_experiment, prepare_store, tracking_client

    if options.workers < 1:
        raise UserError(f"--workers must be >= 1, got {options.workers}")
    if options.threads is not None and options.threads < 1:
        raise UserError(f"--threads must be >= 1, got {options.threads}")
    if options.launcher not in LAUNCHERS:
        raise unknown_choice("--launcher", options.launcher, LAUNCHERS)
    if options.address is not None and options.launcher != "ray":
        raise UserError("--address is the Ray cluster's address; it needs --launcher ray")
    if not options.claim_timeout > 0:
        raise UserError(f"--claim_timeout must be > 0 seconds, got {options.claim_timeout}")
    threads = options.threads or (None if os.environ.get("OMP_NUM_THREADS") else 1)
    own_process = options.process_per_point or needs_own_process(spec.config, tuple(extra))
    on_ray = options.launcher == "ray"
    pins = [None] * options.workers if on_ray else worker_pins(spec, extra, options)  # Ray assigns GPUs itself
    out_dir = options.out or REPORTS / spec.name
    uri = prepare_store()
    storage = storage_url(spec.tune, uri, spec.name) if spec.tune is not None else None  # before any write
    check_sweep_outputs(spec, out_dir, tracking_client(uri), storage)
    sweep = Sweep.of(spec, ensure_experiment(spec.experiment, uri))  # creates and migrates the store before workers
    client = tracking_client(uri)
    if spec.tune is not None and storage is not None:
        for label, *_ in arms(spec):
            ensure_study(storage, sweep.study_name(label), spec.tune.objective.direction)
    runs = wait_for_orphans(client, sweep, timeout=options.orphan_wait)
    decisions = decide(points, runs, force=options.force)
    if spec.tune is not None and storage is not None:
        by_id = {r.info.run_id: r for r in runs}
        for label, *_ in arms(spec):
            finished = {d.point.trial: by_id[d.run_id] for d in decisions
                        if d.action == "done" and d.point.label == label and d.run_id in by_id}
            if finished:
                settle_finished_slots(storage, sweep.study_name(label), finished,
                                      spec.tune.objective.metric)
    # points RUNNING elsewhere are tried too: their claim decides (kept while their sweep lives)
    todo = [d.point for d in decisions if d.action in ("run", "running")]
    mode = "a fresh process per point" if own_process else "in-process workers"
    print(_header(spec, points, extra))
    how = (f"one Ray task per point on {options.address or 'a local Ray instance'}" if on_ray else
           f"{min(options.workers, max(len(todo), 1))} worker(s)"
           + (f" (--workers {options.workers}: one per point to run)" if options.workers > max(len(todo), 1) else "")
           + " × "
           f"{threads or os.environ.get('OMP_NUM_THREADS')} thread(s), {mode}")
    print(f"  {len(todo)} to run, {done_summary(decisions)} "
          f"(points another sweep holds are skipped); {how}; logs in {out_dir / 'logs'}", flush=True)
    started = min(options.workers, max(len(todo), 1))
    if any(pin is not None for pin in pins[:started]):
        print("  GPUs (CUDA_VISIBLE_DEVICES): " + ", ".join(f"worker {i} → {pin}"
                                                          for i, pin in enumerate(pins[:started])))
    parent_tags = {Tag.SWEEP: spec.name, Tag.SWEEP_ROLE: PARENT, Tag.GROUP_BY: spec.group_by,
                   Tag.SWEEP_FILE: str(spec.path or ""),
                   Tag.NOTE: spec.description or describe(spec, points)}
    parent_id, _ = parent_to_create(client, sweep)
    with tracked_run(client, sweep.experiment_id, spec.name, parent_tags, run_id=parent_id) as parent_run:
        parent = parent_run.run_id
        sweep = sweep.with_parent(parent)
        client.log_text(parent, yaml.safe_dump(_spec_record(spec, extra), sort_keys=False), "sweep.yaml")
        launch = (_ray_launch(spec, extra, options, threads, uri, worker_command) if on_ray
                  else partial(run_jobs, workers=options.workers, worker_command=worker_command,
                               threads=threads, pins=pins))
        outcomes, completed, seconds = _run(client, sweep, todo, extra, own_process, out_dir, launch, options,
                                            storage)
        if completed and spec.tune is not None and spec.tune.confirm.seeds:
            confirm_todo, confirm_done = _confirm_phase(client, sweep, extra, options)
            todo += confirm_todo
            decisions += confirm_done
            more, completed, more_s = _run(client, sweep, confirm_todo, extra, own_process, out_dir, launch,
                                           options, storage)
            outcomes += more
            seconds += more_s
        failed = [o for o in outcomes if o.status not in (RunStatus.FINISHED, SKIPPED)
                  and not (o.point.phase == "tune" and o.reason.startswith(DIVERGED))]  # a trial's result
        elsewhere = [o for o in outcomes if o.status == SKIPPED]
        report = None
        if completed and options.report:
            report = _report(client, sweep, out_dir)
        if not completed:
            stopped = SIGTERM_REASON if sigterm_received() else "interrupted"
            parent_run.end_as(RunStatus.KILLED, f"{stopped} with {len(todo) - len(outcomes)} point(s) not started")
        elif failed:
            parent_run.end_as(RunStatus.FAILED, f"{len(failed)} of {len(points)} points failed")

    done = sum(d.action == "done" for d in decisions)
    print(f"sweep {spec.name!r}: ran {len(outcomes) - len(elsewhere)} point(s) in {seconds:.0f} s, skipped "
          f"{done} finished" + (f" and {len(elsewhere)} another sweep ran or runs" if elsewhere else "")
          + f"; parent run {parent}")
    if report is not None:
        print(f"report: {report.markdown_path} and {report.figure_path} (also artifacts of the parent run)")
    if not completed:
        print(f"sweep interrupted: {len(todo) - len(outcomes)} point(s) not started; run the same command "
              "again to finish them", file=sys.stderr)
        return SIGTERM_EXIT if sigterm_received() else 130
    if failed:
        print(summarize_failures(outcomes, len(points)), file=sys.stderr, flush=True)
    if report is not None and report.ui:
        print(report.ui)
    return 1 if failed else 0


def check_sweep_outputs(spec: SweepSpec, out_dir: Path, client: Any, storage: str | None) -> None:
    """Every folder the sweep will write, tried before its experiment, its parent run or any point
    exists: the points' logs and the report, the runs' artifacts and checkpoints, the Optuna journal."""
    from lit_nn.core.writable import check_writable
    from lit_nn.sweeps.study import JOURNAL
    from lit_nn.tracking.outputs import STORE_REMEDY, check_run_outputs

    check_writable(out_dir, "the sweep's folder for its logs and report",
                   "give --out FOLDER in a folder you can write, or start the sweep from one")
    check_run_outputs(client, spec.experiment, checkpoints=True)
    if storage is not None and storage.startswith(JOURNAL):
        check_writable(Path(storage[len(JOURNAL):]).parent, "the folder of the sweep's Optuna studies", STORE_REMEDY)


def _confirm_phase(client: Any, sweep: Sweep, extra: list[str], options: SweepOptions
                   ) -> tuple[list[Point], list[Any]]:
    """The confirm points still to run (each spent arm's best setting on the confirm seeds), and
    the decisions for those already FINISHED; says which arms are not ready to confirm."""
    from lit_nn.sweeps.compare import chosen_settings
    from lit_nn.sweeps.grid import expand_confirm
    from lit_nn.sweeps.tune import confirm_seeds

    assert sweep.spec is not None
    spec = sweep.spec
    chosen, pending = chosen_settings(client, sweep)
    points = expand_confirm(spec, chosen, extra)
    decisions = decide(points, sweep.point_runs(client), force=options.force)
    todo = [d.point for d in decisions if d.action in ("run", "running")]
    seeds = confirm_seeds(sweep.tune.confirm.seeds, spec.seeds)
    print(f"confirm: {len(chosen)} arm(s), each its best setting on seeds {seeds[0]}..{seeds[-1]}, judged on the "
          f"test split: {len(todo)} to run, {done_summary(decisions)}", flush=True)
    if pending:
        print(f"confirm: not yet for {', '.join(pending)}: their tuning budget is not spent (a trial failed, or "
              "another sweep still runs it); run the same command again when it is", file=sys.stderr, flush=True)
    return todo, [d for d in decisions if d.action == "done"]


def describe(spec: SweepSpec, points: list[Point]) -> str:
    """What the sweep compares, in one sentence: the parent run's description in the MLflow UI."""
    from lit_nn.sweeps.compare import sweep_order

    data = (spec.config.get("data") or {}).get("init_args") or {}
    dataset = data.get("dataset") or data.get("corpus") or data.get("path")
    values = ", ".join(sweep_order(spec)) or "its points"
    what = values if spec.group_by == POINT_NAME else f"{spec.group_by} ({values})"
    return (f"Compares {what}, {len(spec.seeds)} seed(s) each, {len(points)} runs"
            + (f", on {dataset}" if dataset else "") + f"; sweep file {spec.path or spec.name}.")


def _header(spec: SweepSpec, points: list[Point], extra: list[str]) -> str:
    if spec.tune is not None:
        t = spec.tune
        return (f"sweep {spec.name!r}: {len(points)} tuning trials ({point_settings_count(spec)} arms × "
                f"{t.trials} trials each; sampler {t.sampler}, pruner {t.pruner}, objective "
                f"{t.objective.direction} {t.objective.metric}) in experiment {spec.experiment!r}"
                + (f"; extra args: {' '.join(extra)}" if extra else ""))
    return (f"sweep {spec.name!r}: {len(points)} points ({point_settings_count(spec)} settings × "
            f"{len(spec.seeds)} seed(s)) in experiment {spec.experiment!r}"
            + (f"; extra args: {' '.join(extra)}" if extra else ""))


def _spec_record(spec: SweepSpec, extra: list[str]) -> dict[str, Any]:
    return {"name": spec.name, "experiment": spec.experiment, "config": spec.config, "grid": spec.grid,
            "points": spec.points, "seeds": spec.seeds, "seed_keys": spec.seed_keys,
            "group_by": spec.group_by, "extra_args": list(extra)}


def dry_run(spec: SweepSpec, points: list[Point], extra: list[str], force: bool) -> None:
    """Print the plan from the store as it is; create and change nothing."""
    from lit_nn.tracking.store import local_store_dir, resolve_tracking_uri, tracking_client

    header = _header(spec, points, extra)
    uri = resolve_tracking_uri()
    store = local_store_dir(uri)
    runs: list[Any] = []
    if store is None or (store / "mlflow.db").is_file():
        client = tracking_client(uri)
        experiment = client.get_experiment_by_name(spec.experiment)
        if experiment is not None:
            runs = Sweep.of(spec, experiment.experiment_id).point_runs(client)
    decisions = decide(points, runs, force=force)
    print(header + " — dry run, nothing is started")
    width = max(len(p.run_name) for p in points)
    for d in decisions:
        status = d.note
        if d.action == "running":
            status += " — tried again; it runs only if its claim lapsed (its sweep is gone)"
        word = {"run": "run ", "done": "skip", "running": "skip"}[d.action]
        print(f"  {word} {d.point.run_name:<{width}}  hash {d.point.config_hash}  {status}")
    print(f"{sum(d.action == 'run' for d in decisions)} of {len(points)} point(s) would run")


def _ray_launch(spec: SweepSpec, extra: list[str], options: SweepOptions, threads: int | None, uri: str,
                worker_command: list[str]) -> Callable[..., bool]:
    """The Ray launcher with this sweep's resources per point and the store every node writes to."""
    from lit_nn.sweeps.ray_launcher import run_jobs_on_ray

    gpus = options.gpus_per_point or 0  # Ray gives a task GPUs only when asked: --gpus_per_point K
    env = {"MLFLOW_TRACKING_URI": uri}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return partial(run_jobs_on_ray, worker_command=worker_command, address=options.address,
                   cpus_per_point=float(threads or 1), gpus_per_point=float(gpus), env=env)


def _run(client: Any, sweep: Sweep, todo: list[Point], extra: list[str], own_process: bool, out_dir: Path,
         launch: Callable[..., bool], options: SweepOptions, storage: str | None = None
         ) -> tuple[list[Any], bool, float]:
    """Write each point's config, run the points (under ``sweep``'s parent run) with
    ``launch(jobs, settle)``, print a line per point as it ends."""
    import json

    from lit_nn.sweeps.claims import claim_prefix
    from lit_nn.sweeps.runner import Job, settle_in_mlflow

    assert sweep.spec is not None
    spec, experiment_id = sweep.spec, sweep.experiment_id
    outcomes: list[Any] = []
    start = time.monotonic()
    previous = install_sigterm_handler()  # SIGTERM stops the points as Ctrl-C does (they get SIGTERM)
    try:
        with tempfile.TemporaryDirectory(prefix=f"lit-nn-sweep-{spec.name}-") as tmp:
            jobs = []
            for point in todo:
                config_path = Path(tmp) / f"{point.config_hash}.yaml"
                config_path.write_text(yaml.safe_dump(point.config, sort_keys=False))
                log = (out_dir / "logs" / f"{point.run_name}.log").resolve()
                log.unlink(missing_ok=True)
                job = Job(point, [], log, own_process, experiment_id,
                          claim={"prefix": claim_prefix(sweep, point.config_hash),
                                 "lease_s": options.claim_timeout, "sweep": spec.name,
                                 "config_hash": point.config_hash, "force": options.force})
                tags = {**point.tags(spec.name, sweep.parent_run_id), Tag.SWEEP_ATTEMPT: job.attempt}
                job.argv = ["fit", "-c", str(config_path), "--experiment", spec.experiment,
                            "--run_name", point.run_name, "--tags", json.dumps(tags),
                            "--trainer.enable_progress_bar=false", *extra]
                if point.trial is not None and spec.tune is not None and storage is not None:
                    job.tune = trial_job(sweep, point, storage)
                    job.argv.insert(-len(extra) if extra else len(job.argv), "--test_after_fit=false")
                jobs.append(job)
            width = max((len(p.run_name) for p in todo), default=0)

            def settle(job: Job, result: dict[str, Any]) -> None:
                outcome = settle_in_mlflow(client, sweep, job, result)
                outcomes.append(outcome)
                m = outcome.metrics
                detail = result_line(m) if outcome.status == RunStatus.FINISHED else outcome.reason[:200]
                if job.tune is not None and outcome.status == RunStatus.FINISHED:
                    detail = trial_line(m, spec, result)
                print(f"[{len(outcomes):>{len(str(len(todo)))}}/{len(todo)}] {job.point.run_name:<{width}}  "
                      f"{outcome.status:<8}  {detail}  ({outcome.seconds:.1f} s)", flush=True)

            completed = launch(jobs, settle=settle)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return outcomes, completed, time.monotonic() - start


def trial_job(sweep: Sweep, point: Point, storage: str) -> dict[str, Any]:
    """What a worker needs to run a tuned slot as its arm's Optuna trial (the job's ``tune``).

    Tuning trials never run the test set: the tuning phase chooses on validation data only.
    """
    from dataclasses import asdict

    assert point.trial is not None
    tune = sweep.tune
    return {"storage": storage, "study": sweep.study_name(point.label), "slot": point.trial,
            "params": point.params, "space": {k: asdict(d) for k, d in (point.space or {}).items()},
            "seed": tune.seed, "pruner": tune.pruner, "metric": tune.objective.per_epoch,
            "objective": tune.objective.metric}


def trial_line(metrics: dict[str, float], spec: SweepSpec, result: dict[str, Any]) -> str:
    """A tuning trial's result: its objective, its setting, and pruned or not (never the test set)."""
    assert spec.tune is not None
    metric = spec.tune.objective.metric
    value = metrics.get(metric, float("nan"))
    params = ", ".join(f"{short_key(k)}={v:g}" if isinstance(v, float) else f"{short_key(k)}={v}"
                       for k, v in (result.get("params") or {}).items())
    state = result.get("trial_state", "?")
    return f"{metric} {value:.4f}  {params}  {state.lower() if isinstance(state, str) else state}"


def result_line(metrics: dict[str, float]) -> str:
    """A finished point's result: its accuracies, or for a language model (no accuracy) its
    validation loss in nats per character."""
    nan = float("nan")
    if Metric.VAL_ACC not in metrics and Metric.VAL_LOSS in metrics:
        return f"val_loss {metrics[Metric.VAL_LOSS]:.4f} nats/char"
    return f"val_acc {metrics.get(Metric.VAL_ACC, nan):.4f}  test_acc {metrics.get(Metric.TEST_ACC, nan):.4f}"


def _report(client: Any, sweep: Sweep, out_dir: Path) -> Any:
    from lit_nn.sweeps.compare import report_sweep, report_tuned_sweep, sweep_order

    assert sweep.spec is not None
    try:
        if sweep.spec.tune is not None:
            return report_tuned_sweep(client, sweep, out_dir)
        return report_sweep(client, sweep, sweep.spec.group_by, sweep_order(sweep.spec), out_dir)
    except UserError as err:
        print(f"report: skipped ({err})", file=sys.stderr)
        return None
