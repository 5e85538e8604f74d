"""``lit-nn sweep FILE [--workers N] [--force] [--dry-run] [--model.* / --data.* / --trainer.* ...]``.

Expands a sweep file (``experiments/compare_*.yaml``, format in ``lit_nn.sweep.grid``) into
points, and trains every point that has no FINISHED run yet as a normal lit-nn run nested
under the sweep's parent MLflow run. A failing or diverging point ends FAILED with its reason
and the sweep goes on; the exit status says how many failed. At the end it writes the
comparison report (``lit-nn compare``). Options after the file that the sweep does not know
(``--trainer.max_epochs 3``, ``--trainer.accelerator gpu``) go to every point.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from lit_nn.errors import UserError, unknown_choice

REPORTS = Path("reports")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-nn sweep", allow_abbrev=False,
        description="Run a comparison sweep: every point of the file's grid × seeds as a lit-nn fit run "
                    "nested under one MLflow parent run; finished points are skipped on a re-run.",
        epilog="Any other option (e.g. --trainer.max_epochs 3, --trainer.accelerator gpu --trainer.devices 2) "
               "is passed to every point and is part of each point's config hash.")
    parser.add_argument("sweep_file", help="the sweep file, e.g. experiments/compare_optimizers.yaml")
    parser.add_argument("--workers", type=int, default=1,
                        help="points trained at the same time, each in its own worker process (default 1)")
    parser.add_argument("--force", action="store_true",
                        help="re-run points that already have a FINISHED run with the same config")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the points and which would be skipped; run nothing, change nothing")
    parser.add_argument("--no-report", action="store_true", help="do not write the comparison report at the end")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the report and the per-point logs (default: reports/<sweep name>)")
    parser.add_argument("--process-per-point", action="store_true",
                        help="start a fresh `lit-nn fit` process for every point (automatic when a point "
                             "uses more than one device, since DDP re-launches the command)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per worker (default 1, or $OMP_NUM_THREADS when set; raise it "
                             "for CNNs on an idle many-core machine)")
    parser.add_argument("--orphan-wait", type=float, default=120.0,
                        help="seconds to wait for runs of a just-killed sweep that are still shutting down")
    return parser


# what `lit-nn fit` accepts besides the sweep's own options; the rest is most likely a typo
POINT_OPTIONS = ("--model", "--data", "--trainer", "--seed_everything", "--ckpt_path", "--log_checkpoint",
                 "--test_after_fit", "--optimizer", "--lr_scheduler")


def check_passthrough(extra: list[str], parser: argparse.ArgumentParser) -> None:
    """Refuse an unknown option before it fails every point (``--worker 2`` for ``--workers 2``)."""
    sweep_options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    for arg in extra:
        name = arg.split("=", 1)[0]
        if arg.startswith("--") and not any(name == p or name.startswith(p + ".") for p in POINT_OPTIONS):
            raise unknown_choice("option", name, [*sweep_options, *(f"{p}..." for p in POINT_OPTIONS[:3])])


def needs_own_process(config: dict[str, Any], extra_args: tuple[str, ...]) -> bool:
    """Multi-device or multi-node training re-launches ``sys.argv``: it needs a real ``lit-nn fit``."""
    trainer = config.get("trainer") or {}
    values = {"devices": trainer.get("devices", "auto"), "num_nodes": trainer.get("num_nodes", 1)}
    for i, arg in enumerate(extra_args):
        for key in values:
            flag = f"--trainer.{key}"
            if arg == flag and i + 1 < len(extra_args):
                values[key] = extra_args[i + 1]
            elif arg.startswith(flag + "="):
                values[key] = arg.split("=", 1)[1]
    return str(values["devices"]).strip() not in ("1", "[0]") or str(values["num_nodes"]).strip() != "1"


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) a sweep; exit 1 when points failed, 130 when interrupted."""
    try:
        _main(argv)
    except KeyboardInterrupt:  # outside the point loop (which handles its own): nothing to clean up
        print("\nsweep: interrupted", file=sys.stderr)
        sys.exit(130)


