"""Comparison reports: learning curves and a summary table, one line/row per group.

Pure functions over :class:`RunData` (what ``lit_nn.sweeps.compare`` reads from MLflow), so the
numbers in the table and the lines in the plot can be checked against the runs directly.
A group (an optimizer, a depth...) holds the runs of its seeds; curves show the mean over
seeds at every epoch with a min–max band, and the table shows mean [min, max].

Runs are ranked by a :class:`Score`: the best validation accuracy for classifiers, the best
validation loss in nats per character for language models (the char-RNN logs no accuracy),
whose reports also quote each group's last generated text sample.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

# headless Agg, except in a notebook kernel, whose inline backend (ipykernel sets MPLBACKEND) shows figures
if "inline" not in os.environ.get("MPLBACKEND", ""):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lit_nn.core.names import Metric, Param, Tag  # noqa: E402
from lit_nn.sweeps.verdict import ArmScore, Pair, t_quantile  # noqa: E402
from lit_nn.tracking.lifecycle import RunStatus  # noqa: E402

HISTORY_METRICS = (Metric.VAL_ACC, Metric.VAL_LOSS, Metric.TRAIN_LOSS)  # the per-epoch values a report reads
TITLES = {Metric.VAL_ACC: "validation accuracy", Metric.VAL_LOSS: "validation loss (nats/char)",
          Metric.TRAIN_LOSS: "training loss"}


@dataclass
class RunData:
    """What a report needs of one MLflow run."""

    run_id: str
    name: str
    group: str
    status: str
    start_ms: int
    end_ms: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> (epoch, value)
    sample: str | None = None  # a language model's text generated after its last validation
    gradients: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # layer -> (epoch, grad norm)

    @property
    def wall_s(self) -> float | None:
        return (self.end_ms - self.start_ms) / 1000 if self.end_ms and self.start_ms else None

    @property
    def epochs(self) -> int:
        steps = {s for s, _ in self.history.get(Metric.TRAIN_LOSS, [])} or {s for s, _ in self.history.get(Metric.VAL_ACC, [])}
        return len(steps)

    @property
    def best_val_acc(self) -> float | None:
        return self.best(ACCURACY)

    def best(self, score: Score) -> float | None:
        """The run's best value of ``score``'s metric over its epochs (None if it logged none)."""
        values = [v for _, v in self.history.get(score.metric, [])]
        if not values:
            return None
        return max(values) if score.higher_is_better else min(values)


@dataclass(frozen=True)
class Score:
    """What a report ranks runs by: a per-epoch validation metric, its direction, and the table's
    second number (``extra``, computed from a run)."""

    metric: str
    higher_is_better: bool
    what: str  # the metric in words, for the sentences under the table
    extra_column: str
    extra: Callable[[RunData], float | None]
    extra_what: str

    @property
    def column(self) -> str:
        return f"best {self.metric}"


ACCURACY = Score(Metric.VAL_ACC, True, "each run's highest validation accuracy over its epochs",
                 "final test_acc", lambda run: run.metrics.get(Metric.TEST_ACC),
                 "final test_acc is measured once on the test split after training")
NATS_PER_CHAR = Score(Metric.VAL_LOSS, False, "each run's lowest validation loss over its epochs, in nats "
                      "per character (lower is better)", "best bits/char",
                      lambda run: None if (b := run.best(NATS_PER_CHAR)) is None else b / math.log(2),
                      "best bits/char is the same loss in bits (÷ ln 2)")


def score_of(runs: Sequence[RunData]) -> Score:
    """Accuracy when any run logged val_acc (classifiers); else the validation loss, the char-RNN's
    nats per character."""
    if any(Metric.VAL_ACC in r.history or Metric.VAL_ACC in r.metrics for r in runs):
        return ACCURACY
    if any(Metric.VAL_LOSS in r.history for r in runs):
        return NATS_PER_CHAR
    return ACCURACY


@dataclass(frozen=True)
class Stat:
    """Mean and range of one number over a group's runs."""

    mean: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat | None:
        vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not vals:
            return None
        return cls(sum(vals) / len(vals), min(vals), max(vals), len(vals))

    def fmt(self, digits: int = 4) -> str:
        if self.n == 1 or self.lo == self.hi:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


