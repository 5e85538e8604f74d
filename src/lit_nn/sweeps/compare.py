"""Comparisons: read the runs of a sweep (or any experiment) from MLflow and write a report.

What ``lit-nn compare`` and the end of ``lit-nn sweep`` do:

    lit-nn compare experiments/compare_optimizers.yaml     # a sweep, by its file
    lit-nn compare compare_depth                           # a sweep, by its name
    lit-nn compare --experiment mnist --group-by optimizer # any experiment, grouped by a tag

Writes ``reports/<name>/curves.png`` and ``report.md``; for a sweep they are also logged as
artifacts of the sweep's parent run, so they show in the MLflow UI. The sweep runs this
itself when it ends.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError, unknown_choice
from lit_nn.core.names import Artifact, Dynamics, Metric, Tag
from lit_nn.sweeps.grid import POINT_NAME, SweepSpec, load_sweep, settings
from lit_nn.sweeps.grid import arms as arms_of
from lit_nn.sweeps.report import HISTORY_METRICS, ArmTuning, Report, RunData, order_groups, write_report
from lit_nn.sweeps.sweep import PARENT, Sweep, runs_filter
from lit_nn.tracking.datasets import CONTEXT_TAG
from lit_nn.tracking.lifecycle import RunStatus
from lit_nn.tracking.listing import search_all_runs

REPORTS = Path("reports")
VIEW_METRICS = (Metric.VAL_ACC, Metric.VAL_LOSS, Metric.TRAIN_LOSS)  # the UI view's charts, when logged


def group_value(run: Any, group_by: str) -> str | None:
    """The run's value of the grouping key: a tag, else a param (``lr`` finds ``model.lr``)."""
    tags, params = run.data.tags, run.data.params
    if group_by in tags:
        return tags[group_by]
    if group_by in params:
        return params[group_by]
    matches = [v for k, v in params.items() if k.rsplit(".", 1)[-1] == group_by]
    return matches[0] if len(set(matches)) == 1 else None


def to_run_data(client: Any, run: Any, group: str, with_history: bool) -> RunData:
    history = {}
    if with_history:
        for metric in HISTORY_METRICS:
            points = client.get_metric_history(run.info.run_id, metric)
            if points:
                history[metric] = sorted((int(m.step), float(m.value)) for m in points)
    sample = last_sample(client, run.info.run_id) if with_history and Metric.VAL_BPC in run.data.metrics else None
    return RunData(run_id=run.info.run_id, name=run.info.run_name or run.info.run_id[:8], group=group,
                   status=run.info.status, start_ms=run.info.start_time or 0, end_ms=run.info.end_time,
                   metrics=dict(run.data.metrics), params=dict(run.data.params), tags=dict(run.data.tags),
                   history=history, sample=sample, gradients=gradient_history(client, run) if with_history else {})


def gradient_history(client: Any, run: Any) -> dict[str, list[tuple[float, float]]]:
    """Per layer, the run's ``grad_norm/<layer>`` values against epoch (the optimizer step divided by
    the run's ``steps_per_epoch``), by layer name (conv1, conv2, fc1...); empty without them."""
    per_epoch = run.data.tags.get(Tag.STEPS_PER_EPOCH, "")
    if not per_epoch.isdigit() or int(per_epoch) == 0:
        return {}
    out = {}
    for key in sorted(run.data.metrics):
        split = Dynamics.split(key)
        if split and split[0] == Dynamics.GRAD_NORM:
            points = client.get_metric_history(run.info.run_id, key)
            out[split[1]] = sorted((m.step / int(per_epoch), float(m.value)) for m in points)
    return out


def last_sample(client: Any, run_id: str) -> str | None:
    """The text a language-model run generated after its last validation epoch, if it logged any."""
    epochs = sorted(a.path for a in client.list_artifacts(run_id, Artifact.SAMPLES)
                    if a.path.rsplit("/", 1)[-1].startswith("epoch_"))
    if not epochs:
        return None
    with tempfile.TemporaryDirectory(prefix="lit-nn-sample-") as folder:
        return Path(client.download_artifacts(run_id, epochs[-1], folder)).read_text(encoding="utf-8")