def _main(argv: list[str] | None) -> None:
    from lit_nn.sweep.grid import expand, load_sweep, point_settings_count

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    check_passthrough(extra, parser)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    threads = args.threads or (None if os.environ.get("OMP_NUM_THREADS") else 1)
    spec = load_sweep(args.sweep_file)
    points = expand(spec, extra)
    own_process = args.process_per_point or needs_own_process(spec.config, tuple(extra))
    out_dir = args.out or REPORTS / spec.name
    header = (f"sweep {spec.name!r}: {len(points)} points ({point_settings_count(spec)} settings × "
              f"{len(spec.seeds)} seed(s)) in experiment {spec.experiment!r}"
              + (f"; extra args: {' '.join(extra)}" if extra else ""))
    if args.dry_run:
        _dry_run(spec, points, header, args.force)
        return

    from mlflow.tracking import MlflowClient

    from lit_nn.sweep.resume import decide, get_or_create_parent, sweep_lock, wait_for_orphans
    from lit_nn.tracking import ensure_experiment, prepare_store

    uri = prepare_store()
    experiment_id = ensure_experiment(spec.experiment, uri)  # creates and migrates the store before workers
    client = MlflowClient(uri)
    with sweep_lock(uri, spec.experiment, spec.name):
        runs = wait_for_orphans(client, experiment_id, spec.name, timeout=args.orphan_wait)
        decisions = decide(points, runs, force=args.force)
        todo = [d.point for d in decisions if d.action == "run"]
        mode = "a fresh process per point" if own_process else "in-process workers"
        print(header)
        print(f"  {len(todo)} to run, {sum(d.action == 'done' for d in decisions)} already FINISHED, "
              f"{sum(d.action == 'running' for d in decisions)} running elsewhere; "
              f"{min(args.workers, max(len(todo), 1))} worker(s) × {threads or os.environ.get('OMP_NUM_THREADS')} "
              f"thread(s), {mode}; logs in {out_dir / 'logs'}", flush=True)
        for d in decisions:
            if d.action == "running":
                print(f"  skip {d.point.run_name}: {d.note}")
        parent = get_or_create_parent(client, experiment_id, spec.name, {
            "group_by": spec.group_by, "sweep_file": str(spec.path or ""), "mlflow.note.content":
            spec.description or f"lit-nn sweep {spec.path}: {len(points)} points"})
        client.log_text(parent, yaml.safe_dump(_spec_record(spec, extra), sort_keys=False), "sweep.yaml")
        outcomes, completed, seconds = _run(client, experiment_id, parent, spec, todo, extra, own_process,
                                            out_dir, args.workers, threads)
        failed = [o for o in outcomes if o.status != "FINISHED"]
        report = None
        if completed and not args.no_report:
            report = _report(client, experiment_id, spec, parent, out_dir)
        final = "KILLED" if not completed else ("FAILED" if failed else "FINISHED")
        client.set_terminated(parent, final)

    done = sum(d.action == "done" for d in decisions)
    print(f"sweep {spec.name!r}: ran {len(outcomes)} point(s) in {seconds:.0f} s, skipped {done} finished; "
          f"parent run {parent}")
    if report is not None:
        print(f"report: {report.markdown_path} and {report.figure_path} (also artifacts of the parent run)")
    if not completed:
        print(f"sweep interrupted: {len(todo) - len(outcomes)} point(s) not started; run the same command "
              "again to finish them", file=sys.stderr)
        sys.exit(130)
    if failed:
        listed = "; ".join(f"{o.point.run_name} ({o.status}: {o.reason[:160]})" for o in failed)
        print(f"{len(failed)} of {len(points)} points failed: {listed}", file=sys.stderr)
        sys.exit(1)


