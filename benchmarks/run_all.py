"""Run every benchmark and write ``BENCHMARKS.md`` (``make bench`` → ``python -m benchmarks``).

Parts, in order: training speed (Trainer vs plain loop vs tutorial loop, progress bar, MLflow
logging), the overhead diagnosis, time-to-accuracy, ``make train`` start to finish, the
char-RNN when ``benchmarks/bench_char_rnn.py`` provides ``run()``, and tuned sweeps (driver
overhead per trial, epochs the pruner saves), and the per-layer dynamics' cost. A part that fails is
reported in the file and makes the exit status 1; the others still run.

``--quick`` runs everything on tiny sizes to check that it works (a minute or two); its
numbers mean nothing and it writes no file unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, fmt_s, log, machine_info, markdown_table, set_threads, verdict

PARTS = ("training", "overhead", "accuracy", "startup", "char_rnn", "tuning", "dynamics")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code, measures nothing")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for every variant (default: torch's, one per core)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 2; more rounds, steadier medians)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per timed fit (default 3, quick 2)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--diagnose", default="mlp", help="models for the overhead diagnosis: mlp, cnn or mlp,cnn")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown file to write (default BENCHMARKS.md at the repository root; none with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; valid: {', '.join(PARTS)}")
    if args.out is None and not args.quick:
        args.out = REPO / "BENCHMARKS.md"
    return args


def char_rnn_module() -> Any | None:
    """``benchmarks.bench_char_rnn`` if it exists and exposes ``run()``."""
    if not (Path(__file__).parent / "bench_char_rnn.py").exists():
        return None
    module = importlib.import_module("benchmarks.bench_char_rnn")
    return module if callable(getattr(module, "run", None)) else None


def _call_run(module: Any, quick: bool, threads: int | None) -> dict[str, Any]:
    """Call the char-RNN ``run`` with whichever knobs it has: throughput only (the issue asks
    ``make bench`` for chars/s, Trainer vs plain loop), and tiny sizes for ``--quick``."""
    params = inspect.signature(module.run).parameters
    wanted: dict[str, Any] = {"quick": quick, "threads": threads, "skip_quality": True}
    if quick:
        wanted.update(steps=3, reps=1)
    return module.run(**{k: v for k, v in wanted.items() if k in params})


def _char_rnn_section(module: Any, result: dict[str, Any]) -> str:
    render_fn = getattr(module, "report", None) or getattr(module, "markdown", None)
    text = render_fn(result) if callable(render_fn) else _generic_report("Char-RNN", result)
    if not text.lstrip().startswith("#"):
        text = "## Char-RNN: Trainer vs plain loop\n\n" + text
    return text


def _generic_report(title: str, result: dict[str, Any]) -> str:
    rows = [[f"`{k}`", _short(v)] for k, v in result.items() if not k.startswith("_")]
    return "\n".join([f"## {title}", "", markdown_table(["measure", "value"], rows)])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 200 else text[:197] + "…"


def run_parts(args: argparse.Namespace, threads: int) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Run the chosen parts; return (results, Markdown sections, errors) by part."""
    from benchmarks import (
        bench_accuracy,
        bench_dynamics,
        bench_overhead,
        bench_startup,
        bench_training,
        bench_tuning,
    )

    results: dict[str, Any] = {}
    sections: dict[str, str] = {}
    errors: dict[str, str] = {}
    chosen = args.only.split(",")
    thread_arg = args.threads  # only passed on to subprocesses when the user chose it
    jobs = {
        "training": (lambda: bench_training.run(args.quick, args.rounds, args.epochs), bench_training.report),
        "overhead": (lambda: bench_overhead.run(args.quick, args.rounds, args.epochs,
                                                models=tuple(args.diagnose.split(","))), bench_overhead.report),
        "accuracy": (lambda: bench_accuracy.run(args.quick), bench_accuracy.report),
        "startup": (lambda: bench_startup.run(args.quick, thread_arg), bench_startup.report),
        "tuning": (lambda: bench_tuning.run(args.quick, args.rounds), bench_tuning.report),
        "dynamics": (lambda: bench_dynamics.run(args.quick, args.rounds), bench_dynamics.report),
    }
    for part in PARTS:
        if part not in chosen:
            continue
        started = time.perf_counter()
        try:
            if part == "char_rnn":
                module = char_rnn_module()
                if module is None:
                    log("char-RNN: benchmarks/bench_char_rnn.py with run() not found; skipped")
                    continue
                log("char-RNN")
                try:
                    result = _call_run(module, args.quick, thread_arg)
                except SystemExit as stop:  # its way of saying "no corpus here"
                    log(f"char-RNN skipped: {stop}")
                    sections[part] = f"## Char-RNN\n\nskipped: {stop}"
                    continue
                section = _char_rnn_section(module, result)
            else:
                run, report = jobs[part]
                result = run()
                section = report(result)
        except Exception:  # noqa: BLE001 - one broken part must not lose the others' numbers
            errors[part] = traceback.format_exc()
            log(f"{part} FAILED:\n{errors[part]}")
            continue
        elapsed = time.perf_counter() - started
        result["_part_s"] = elapsed
        results[part] = result
        sections[part] = section + f"\n\n_(this part took {fmt_s(elapsed)})_"
        log(f"{part} done in {fmt_s(elapsed)}")
    return results, sections, errors