def latest_per_point(runs: Sequence[Any]) -> list[Any]:
    """For sweep runs: one run per ``config_hash`` (its latest FINISHED run, else its latest run),
    so a re-run point or a ``--force`` re-run is not counted as an extra seed."""
    best: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = run.data.tags.get(Tag.CONFIG_HASH) or run.info.run_id
        old = best.get(key)
        if old is None or run.info.status == RunStatus.FINISHED or old.info.status != RunStatus.FINISHED:
            best[key] = run
    return list(best.values())


def same_data(runs: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """The runs on the same data as the most recent one (by ``data_source``), and the data sources
    of those left out: one report never mixes, say, the embedded MNIST sample with full MNIST."""
    if not runs:
        return [], []
    latest = max(runs, key=lambda r: r.info.start_time or 0).data.tags.get(Tag.DATA_SOURCE)
    kept = [r for r in runs if r.data.tags.get(Tag.DATA_SOURCE) == latest]
    return kept, [r.data.tags.get(Tag.DATA_SOURCE) or "unknown" for r in runs if r not in kept]


def data_note(runs: Sequence[Any]) -> str | None:
    """Whether the runs trained on the same data, by the digest of their ``training`` dataset input
    (:mod:`lit_nn.tracking.datasets`); None when none of them has one (runs before dataset records)."""
    found: dict[str, tuple[str, str] | None] = {}
    for run in runs:
        inputs = run.inputs.dataset_inputs if getattr(run, "inputs", None) else []
        training = [(d.dataset.name, d.dataset.digest) for d in inputs
                    if any(t.key == CONTEXT_TAG and t.value == "training" for t in d.tags)]
        found[run.info.run_id] = training[0] if training else None
    known = sorted({v for v in found.values() if v is not None})
    if not known:
        return None
    without = sum(v is None for v in found.values())
    recorded = len(found) - without
    if len(known) == 1:
        note = (f"All {recorded} runs with a dataset record trained on the same data: {known[0][0]}, "
                f"training digest {known[0][1]}.")
    else:
        note = (f"The runs trained on {len(known)} different data sets ("
                + ", ".join(f"{name} {digest}" for name, digest in known)
                + "): their differences are not the compared setting's alone.")
    return note + (f" {without} run(s) have no dataset record." if without else "")


def collect_runs(client: Any, experiment_id: str, group_by: str, filter_string: str = "",
                 dedupe_points: bool = False) -> tuple[list[RunData], list[str]]:
    """Ended runs of the experiment as :class:`RunData`; also notes about runs left out."""
    runs = [r for r in search_all_runs(client, [experiment_id], filter_string)
            if r.data.tags.get(Tag.SWEEP_ROLE) != "parent"
            and r.info.status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)]
    if dedupe_points:
        runs = latest_per_point(runs)
    runs, other_data = same_data(runs)
    data, missing = [], []
    for run in runs:
        group = group_value(run, group_by)
        if group is None:
            missing.append(run.info.run_name or run.info.run_id[:8])
            continue
        data.append(to_run_data(client, run, group, with_history=run.info.status == RunStatus.FINISHED))
    notes = []
    if (note := data_note(runs)) is not None:
        notes.append(note)
    if other_data:
        notes.append(f"Left out {len(other_data)} run(s) on other data than the latest run's "
                     f"({', '.join(sorted(set(other_data)))}): results on different data are not compared.")
    if missing:
        notes.append(f"Left out {len(missing)} run(s) without a {group_by!r} tag or param: "
                     f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}.")
    return data, notes


def report_sweep(client: Any, sweep: Sweep, group_by: str, order: Sequence[str] | None,
                 out_dir: Path | None = None) -> Report:
    """The report of one sweep: its point runs, grouped; logged to its parent run when it has one."""
    name, parent_run_id = sweep.name, sweep.parent_run_id
    runs, notes = collect_runs(client, sweep.experiment_id, group_by, sweep.filter(), dedupe_points=True)
    if not runs:
        raise UserError(f"sweep {name!r} has no finished or failed runs yet; run it with lit-nn sweep first")
    header = [f"Sweep `{name}`, grouped by `{group_by}`"
              + (f"; parent MLflow run `{parent_run_id}`." if parent_run_id else "."), *notes]
    report = write_report(runs, out_dir or REPORTS / name, title=name, group_by=group_by, order=order,
                          notes=header)
    if parent_run_id:
        client.log_artifact(parent_run_id, str(report.figure_path))
        client.log_artifact(parent_run_id, str(report.markdown_path))
    ui = publish_view(client, sweep.experiment_id, name, sweep.filter(), runs, order,
                      f"{name}: one line per run, colored by {group_by}")
    return replace(report, ui=ui)