@dataclass(frozen=True)
class GroupRow:
    """One row of the summary table."""

    group: str
    runs: int
    best: Stat | None  # of the score's metric
    extra: Stat | None  # the score's second number (final test_acc for classifiers)
    epochs: Stat | None
    wall_s: Stat | None
    num_parameters: str


def order_groups(runs: Sequence[RunData], order: Sequence[str] | None = None) -> list[str]:
    """Groups in the given order (unknown ones after it); else numeric if all numbers; else by
    when each group first ran (a sweep runs its points in file order)."""
    present = {r.group for r in runs}
    if order:
        known = [g for g in dict.fromkeys(order) if g in present]
        rest = [g for g in present if g not in known]
        return known + order_groups([r for r in runs if r.group in rest])
    try:
        return sorted(present, key=float)
    except ValueError:
        first = {}
        for r in sorted(runs, key=lambda r: r.start_ms):
            first.setdefault(r.group, r.start_ms)
        return sorted(present, key=lambda g: (first[g], g))


def summarize(runs: Sequence[RunData], order: Sequence[str] | None = None, score: Score | None = None
              ) -> list[GroupRow]:
    """One row per group over its FINISHED runs."""
    score = score or score_of(runs)
    finished = [r for r in runs if r.status == RunStatus.FINISHED]
    rows = []
    for group in order_groups(finished, order):
        members = [r for r in finished if r.group == group]
        counts = sorted({r.params.get(Param.NUM_PARAMETERS, "") for r in members} - {"", "None"})
        rows.append(GroupRow(
            group=group, runs=len(members),
            best=Stat.of([r.best(score) for r in members]),
            extra=Stat.of([score.extra(r) for r in members]),
            epochs=Stat.of([r.epochs for r in members]),
            wall_s=Stat.of([r.wall_s for r in members]),
            num_parameters="/".join(f"{int(c):,}" if c.isdigit() else c for c in counts) or "-",
        ))
    return rows


# two-sided 95 % quantiles of Student's t by degrees of freedom (beyond the table: 1.96)
@dataclass(frozen=True)
class Difference:
    """How much better ``better`` scored than ``worse``, paired by seed: mean and 95 % t interval over
    seeds (best val_acc of better minus worse; for a lower-is-better score, worse's minus better's)."""

    better: str
    worse: str
    mean: float
    lo: float
    hi: float
    seeds: int
    higher_is_better: bool = True

    @property
    def supported(self) -> bool:
        """Whether the seeds support ``better`` > ``worse``: the interval lies above 0."""
        return self.seeds >= 2 and self.lo > 0

    def sentence(self) -> str:
        first, second = (self.better, self.worse) if self.higher_is_better else (self.worse, self.better)
        what = f"`{first}` − `{second}`: {self.mean:+.4f}"
        if self.seeds < 2:
            return f"{what} from one seed: no interval, so no claim"
        verdict = "supported" if self.supported else "not supported (the interval includes 0)"
        return f"{what} [{self.lo:+.4f}, {self.hi:+.4f}] over {self.seeds} paired seeds: {verdict}"


def neighbour_differences(runs: Sequence[RunData], score: Score | None = None) -> list[Difference]:
    """Groups ranked by their mean best score (val_acc unless said otherwise); each neighbouring pair
    compared seed by seed (the same seed means the same initial weights and data order, so the
    pairing removes that noise)."""
    score = score or score_of(runs)
    sign = 1.0 if score.higher_is_better else -1.0  # differences count as "how much better"
    per_group: dict[str, dict[str, float]] = {}
    for r in runs:
        best = r.best(score) if r.status == RunStatus.FINISHED else None
        if best is not None:
            per_group.setdefault(r.group, {})[r.tags.get(Tag.SEED, r.run_id)] = sign * best
    ranked = sorted(per_group, key=lambda g: -sum(per_group[g].values()) / len(per_group[g]))
    out = []
    for better, worse in zip(ranked, ranked[1:], strict=False):
        common = sorted(set(per_group[better]) & set(per_group[worse]))
        diffs = [per_group[better][s] - per_group[worse][s] for s in common]
        if not diffs:
            continue
        mean = sum(diffs) / len(diffs)
        half = 0.0
        if len(diffs) >= 2:
            sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
            half = t_quantile(len(diffs) - 1) * sd / math.sqrt(len(diffs))
        out.append(Difference(better, worse, mean, mean - half, mean + half, len(diffs), score.higher_is_better))
    return out


