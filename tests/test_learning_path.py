"""docs/learning-path.md and its Japanese twin: every command they show still parses (without
running), both show the same commands in the same order, every figure they embed exists and is
small, and ``docs/make_figures.py`` (``make figures``) makes every one of them."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

DOCS = [REPO / "docs" / "learning-path.md", REPO / "docs" / "learning-path.ja.md"]
MAX_BYTES = 150_000


def commands(doc: Path) -> list[str]:
    """The command lines of the document's ```bash blocks (comments stripped, continuations joined)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line:
                lines.append(line)
    return lines


def images(doc: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", doc.read_text())


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def load_make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", REPO / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_documents_show_the_same_commands_and_figures_in_the_same_order():
    english, japanese = DOCS
    assert commands(english) == commands(japanese)
    assert images(english) == images(japanese)
    assert len(images(english)) >= 10 and len(re.findall(r"^## \d+\. ", english.read_text(), flags=re.M)) == 10
    assert "[日本語版](learning-path.ja.md)" in english.read_text()
    assert "[English](learning-path.md)" in japanese.read_text()


def test_the_readme_links_both_documents():
    readme = (REPO / "README.md").read_text()
    assert "docs/learning-path.md" in readme and "docs/learning-path.ja.md" in readme


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_figure_exists_is_small_and_is_made_by_make_figures(doc: Path):
    made = set(load_make_figures().figure_names())
    for link in images(doc):
        path = (doc.parent / link).resolve()
        assert path.is_file(), link
        assert path.stat().st_size < MAX_BYTES, f"{link}: {path.stat().st_size} bytes"
        assert path.parent == REPO / "docs" / "figures" and path.name in made, link


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_make_target_exists(doc: Path):
    targets = [line.split()[1] for line in commands(doc) if line.startswith("make")]
    assert targets and set(targets) <= make_targets(), set(targets) - make_targets()
    assert "## " in next(line for line in (REPO / "Makefile").read_text().splitlines()
                         if line.startswith("figures:"))


def lit_nn_commands() -> list[list[str]]:
    """argv of each ``lit-nn ...`` line of the English document (the Japanese one has the same)."""
    return [shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", line))[1:]
            for line in commands(DOCS[0]) if line.startswith("lit-nn ")]


def test_the_document_shows_lab_fit_tools_and_make():
    kinds = {argv[0] for argv in lit_nn_commands()}
    assert {"lab", "compare", "generate"} <= kinds
    assert any(line.startswith("make ") for line in commands(DOCS[0]))


@pytest.mark.parametrize("argv", lit_nn_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_lit_nn_command_parses(argv: list[str]):
    """Parse (never run) each command with the parser the real command uses."""
    from lit_nn.cli.commands import COMMANDS, check_points, split_fit_options
    from lit_nn.cli.main import TRAINER_COMMANDS
    from lit_nn.cli.tool_parser import ToolCommand, parse

    name, rest = argv[0], argv[1:]
    if name in TRAINER_COMMANDS:
        from lit_nn.cli.train import trainer_parser

        trainer_parser(name).parse_args(rest)
    elif name == "sweep":
        from lit_nn.sweeps.grid import expand, load_sweep

        mine, extra = split_fit_options(rest)
        check_points(expand(load_sweep(REPO / parse(COMMANDS["sweep"], mine)["sweep_file"]), extra), extra)
    elif name == "lab":
        run = importlib.import_module(f"lit_nn.lab.{rest[0]}").run
        parse(ToolCommand(f"lab {rest[0]}", run, "", positional=False), rest[1:])
    else:
        parse(COMMANDS[name], rest)


def test_make_figures_runs_the_documents_commands():
    """Each figure's command in make_figures.py is a command the documents show, plus budget options."""
    shown = [shlex.split(line) for line in commands(DOCS[0])]
    shown_labs = {tuple(argv[1:3]) for argv in shown if argv[:2] == ["lit-nn", "lab"]}
    for command, _, _ in load_make_figures().STEPS:
        if command[0] == "lab":
            assert tuple(command[:2]) in shown_labs, command
        elif command[0] == "compare":
            assert ["lit-nn", *command] in shown, command


@pytest.mark.slow
def test_make_figures_makes_every_linked_figure(tmp_path: Path):
    """The whole script with tiny budgets (--quick), into a temporary folder: ~1-2 min on 2 cores."""
    out = tmp_path / "figures"
    result = subprocess.run([sys.executable, str(REPO / "docs" / "make_figures.py"), "--quick", "--out", str(out)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for doc in DOCS:
        for link in images(doc):
            made = out / Path(link).name
            assert made.is_file(), link
            assert 1000 < made.stat().st_size < MAX_BYTES, link