def publish_view(client: Any, experiment_id: str, name: str, run_filter: str, runs: Sequence[RunData],
                 order: Sequence[str] | None, title: str) -> str:
    """Color the runs by group as the report's figure does and save the MLflow UI view of them;
    return the line that tells where to open it."""
    from lit_nn.tracking.views import (
        color_runs,
        comparison_state,
        group_colors,
        save_view,
        view_key,
        where_to_view,
    )

    finished = [r for r in runs if r.status == RunStatus.FINISHED]
    groups = order_groups(finished, order)
    groups += [g for g in order_groups(runs, order) if g not in groups]
    color_runs(client, {r.run_id: r.group for r in runs}, group_colors(groups))
    metrics = [m for m in VIEW_METRICS if any(m in r.metrics for r in runs)]
    key = view_key(name)
    save_view(client, experiment_id, key, comparison_state(run_filter, metrics, title))
    return where_to_view(client.tracking_uri, experiment_id, key)


def sweep_order(spec: SweepSpec) -> list[str]:
    """The sweep file's order of group values, so the report lists them as the file does."""
    order = []
    for label, _, varied in settings(spec):
        order.append(label if spec.group_by == POINT_NAME else varied.get(spec.group_by, ""))
    return [o for o in order if o]


def compare(sweep: str | None = None, experiment: str | None = None, group_by: str | None = None,
            out: Path | None = None) -> Report:
    """The report of a sweep (by file or name), or of every run of ``experiment`` grouped by ``group_by``."""
    from lit_nn.tracking.store import tracking_client

    if sweep is None and not (experiment and group_by):
        raise UserError("give a sweep (file or name), or both --experiment NAME and --group_by TAG")
    client = tracking_client()
    spec = None
    if sweep and (sweep.endswith((".yaml", ".yml")) or Path(sweep).is_file()):
        spec = load_sweep(sweep)
    name = spec.name if spec else sweep
    exp_name = experiment or (spec.experiment if spec else name)
    found = client.get_experiment_by_name(exp_name)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise unknown_choice("experiment", exp_name, names or ["(none yet)"])
    exp_id = found.experiment_id
    check_compare_outputs(client, out or REPORTS / (name or exp_name), exp_name if name is not None else None)

    if name is None:
        runs, notes = collect_runs(client, exp_id, group_by)
        if not runs:
            raise UserError(f"experiment {exp_name!r} has no ended runs with a {group_by!r} tag or param")
        report = write_report(runs, out or REPORTS / exp_name, title=exp_name, group_by=group_by,
                              notes=[f"Experiment `{exp_name}`, grouped by `{group_by}`.", *notes])
        ui = publish_view(client, exp_id, f"{exp_name}-by-{group_by}", "", runs, None,
                          f"{exp_name}: one line per run, colored by {group_by}")
        return replace(report, ui=ui)
    parents = search_all_runs(client, [exp_id], runs_filter(name, PARENT))
    if not parents:
        raise UserError(f"no sweep named {name!r} in experiment {exp_name!r}; run lit-nn sweep first, or "
                        "pass --experiment")
    parent = parents[0]
    group_by = group_by or (spec.group_by if spec else parent.data.tags.get(Tag.GROUP_BY))
    if not group_by:
        raise UserError(f"sweep {name!r} has no group_by tag; pass --group_by")
    sweep = Sweep(name, exp_id, spec, parent.info.run_id)
    if spec is not None and spec.tune is not None and group_by == spec.group_by:
        return report_tuned_sweep(client, sweep, out)
    order = sweep_order(spec) if spec and group_by == spec.group_by else None
    return report_sweep(client, sweep, group_by, order, out)


def check_compare_outputs(client: Any, out: Path, sweep_experiment: str | None) -> None:
    """The report folder, and for a sweep the artifact folder its parent run gets the report in,
    tried before any run is read."""
    from lit_nn.core.writable import check_writable
    from lit_nn.tracking.outputs import check_run_outputs

    check_writable(out, "the report folder", "give --out FOLDER in a folder you can write, or run lit-nn compare "
                   "from one")
    if sweep_experiment is not None:
        check_run_outputs(client, sweep_experiment)