def verdict_text(differences: Sequence[Difference]) -> str:
    """In words: which part of the ranking by the best score the seeds support (``a > b``: a is better)."""
    if not differences:
        return "Only one group finished: there is nothing to rank."
    if all(d.seeds < 2 for d in differences):
        return ("One seed per group: the table orders the runs but supports no ranking; run more seeds "
                "(`seeds: [0, 1, 2]` in the sweep file) to tell differences from chance.")
    held = [d for d in differences if d.supported]
    if not held:
        return ("No ranking is supported by these seeds: for every neighbouring pair the 95 % interval of "
                "the difference includes 0, so the order in the table may be chance.")
    if len(held) == len(differences):
        chain = " > ".join([f"`{differences[0].better}`", *(f"`{d.worse}`" for d in differences)])
        return f"The ranking {chain} holds: every neighbouring difference is supported at 95 %."
    kept = ", ".join(f"`{d.better}` > `{d.worse}`" for d in held)
    loose = ", ".join(f"`{d.better}` vs `{d.worse}`" for d in differences if not d.supported)
    return (f"Supported at 95 %: {kept}. Not supported: {loose} — those neighbours may be in either "
            "order.")


def curve_data(runs: Sequence[RunData], metric: str, order: Sequence[str] | None = None
               ) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """Per group: epochs and the mean, min and max over its FINISHED runs at each epoch."""
    finished = [r for r in runs if r.status == RunStatus.FINISHED and r.history.get(metric)]
    out = {}
    for group in order_groups(finished, order):
        per_epoch: dict[int, list[float]] = {}
        for run in (r for r in finished if r.group == group):
            for step, value in run.history[metric]:
                per_epoch.setdefault(step, []).append(value)
        steps = sorted(per_epoch)
        out[group] = (steps, [sum(per_epoch[s]) / len(per_epoch[s]) for s in steps],
                      [min(per_epoch[s]) for s in steps], [max(per_epoch[s]) for s in steps])
    return out