def summary(results: dict[str, Any]) -> str:
    """The targets of the issue in one table."""
    rows: list[list[str]] = []
    for c in results.get("training", {}).get("comparisons", []):
        if c["target"] is None:
            continue
        value = f"{c['value']:.2f}×" if c["unit"] == "×" else f"{c['value']:+.1f} %"
        rows.append([c["label"], value, c["target"], verdict(c["met"])])
    acc = results.get("accuracy", {})
    for key, label in (("mnist", "CNN reaches 98 % val accuracy on the MNIST sample"),
                       ("fashion", "CNN reaches 90 % val accuracy on Fashion-MNIST")):
        r = acc.get(key)
        if r is None:
            continue
        if "skipped" in r:
            rows.append([label, "skipped: not installed", "—", "n/a"])
        else:
            best = f"best {r['best']:.1%}" if r.get("best") is not None else ""
            value = f"{fmt_s(r['seconds'])} (epoch {r['epoch']})" if r["reached"] else f"not reached ({best})"
            rows.append([label, value, f"within {r['max_epochs']} epoch(s) (configured: {r['configured_epochs']})",
                         verdict(r["reached"])])
    tp = results.get("char_rnn", {}).get("throughput") or {}
    if "overhead_ratio" in tp:
        rows.append(["char-RNN: Trainer / plain loop, time per step", f"{tp['overhead_ratio']:.2f}×", "—", "n/a"])
    st = results.get("startup")
    if st:
        mt = st["make_train"]
        setup = mt["phases"][0][1] + mt["phases"][-1][1]
        rows.append(["`make train` start to finish (start-up + exit)",
                     f"{fmt_s(mt['wall_s'])} ({fmt_s(setup)})", "≤ 60 s", verdict(mt["wall_s"] <= 60.0)])
        dist = st.get("official_over_seeds")
        if dist:
            rows.append([f"`make train`'s model on the official MNIST test set (10,000 images), over {dist['n']} seeds",
                         f"mean {dist['mean']:.2%}, min {dist['min']:.2%}, max {dist['max']:.2%}",
                         "mean ≥ 99.0 %, min ≥ 98.8 %", verdict(dist["mean"] >= 0.99 and dist["min"] >= 0.988)])
        commands = st.get("commands") or {}
        helps = {k: v for k, v in commands.items() if k.endswith("--help")}
        if helps:
            slowest = max(helps, key=helps.get)
            rows.append(["slowest `--help` of any command (fit's aside)", f"{fmt_s(helps[slowest])} (`{slowest}`)",
                         "≤ 1.5 s", verdict(helps[slowest] <= 1.5)])
        for name, seconds in commands.items():
            if not name.endswith("--help"):
                rows.append([f"`{name}`", fmt_s(seconds), "≤ 3 s", verdict(seconds <= 3.0)])
    tuning = results.get("tuning")
    if tuning:
        rows.append(["tuned sweep: time per trial / plain sweep point of the same config",
                     f"{tuning['ratio']:.3f}×", "≤ 1.03×", verdict(tuning["ratio"] <= 1.03)])
    if results.get("dynamics"):
        from benchmarks.bench_dynamics import TARGET, targets

        for label, ratio, met in targets(results["dynamics"]):
            rows.append([label, f"{ratio:.3f}× (CPU time)", f"≤ {TARGET:g}×", verdict(met)])
    if not rows:
        return ""
    return "\n".join(["## Targets", "", markdown_table(["what", "measured", "target", "met"], rows)])


def render(args: argparse.Namespace, info: dict[str, Any], results: dict[str, Any], sections: dict[str, str],
           errors: dict[str, str], total_s: float) -> str:
    lines = ["# lit-nn benchmarks", ""]
    if args.quick:
        lines += ["> **QUICK RUN** (`--quick`): tiny data and few repetitions to check that the benchmarks work. "
                  "These numbers measure nothing.", ""]
    lines += [f"Written by `python -m benchmarks{' --quick' if args.quick else ''}` (`make bench`) in "
              f"{fmt_s(total_s)}. Ratios are what to compare across machines; absolute times depend on the CPU. "
              "Measured on a machine shared with other work, every figure is suspect: check the per-round ranges.",
              "",
              markdown_table(["machine", ""], [[k.replace("_", " "), v] for k, v in info.items()]), ""]
    targets = summary(results)
    if targets:
        lines += [targets, ""]
    for part in PARTS:
        if part in sections:
            lines += [sections[part], ""]
        if part in errors:
            lines += [f"## {part}: FAILED", "", "```", errors[part].rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the report, write it to ``--out``; 1 if any part failed."""
    args = parse_args(argv)
    threads = set_threads(args.threads)
    info = machine_info(threads)
    log(f"{info['cores']} cores, torch threads {threads}, load {info['load_average_at_start']}"
        + (" — QUICK RUN" if args.quick else ""))
    started = time.perf_counter()
    results, sections, errors = run_parts(args, threads)
    text = render(args, info, results, sections, errors, time.perf_counter() - started)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        log(f"wrote {args.out}")
    if args.json is not None:
        clean = {part: {k: v for k, v in r.items() if not k.startswith("_")} for part, r in results.items()}
        args.json.write_text(json.dumps({"machine": info, "results": clean, "errors": errors}, indent=1,
                                        default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