def _spec_record(spec: Any, extra: list[str]) -> dict[str, Any]:
    return {"name": spec.name, "experiment": spec.experiment, "config": spec.config, "grid": spec.grid,
            "points": spec.points, "seeds": spec.seeds, "seed_keys": spec.seed_keys,
            "group_by": spec.group_by, "extra_args": list(extra)}


def _dry_run(spec: Any, points: list[Any], header: str, force: bool) -> None:
    """Print the plan from the store as it is; create and change nothing."""
    from lit_nn.sweep.resume import decide, point_runs
    from lit_nn.tracking import local_store_dir, resolve_tracking_uri

    uri = resolve_tracking_uri()
    store = local_store_dir(uri)
    runs: list[Any] = []
    if store is None or (store / "mlflow.db").is_file():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(spec.experiment)
        if experiment is not None:
            runs = point_runs(client, experiment.experiment_id, spec.name)
    decisions = decide(points, runs, force=force)
    print(header + " — dry run, nothing is started")
    width = max(len(p.run_name) for p in points)
    for d in decisions:
        status = d.note
        if d.action == "running":
            status += " — started again only if its process is gone"
        word = {"run": "run ", "done": "skip", "running": "skip"}[d.action]
        print(f"  {word} {d.point.run_name:<{width}}  hash {d.point.config_hash}  {status}")
    print(f"{sum(d.action == 'run' for d in decisions)} of {len(points)} point(s) would run")


def _run(client: Any, experiment_id: str, parent: str, spec: Any, todo: list[Any], extra: list[str],
         own_process: bool, out_dir: Path, workers: int, threads: int | None) -> tuple[list[Any], bool, float]:
    """Write each point's config, run the points, print a line per point as it ends."""
    import json

    from lit_nn.sweep.runner import ATTEMPT_TAG, Job, run_jobs, settle_in_mlflow

    outcomes: list[Any] = []
    start = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix=f"lit-nn-sweep-{spec.name}-") as tmp:
            jobs = []
            for point in todo:
                config_path = Path(tmp) / f"{point.config_hash}.yaml"
                config_path.write_text(yaml.safe_dump(point.config, sort_keys=False))
                log = (out_dir / "logs" / f"{point.run_name}.log").resolve()
                log.unlink(missing_ok=True)
                job = Job(point, [], log, own_process, experiment_id)
                tags = {**point.tags(spec.name, parent), ATTEMPT_TAG: job.attempt}
                job.argv = ["fit", "-c", str(config_path), "--experiment", spec.experiment,
                            "--run_name", point.run_name, "--tags", json.dumps(tags),
                            "--trainer.enable_progress_bar=false", *extra]
                jobs.append(job)
            width = max((len(p.run_name) for p in todo), default=0)

            def settle(job: Job, result: dict[str, Any]) -> None:
                outcome = settle_in_mlflow(client, experiment_id, parent, spec.name, job, result)
                outcomes.append(outcome)
                m = outcome.metrics
                detail = (f"val_acc {m.get('val_acc', float('nan')):.4f}  test_acc {m.get('test_acc', float('nan')):.4f}"
                          if outcome.status == "FINISHED" else outcome.reason[:200])
                print(f"[{len(outcomes):>{len(str(len(todo)))}}/{len(todo)}] {job.point.run_name:<{width}}  "
                      f"{outcome.status:<8}  {detail}  ({outcome.seconds:.1f} s)", flush=True)

            completed = run_jobs(jobs, workers, settle, threads)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return outcomes, completed, time.monotonic() - start


def _report(client: Any, experiment_id: str, spec: Any, parent: str, out_dir: Path) -> Any:
    from lit_nn.compare import report_sweep, sweep_order

    try:
        return report_sweep(client, experiment_id, spec.name, spec.group_by, sweep_order(spec), parent, out_dir)
    except UserError as err:
        print(f"report: skipped ({err})", file=sys.stderr)
        return None