def curves_figure(runs: Sequence[RunData], group_by: str, order: Sequence[str] | None = None,
                  title: str = "", score: Score | None = None) -> plt.Figure:
    """The score's metric (``val_acc``, or ``val_loss`` for language models) and ``train_loss``
    against epoch: one line per group, min–max band over seeds."""
    score = score or score_of(runs)
    metrics = (score.metric, Metric.TRAIN_LOSS)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.6))
    cmap = plt.get_cmap("tab10")
    for ax, metric in zip(axes, metrics, strict=True):
        data = curve_data(runs, metric, order)
        for i, (group, (steps, mean, lo, hi)) in enumerate(data.items()):
            color = cmap(i % 10)
            ax.plot(steps, mean, marker="o", markersize=3, color=color, label=group)
            if any(a != b for a, b in zip(lo, hi, strict=True)):
                ax.fill_between(steps, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(TITLES.get(metric, metric))
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = [v for _, m, lo, _ in data.values() for v in (*m, *lo)]
        if metric.endswith("loss") and values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")  # losses of different optimizers span decades
        if data:
            ax.legend(title=group_by, fontsize=8, title_fontsize=8)
    seeds = max((row.runs for row in summarize(runs, order, score)), default=0)
    how = (f"mean of {seeds} seeds per {group_by}, band = min–max" if seeds > 1 else f"one run per {group_by}")
    fig.suptitle(f"{title} ({how})" if title else how)
    fig.tight_layout()
    return fig


def gradient_data(runs: Sequence[RunData], group: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per layer (in the model's order), the group's FINISHED runs' gradient norm: the mean over
    runs at each recorded point (epochs, fractional: the recording steps)."""
    out: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        if run.group != group or run.status != RunStatus.FINISHED:
            continue
        for layer, points in run.gradients.items():
            for epoch, value in points:
                out.setdefault(layer, {}).setdefault(epoch, []).append(value)
    return {layer: (sorted(by), [sum(by[e]) / len(by[e]) for e in sorted(by)]) for layer, by in out.items()}


def gradient_figure(runs: Sequence[RunData], group_by: str, order: Sequence[str] | None = None,
                    title: str = "") -> plt.Figure | None:
    """Per-layer gradient norm against epoch, one panel per group on one log scale, so vanishing
    (or exploding) gradients show side by side; None when no run recorded them (``--dynamics false``)."""
    groups = [g for g in order_groups([r for r in runs if r.gradients], order) if gradient_data(runs, g)]
    if not groups:
        return None
    cols = min(len(groups), 4)
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.3 * rows), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, group in zip(axes.flat, groups, strict=False):
        data = gradient_data(runs, group)
        for i, (layer, (epochs, mean)) in enumerate(data.items()):
            ax.plot(epochs, mean, color=cmap(i / max(len(data) - 1, 1)), label=layer, linewidth=1.2)
        ax.set_yscale("log")
        ax.set_title(f"{group_by} {group}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="layer", title_fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("gradient norm (log)", fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: per-layer gradient norm (mean over seeds)" if title else
                 "per-layer gradient norm (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def markdown(title: str, group_by: str, rows: Sequence[GroupRow], failed: Sequence[RunData],
             notes: Sequence[str] = (), differences: Sequence[Difference] = (), score: Score = ACCURACY,
             samples: Sequence[tuple[str, RunData]] = (), gradients: bool = False) -> str:
    """The report: a summary table, the curves image, a text sample per group (language models),
    and the runs that failed (with why)."""
    lines = [f"# {title}", "", *notes, "" if notes else "",
             f"| {group_by} | runs | {score.column} | {score.extra_column} | epochs | wall time (s) | parameters |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cells = [row.best.fmt(4) if row.best else "-",
                 row.extra.fmt(4) if row.extra else "-",
                 row.epochs.fmt(1) if row.epochs else "-",
                 row.wall_s.fmt(1) if row.wall_s else "-"]
        lines.append(f"| {row.group} | {row.runs} | " + " | ".join(cells) + f" | {row.num_parameters} |")
    lines += ["", f"Numbers are the mean over seeds, [min, max] when they differ. {score.column} is {score.what}; "
              f"{score.extra_what}; wall time covers the whole run (training, validation, test).",
              "", "## What the seeds support", "", verdict_text(differences), ""]
    lines += [f"- {d.sentence()}" for d in differences]
    lines += ["" if differences else "", f"Each line compares neighbours in the ranking by mean {score.column} "
              "(`a` > `b`: a is better): the difference seed by seed, its mean and a 95 % Student-t interval "
              "over the seeds.", "", "![learning curves](curves.png)", ""]
    if gradients:
        lines += ["## Gradients per layer", "", "The norm of each layer's gradient during training (the runs' "
                  "`grad_norm/<layer>` metrics), one panel per group on one log scale: a first layer far below "
                  "the last one is a vanishing gradient, and it learns that much more slowly.", "",
                  "![per-layer gradient norm](gradients.png)", ""]
    if samples:
        lines += ["## Samples", "", "The text each group's first run generated after its last validation "
                  "(the run's `samples/` artifacts hold one per epoch).", ""]
        for group, run in samples:
            fence = _fence(run.sample or "")
            lines += [f"**{group}** (run `{run.name}`):", "", fence + "text", run.sample or "", fence, ""]
    if failed:
        lines += ["## Runs that did not finish", "", "| run | status | reason |", "|---|---|---|"]
        for run in failed:
            reason = run.tags.get(Tag.FAILURE_REASON, "").replace("|", "\\|").replace("\n", " ")[:300]
            lines.append(f"| {run.name} | {run.status} | {reason} |")
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class Report:
    """What ``write_report`` produced."""

    markdown_path: Path
    figure_path: Path
    rows: list[GroupRow]
    figure: plt.Figure
    ui: str | None = None  # where to see the same comparison in the MLflow UI (a URL and how to start it)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``, so the text cannot close it."""
    return "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))


def _seed_number(run: RunData) -> float:
    seed = run.tags.get(Tag.SEED, "")
    return int(seed) if seed.lstrip("-").isdigit() else math.inf


def group_samples(runs: Sequence[RunData], order: Sequence[str] | None = None) -> list[tuple[str, RunData]]:
    """Per group, its first FINISHED run that has a text sample (the lowest seed)."""
    with_sample = [r for r in runs if r.status == RunStatus.FINISHED and r.sample]
    out = []
    for group in order_groups(with_sample, order):
        members = [r for r in with_sample if r.group == group]
        out.append((group, min(members, key=lambda r: (_seed_number(r), r.start_ms))))
    return out


def write_report(runs: Sequence[RunData], out_dir: Path, title: str, group_by: str,
                 order: Sequence[str] | None = None, notes: Sequence[str] = ()) -> Report:
    """Write ``curves.png``, ``gradients.png`` (runs with per-layer dynamics) and ``report.md`` into
    ``out_dir``; return them and the table rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    score = score_of(runs)
    rows = summarize(runs, order, score)
    figure = curves_figure(runs, group_by, order, title, score)
    figure_path = out_dir / "curves.png"
    figure.savefig(figure_path, dpi=110)
    plt.close(figure)
    gradients = gradient_figure(runs, group_by, order, title)
    if gradients is not None:
        gradients.savefig(out_dir / "gradients.png", dpi=110)
        plt.close(gradients)
    failed = [r for r in runs if r.status in (RunStatus.FAILED, RunStatus.KILLED)]
    md_path = out_dir / "report.md"
    md_path.write_text(markdown(title, group_by, rows, failed, notes, neighbour_differences(runs, score), score,
                                group_samples(runs, order), gradients=gradients is not None))
    return Report(md_path, figure_path, rows, figure)


# -- tuned sweeps ---------------------------------------------------------------------------------
@dataclass
class ArmTuning:
    """What an arm's tuning budget bought: its trials' states and its best setting (validation only)."""

    arm: str
    space: dict[str, str]                 # searched key -> its range, as written
    finished: int                         # trials that trained to the end
    pruned: int                           # trials the pruner stopped early (also FINISHED runs)
    failed: int                           # slots whose latest run FAILED or was KILLED
    best: RunData | None
    best_params: dict[str, str]
    best_score: float | None
    warnings: list[str]


def tuning_markdown(objective: str, direction: str, trials: int, sampler: str, pruner: str,
                    arms: Sequence[ArmTuning]) -> str:
    """The tuning section of a tuned sweep's report: per arm, the space, the budget spent and the best setting."""
    lines = [f"## Tuning: {trials} trials per arm, sampler `{sampler}`, pruner `{pruner}`, "
             f"objective {direction} `{objective}` (validation data only)", "",
             "| arm | search space | trials finished | pruned | failed | best " + objective + " | best setting |",
             "|---|---|---:|---:|---:|---:|---|"]
    for a in arms:
        space = "; ".join(f"`{k}` {v}" for k, v in a.space.items()) or "—"
        best = f"{a.best_score:.4f}" if a.best_score is not None else "—"
        setting = ", ".join(f"{k}={v}" for k, v in a.best_params.items()) or "—"
        if a.best is not None:
            setting += f" (run `{a.best.run_id[:8]}`)"
        lines.append(f"| {a.arm} | {space} | {a.finished} | {a.pruned} | {a.failed} | {best} | {setting} |")
    warnings = [f"- {a.arm}: {w}" for a in arms for w in a.warnings]
    if warnings:
        lines += ["", "**Best values at the edge of their range** (the optimum may lie outside it):", *warnings]
    lines += ["", "A best trial's score was chosen among many tries on the same validation data, so it is "
              "biased upwards; it ranks settings within an arm, not arms against each other."]
    return "\n".join(lines) + "\n"


# -- the verdict of a tuned sweep with a confirm phase ---------------------------------------------
def verdict_markdown(scores: Sequence[ArmScore], pairs: Sequence[Pair], curse: dict[str, float | None],
                     metric: str, seeds: Sequence[int], sentence: str, percent: bool) -> str:
    """Per arm the confirm runs' mean and 95 % interval with the winner's curse; every pair with
    Tukey HSD intervals; for each unresolved pair the seeds per arm that would resolve it."""
    def fmt(v: float) -> str:
        return f"{v:.2%}" if percent else f"{v:.4f}"

    def points(v: float) -> str:
        return f"{v * 100:+.2f} points" if percent else f"{v:+.4f}"

    lines = [f"## Verdict: each arm's chosen setting on {len(seeds)} fresh seeds ({seeds[0]}..{seeds[-1]}), "
             f"test `{metric}`", "", sentence, "",
             f"| arm | mean {metric} | 95 % interval | runs | tune-phase best → confirm (validation) |",
             "|---|---:|---|---:|---|"]
    for arm in scores:
        low, high = arm.interval()
        fell = curse.get(arm.arm)
        lines.append(f"| {arm.arm} | {fmt(arm.mean)} | [{fmt(low)}, {fmt(high)}] | {len(arm.values)} | "
                     + (f"{points(-fell)}" if fell is not None else "—") + " |")
    lines += ["", "The last column is the winner's curse: how far the best trial's validation score fell when "
              "its setting ran again on new seeds.", "",
              "| pair (better − worse) | difference | Tukey HSD 95 % interval | resolved | seeds per arm to resolve |",
              "|---|---:|---|---|---|"]
    for p in pairs:
        if p.resolved:
            need = "—"
        elif p.seeds_needed is None:
            need = f"not resolvable: the observed difference ({points(p.difference)}) is too small against the spread"
        else:
            need = f"{p.seeds_needed} (80 % power at the observed spread)"
        lines.append(f"| {p.a} − {p.b} | {points(p.difference)} | [{points(p.low)}, {points(p.high)}] | "
                     f"{'yes' if p.resolved else 'no'} | {need} |")
    lines += ["", "Tukey HSD intervals hold for all pairs at once (equal seeds per arm; all pairs compared). "
              "Seeds to resolve: a two-sample t-test at level 0.05 / pairs with 80 % power, for the observed "
              "difference and pooled spread. Figures: `tuning_curve.png` (expected best validation score "
              "after k trials, Dodge et al. 2019: how hard each arm is to tune), `sensitivity.png` (the "
              "objective against the main searched parameter, the chosen setting marked)."]
    return "\n".join(lines) + "\n"


def tuning_curve_figure(values: dict[str, list[float]], objective: str, maximize: bool) -> plt.Figure:
    """Expected best validation score after k trials, per arm (:func:`lit_nn.sweeps.verdict.expected_best`)."""
    from lit_nn.sweeps.verdict import expected_best

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for arm, scores in values.items():
        if not scores:
            continue
        ks = list(range(1, len(scores) + 1))
        axis.plot(ks, [expected_best(scores, k, maximize) for k in ks], marker="o", markersize=3, label=arm)
    axis.set_xlabel("trials (k)")
    axis.set_ylabel(f"expected best {objective}")
    axis.set_title("How hard each arm is to tune: expected best after k trials")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def sensitivity_figure(trials: dict[str, list[tuple[float, float]]], chosen: dict[str, float], parameter: str,
                       objective: str, log: bool) -> plt.Figure:
    """The objective against the main searched parameter, per arm: trials as points, the chosen one a star."""
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for arm, points in trials.items():
        if not points:
            continue
        line = axis.scatter([p for p, _ in points], [v for _, v in points], s=14, label=arm, alpha=0.8)
        if arm in chosen:
            best = max(points, key=lambda pv: pv[1]) if chosen[arm] is None else \
                min(points, key=lambda pv: abs(pv[0] - chosen[arm]))
            axis.scatter([best[0]], [best[1]], marker="*", s=160, color=line.get_facecolor()[0], edgecolor="black")
    if log:
        axis.set_xscale("log")
    axis.set_xlabel(parameter)
    axis.set_ylabel(objective)
    axis.set_title(f"{objective} against {parameter} (★ the chosen setting)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