def tuning_summary(runs: Sequence[RunData], spec: SweepSpec) -> list[ArmTuning]:
    """Per arm of a tuned sweep: its trials' outcomes (the latest run of each slot) and its best setting."""
    from lit_nn.sweeps.tune import edge_warnings

    assert spec.tune is not None
    objective, maximize = spec.tune.objective.metric, spec.tune.objective.direction == "maximize"
    out = []
    for label, _, _, space in arms_of(spec):
        latest: dict[str, RunData] = {}
        for run in sorted((r for r in runs if r.tags.get(Tag.TUNE_ARM) == label and r.tags.get(Tag.PHASE) == "tune"),
                          key=lambda r: r.start_ms):
            latest[run.tags.get(Tag.TRIAL, "")] = run
        done = [r for r in latest.values() if r.status == RunStatus.FINISHED]
        pruned = [r for r in done if r.tags.get(Tag.TUNE_STATE) == "pruned"]
        scored = [r for r in done if r not in pruned and objective in r.metrics]
        best = (max if maximize else min)(scored, key=lambda r: r.metrics[objective]) if scored else None
        params: dict[str, str] = {}
        values: dict[str, float] = {}
        if best is not None:
            for key in space:
                param = key.replace(".init_args.", ".")
                params[key] = best.params.get(param, "?")
                try:
                    values[key] = float(params[key])
                except ValueError:
                    pass
        out.append(ArmTuning(label, {k: d.describe() for k, d in space.items()}, len(done) - len(pruned),
                             len(pruned), len(latest) - len(done), best, params,
                             best.metrics[objective] if best else None,
                             edge_warnings({k: space[k] for k in values}, values)))
    return out


def report_tuned_sweep(client: Any, sweep: Sweep, out_dir: Path | None = None) -> Report:
    """A tuned sweep's report: the tuning section per arm; with confirm runs, the verdict and its
    figures, then the confirm runs' curves and table; without, each arm's best trial's."""
    from lit_nn.sweeps.report import tuning_markdown

    assert sweep.spec is not None
    spec, t, parent_run_id = sweep.spec, sweep.tune, sweep.parent_run_id
    runs, notes = collect_runs(client, sweep.experiment_id, POINT_NAME, sweep.filter())
    if not runs:
        raise UserError(f"sweep {spec.name!r} has no finished or failed runs yet; run it with lit-nn sweep first")
    summary = tuning_summary(runs, spec)
    confirm = [r for r in runs if r.tags.get(Tag.PHASE) == "confirm"]
    shown = confirm or [a.best for a in summary if a.best is not None]
    if not shown:
        raise UserError(f"sweep {spec.name!r}: no arm has a finished, unpruned trial yet")
    out = out_dir or REPORTS / spec.name
    what = "the confirm runs (each arm's chosen setting on fresh seeds)" if confirm else "each arm's best trial"
    header = [f"Tuned sweep `{spec.name}`" + (f"; parent MLflow run `{parent_run_id}`." if parent_run_id else "."),
              f"Below: {what}, curves and table.", *notes]
    report = write_report(shown, out, title=f"{spec.name}: " + ("confirm runs" if confirm else "best trial per arm"),
                          group_by=POINT_NAME, order=sweep_order(spec), notes=header)
    budget = max(a.finished + a.pruned + a.failed for a in summary)  # as run: --tune.trials may have set it
    sections = [tuning_markdown(t.objective.metric, t.objective.direction, budget, t.sampler, t.pruner, summary)]
    figures = [report.figure_path]
    if confirm:
        sections.append(verdict_section(confirm, summary, runs, spec, out, figures))
    text = report.markdown_path.read_text()
    title, _, rest = text.partition("\n")
    report.markdown_path.write_text(title + "\n\n" + "\n".join(sections) + "\n" + rest)
    if parent_run_id:
        for path in [*figures, report.markdown_path]:
            client.log_artifact(parent_run_id, str(path))
    phase = "confirm" if confirm else "tune"
    ui = publish_view(client, sweep.experiment_id, spec.name, sweep.filter(phase=phase), confirm or runs,
                      sweep_order(spec), f"{spec.name}: the {'confirm runs' if confirm else 'tuning trials'}, colored by arm")
    return replace(report, ui=ui)


