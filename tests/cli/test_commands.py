"""One flag style for every command: generated --help, one-line typo errors with a suggestion,
the habitual spellings still accepted, and every command the README shows still parses."""

from __future__ import annotations

import inspect
import re
import shlex

import pytest

from lit_nn.cli.commands import COMMANDS
from lit_nn.cli.lab_command import lab_parser
from lit_nn.cli.sweep_command import split_fit_options
from lit_nn.cli.tool_parser import ToolCommand, build_parser, parse
from lit_nn.lab import LABS

from helpers import REPO, assert_clean_error, run_main


def documented(function) -> list[str]:
    return [name for name in inspect.signature(function).parameters]


@pytest.mark.parametrize("name", ["generate", "sweep", "compare", "runs"])
def test_tool_help_is_generated_from_the_signature(name: str, capsys):
    result = run_main(capsys, name, "--help")
    assert result.returncode == 0, result.stderr
    for parameter in documented(COMMANDS[name].function):
        assert parameter in result.stdout, parameter
    # every option has the help text of its docstring line, not a bare type
    for action in build_parser(COMMANDS[name])._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and not action.help.startswith("(type:"), action.dest


@pytest.mark.parametrize("lab", sorted(LABS))
def test_lab_help_is_generated_from_the_lab_signature(lab: str, capsys):
    import importlib

    result = run_main(capsys, "lab", lab, "--help")
    assert result.returncode == 0, result.stderr
    for parameter in documented(importlib.import_module(f"lit_nn.lab.{lab}").run):
        assert f"--{parameter}" in result.stdout
    assert set(lab_parser()._subcommands_action._name_parser_map) == {*LABS, "all"}


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["fit", "-c", "experiments/mnist_mlp.yaml", "--trainer.max_epoch", "1"], "trainer"),
        (["fit", "-c", "experiments/mnist_mlp.yaml", "--model.init_args.dpth", "1"], "'depth'"),
        (["validate", "-c", "experiments/mnist_mlp.yaml", "--expriment", "x"], "'--experiment'"),
        (["test", "-c", "experiments/mnist_mlp.yaml", "--model.init_args.optimiser", "sgd"], "'optimizer'"),
        (["predict", "-c", "experiments/mnist_mlp.yaml", "--run_nme", "x"], "'--run_name'"),
        (["generate", "--ckpt", "x.ckpt", "--lenght", "5"], "'--length'"),
        (["sweep", "experiments/compare_depth.yaml", "--dryrun"], "'--dry_run'"),
        (["compare", "--experiment", "x", "--group_bye", "depth"], "'--group_by'"),
        (["runs", "--limt", "3"], "'--limit'"),
        (["lab", "gates", "--epoch", "3"], "'--epochs'"),
        (["lab", "trajectories", "--step", "3"], "'--steps'"),
    ],
)
def test_a_typo_in_any_command_is_one_line_with_a_suggestion(argv, suggestion, capsys):
    result = run_main(capsys, *argv)
    assert_clean_error(result, "did you mean", suggestion)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_habitual_spellings_are_accepted():
    """Each spelling is a shape of jsonargparse argument (no rewriting of argv): hyphens for underscores,
    a bare or negated boolean, a list as several words or repeated, a pair as two words, an optional
    positional."""
    from lit_nn.cli.commands import COMMANDS
    from lit_nn.lab.trajectories import run as trajectories

    sweep, runs, compare = COMMANDS["sweep"], COMMANDS["runs"], COMMANDS["compare"]
    kwargs = parse(sweep, ["f.yaml", "--dry-run", "--no-report", "--workers", "2"])
    assert (kwargs["sweep_file"], kwargs["dry_run"], kwargs["report"], kwargs["workers"]) == ("f.yaml", True, False, 2)
    assert parse(sweep, ["f.yaml", "--force", "false"])["force"] is False
    assert parse(sweep, ["f.yaml", "--force"])["force"] is True
    assert parse(sweep, ["f.yaml", "--report", "--no_report"])["report"] is False
    kwargs = parse(runs, ["--experiment", "a", "--experiment", "b", "c", "--cleanup", "--run", "12345678"])
    assert kwargs["experiment"] == ["a", "b", "c"] and kwargs["cleanup"] is True and kwargs["run"] == ["12345678"]
    kwargs = parse(compare, ["compare_depth", "--group-by", "depth"])
    assert kwargs["sweep"] == "compare_depth" and kwargs["group_by"] == "depth"
    assert parse(compare, ["--experiment", "x"])["sweep"] is None
    kwargs = parse(ToolCommand("lab trajectories", trajectories, "", positional=False),
                   ["--functions", "round", "--start", "1", "1.5", "--steps", "4"])
    assert kwargs["functions"] == ["round"] and kwargs["start"] == [1.0, 1.5] and kwargs["steps"] == 4
    assert parse(ToolCommand("lab trajectories", trajectories, "", positional=False), [])["functions"] == [
        "round", "stretched"]  # a list's default is not extended by what is given