def verdict_section(confirm: Sequence[RunData], summary: Sequence[ArmTuning], runs: Sequence[RunData],
                    spec: SweepSpec, out: Path, figures: list[Path]) -> str:
    """The verdict's Markdown, and its two figures written into ``out`` (appended to ``figures``)."""
    import matplotlib.pyplot as plt

    from lit_nn.sweeps.report import sensitivity_figure, tuning_curve_figure, verdict_markdown
    from lit_nn.sweeps.tune import confirm_seeds
    from lit_nn.sweeps.verdict import ArmScore, tukey_pairs, verdict_sentence

    assert spec.tune is not None
    objective = spec.tune.objective
    metric = objective.test_metric
    finished = [r for r in confirm if r.status == RunStatus.FINISHED]
    scores = [ArmScore(a.arm, tuple(r.metrics[metric] for r in finished if r.group == a.arm and metric in r.metrics))
              for a in summary]
    scores = [s for s in scores if len(s.values) >= 2]
    pairs = tukey_pairs(scores, objective.maximize)
    curse: dict[str, float | None] = {}
    for arm in summary:
        again = [r.metrics[objective.metric] for r in finished if r.group == arm.arm and objective.metric in r.metrics]
        if arm.best_score is not None and again:
            fell = arm.best_score - sum(again) / len(again)
            curse[arm.arm] = fell if objective.maximize else -fell
    seeds = confirm_seeds(spec.tune.confirm.seeds, spec.seeds)
    ranked = sorted(scores, key=lambda a: a.mean, reverse=objective.maximize)
    text = verdict_markdown(ranked, pairs, curse, metric, seeds, verdict_sentence(pairs, ranked, metric, len(seeds)),
                            percent=metric.endswith("acc"))
    trials = [r for r in runs if r.tags.get(Tag.PHASE) == "tune" and r.status == RunStatus.FINISHED]
    values = {a.arm: [r.metrics[objective.metric] for r in trials
                      if r.group == a.arm and objective.metric in r.metrics] for a in summary}
    spaces = {label: space for label, _, _, space in arms_of(spec)}
    keys = [k for space in spaces.values() for k in space]
    parameter = "model.lr" if "model.lr" in keys else (keys[0] if keys else None)
    plots = [("tuning_curve.png", tuning_curve_figure(values, objective.metric, objective.maximize))]
    if parameter is not None:
        param = parameter.replace(".init_args.", ".")
        points = {a.arm: [(float(r.params[param]), r.metrics[objective.metric]) for r in trials
                          if r.group == a.arm and param in r.params and objective.metric in r.metrics] for a in summary}
        chosen = {a.arm: float(a.best_params[parameter]) for a in summary if parameter in a.best_params}
        log = any(space[parameter].log for space in spaces.values() if parameter in space)
        plots.append(("sensitivity.png", sensitivity_figure(points, chosen, parameter, objective.metric, log)))
    for name, figure in plots:
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        figures.append(out / name)
    return text


def chosen_settings(client: Any, sweep: Sweep) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each arm's chosen setting (its best unpruned trial's params, typed as in the config), for the
    arms whose whole budget is spent (every slot FINISHED or diverged); and the arms still tuning."""
    import yaml

    from lit_nn.sweeps.plan import diverged

    assert sweep.spec is not None
    spec = sweep.spec
    runs = sweep.point_runs(client, phase="tune")
    spent = {label: set() for label, *_ in arms_of(spec)}
    for run in runs:
        if run.info.status == RunStatus.FINISHED or diverged(run):
            spent.setdefault(run.data.tags.get(Tag.TUNE_ARM, ""), set()).add(run.data.tags.get(Tag.TRIAL))
    data = [to_run_data(client, r, r.data.tags.get(Tag.TUNE_ARM, ""), with_history=False) for r in runs
            if r.info.status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)]
    chosen, pending = {}, []
    for arm in tuning_summary(data, spec):
        if len(spent.get(arm.arm, ())) < sweep.tune.trials:
            pending.append(arm.arm)
        elif arm.best is not None:
            chosen[arm.arm] = {k: yaml.safe_load(v) for k, v in arm.best_params.items()}
    return chosen, pending