def test_a_list_or_pair_missing_its_values_says_so(capsys):
    assert_clean_error(run_main(capsys, "runs", "--experiment"), "lit-nn runs: --experiment needs at least one value")
    assert_clean_error(run_main(capsys, "lab", "trajectories", "--start"), "--start needs at least one value")


def test_sweep_passes_fit_options_through_and_keeps_its_own():
    mine, theirs = split_fit_options(["f.yaml", "--workers", "2", "--trainer.max_epochs", "3",
                                      "--model.init_args.lr=0.1", "--dry-run", "--seed_everything", "4"])
    assert mine == ["f.yaml", "--workers", "2", "--dry-run"]
    assert theirs == ["--trainer.max_epochs", "3", "--model.init_args.lr=0.1", "--seed_everything", "4"]


def test_sweep_refuses_a_bare_optimizer_flag_before_any_point_runs(capsys, client):
    """--optimizer is no option of lit-nn fit (it once passed the sweep's own check, then failed every point)."""
    result = run_main(capsys, "sweep", str(REPO / "experiments" / "compare_depth.yaml"), "--optimizer", "adam")
    assert_clean_error(result, "unknown option '--optimizer' for lit-nn sweep",
                       "--model.init_args.optimizer VALUE")
    assert client.get_experiment_by_name("compare_depth") is None
    # the spelling it points to works: every point gets it, and it is part of the point's config hash
    result = run_main(capsys, "sweep", str(REPO / "experiments" / "compare_depth.yaml"), "--dry_run",
                      "--model.init_args.optimizer", "sgd")
    assert result.returncode == 0, result.stderr
    assert "extra args: --model.init_args.optimizer sgd" in result.stdout


# -- the README's commands -----------------------------------------------------------------
def readme_commands() -> list[list[str]]:
    """Every ``lit-nn ...`` line of the README's code blocks, as argv (comments and continuations joined)."""
    text = (REPO / "README.md").read_text()
    commands = []
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M)
    for block in (body for language, body in blocks if language in ("", "bash")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split(";"):
                part = part.strip()
                if part.startswith("lit-nn"):
                    commands.append(shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", part))[1:])
    return commands


def test_the_readme_shows_commands_of_every_kind():
    kinds = {argv[0] for argv in readme_commands() if argv and not argv[0].startswith("-")}
    assert {"fit", "sweep", "compare", "generate"} <= kinds


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_still_parses(argv: list[str], capsys):
    """Parse (never run) each README command with the parser the real command uses."""
    from lit_nn.cli.main import TRAINER_COMMANDS
    from lit_nn.cli.sweep_command import check_points
    from lit_nn.cli.train import trainer_parser

    if not argv or "--help" in argv:
        result = run_main(capsys, *argv, *([] if "--help" in argv else ["--help"]))
        assert result.returncode == 0, result.stderr
        return
    name, rest = argv[0], argv[1:]
    if name in TRAINER_COMMANDS:
        if ("--ckpt_path" in rest or "--resume" in rest) and not any(a in rest for a in ("-c", "--config")):
            rest = ["-c", str(REPO / "experiments" / "mnist_cnn.yaml"), *rest]  # a run id brings its config
        trainer_parser(name).parse_args(rest)
    elif name == "sweep":
        from lit_nn.cli.sweep_command import split_tune_options
        from lit_nn.sweeps.grid import expand, load_sweep

        mine, extra = split_fit_options(rest)
        mine, tune = split_tune_options(mine)
        args = parse(COMMANDS["sweep"], mine)
        check_points(expand(load_sweep(REPO / args["sweep_file"], tune), extra), extra)
    elif name == "lab":
        import importlib

        run = importlib.import_module(f"lit_nn.lab.{rest[0]}").run
        parse(ToolCommand(f"lab {rest[0]}", run, "", positional=False), rest[1:])
    else:
        parse(COMMANDS[name], rest)
