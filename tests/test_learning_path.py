"""docs/learning-path.md and its Japanese twin: every command they show still parses (without
running), both show the same commands in the same order, every figure they embed exists and is
small, and ``docs/make_figures.py`` (``make figures``) makes every one of them.

They also answer the learner's questions (``/work/shared/seeds/``, issue 30): each question has a
heading at its step in both languages (QUESTIONS), every Python block prints what the documents
say it prints, the numbers they state about configs are read from the configs (CLAIMS), the
Japanese one uses the book's terms, and no step is a dead end (what it needs, the book's section,
the notes' programs linked, run ids explained)."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO

DOCS = [REPO / "docs" / "learning-path.md", REPO / "docs" / "learning-path.ja.md"]
MAX_BYTES = 150_000
STEP_COUNT = 12  # numbered steps ("## N. ") in each document


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
    for doc in DOCS:
        assert [int(n) for n in re.findall(r"^## (\d+)\. ", doc.read_text(), flags=re.M)] == list(range(1, STEP_COUNT + 1))
    assert len(images(english)) >= STEP_COUNT
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
    from lit_nn.cli.commands import COMMANDS
    from lit_nn.cli.main import TRAINER_COMMANDS
    from lit_nn.cli.sweep_command import check_points, split_fit_options
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


def test_make_figures_only_runs_the_steps_of_the_figures_asked_for():
    """--only FIGURE...: the commands drawing them, with a figure-less fit whose runs the next step draws."""
    module = load_make_figures()
    names = [figures[0][1] if figures else None for _, _, figures in module.STEPS]
    assert module.selected_steps(None) == list(range(len(module.STEPS)))
    linear = module.selected_steps(["compare_linear_curves.png"])
    assert [names[i] for i in linear] == ["compare_linear_curves.png"]
    rnn = module.selected_steps(["rnn_curves.png"])
    assert len(rnn) == 2 and module.STEPS[rnn[0]][0][:2] == ["fit", "-c"] and names[rnn[1]] == "rnn_curves.png"
    with pytest.raises(SystemExit, match="no figure named nope.png"):
        module.selected_steps(["nope.png"])


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


# -- the learner's questions, answered at their steps (issue 30) --------------------------------

def sections(doc: Path, level: str) -> dict[str, str]:
    """Heading text -> body, for the headings of one level (``"## "`` or ``"### "``) of a text."""
    text = doc.read_text() if isinstance(doc, Path) else doc
    parts = re.split(rf"^{level}(.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def step(doc: Path, number: int) -> str:
    """The text of step ``number`` (its ``## N. ...`` heading up to the next ``## ``)."""
    (body,) = [body for heading, body in sections(doc, "## ").items() if heading.startswith(f"{number}. ")]
    return body


# (step, what the notes ask, its heading in English, its heading in Japanese)
QUESTIONS = [
    (3, "what nn.CrossEntropyLoss() expects", "What does `nn.CrossEntropyLoss()` expect?",
     "`nn.CrossEntropyLoss()` には何を渡すのか"),
    (5, "a noisy mini-batch loss read as falling", "Does the loss fall with every mini-batch?",
     "損失はミニバッチごとに下がっていくのか"),
    (6, "the delta of each layer", "The backpropagation formulas of the notes, δ for each layer",
     "ノートの誤差逆伝播法の式: 層ごとの δ"),
    (7, "a learning rate too large or too small", "What does the learning rate do? Too large diverges, too small crawls",
     "学習率は何を決めるのか: 大きすぎると発散し、小さすぎると進まない"),
    (7, "Adam needs no learning-rate tuning", "Does Adam need no learning-rate tuning?",
     "Adam なら学習率を調整しなくてよいのか"),
    (7, "Adam prevents local minima", "Does Adam keep training out of local minima?",
     "Adam なら局所最適解に陥らないのか"),
    (9, "why an activation function is needed", "Why does a network need an activation function?",
     "なぜ活性化関数が必要なのか"),
    (9, "is everything but ReLU linear", "Is everything except ReLU a linear map?", "ReLU 以外はすべて線形変換なのか"),
    (10, "where the CNN's 800 comes from", "Where does the 800 in `fc1` come from?", "`fc1` の 800 はどこから来るのか"),
    (10, "the parameters of model = Net()", "What are the parameters of `model = Net()`?",
     "`model = Net()` のパラメータを知るには"),
    (11, "the char-RNN's target", "What is the char-RNN's target?", "文字単位 RNN の教師データは何か"),
]
EVIDENCE = ("```", "![", "figure", "図", "`lit-nn ", "`make ")


@pytest.mark.parametrize(("number", "question", "english", "japanese"), QUESTIONS, ids=[q[1] for q in QUESTIONS])
def test_each_question_of_the_notes_has_a_heading_at_its_step_in_both_languages(number, question, english, japanese):
    for doc, heading in zip(DOCS, (english, japanese), strict=True):
        answers = sections(step(doc, number), "### ")
        assert heading in answers, f"{doc.name} step {number}: no heading '### {heading}' ({question})"
        assert any(mark in answers[heading] for mark in EVIDENCE), \
            f"{doc.name} step {number}, '{heading}': no command, code or figure shows the answer"


def python_examples(doc: Path) -> list[tuple[str, str]]:
    """Each ```python block that a ```text block follows (what it prints), with that text."""
    return re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", doc.read_text(), flags=re.S)


def test_both_documents_show_the_same_python_examples():
    english, japanese = (python_examples(doc) for doc in DOCS)
    assert english == japanese and len(english) >= 5


@pytest.mark.parametrize("example", python_examples(DOCS[0]), ids=lambda e: e[1].strip().splitlines()[0][:40])
def test_every_python_example_prints_what_the_documents_show(example: tuple[str, str], monkeypatch):
    """Run in this process (the imports are paid once): a few seconds for all of them."""
    code, shown = example
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<learning path>", "exec"), {"__name__": "__learning_path__"})  # noqa: S102
    assert out.getvalue().strip() == shown.strip()


def scratch_default(name: str) -> object:
    """A default of ``lit-nn lab scratch`` (the arguments of its ``run``)."""
    from lit_nn.lab.scratch import run

    return inspect.signature(run).parameters[name].default


def lab_scratch_number(name: str) -> int:
    """The numbers the mini-batch and gradient steps derive from the scratch lab's defaults."""
    train = round(5000 * (1 - scratch_default("test_fraction")))  # of the 5,000-image MNIST sample
    hidden = scratch_default("check_hidden")
    return {"train_images": train, "batch_size": scratch_default("batch_size"),
            "batches_per_epoch": train // scratch_default("batch_size"),
            "checked_parameters": 784 * hidden + hidden + hidden * 10 + 10}[name]


def claimed_value(source: str) -> object:
    """The number behind a claim, from its ``value`` in tests/learning_path_claims.yaml:
    ``experiments/FILE KEY`` (a dotted key), ``len experiments/FILE KEY`` (a list's length),
    ``make_figures FIGURE OPTION`` (that figure's command in make_figures.py) or ``scratch NAME``."""
    kind, *rest = source.split()
    if kind == "make_figures":
        figure, option = rest
        (command,) = [command for command, _, figures in load_make_figures().STEPS
                      if figure in [name for _, name in figures]]
        return command[command.index(option) + 1]
    if kind == "scratch":
        return lab_scratch_number(rest[0])
    path, key = rest if kind == "len" else (kind, *rest)
    value = yaml.safe_load((REPO / path).read_text())
    for part in key.split("."):
        value = value[part]
    return len(value) if kind == "len" else value


CLAIMS = yaml.safe_load((REPO / "tests" / "learning_path_claims.yaml").read_text())


@pytest.mark.parametrize("claim", CLAIMS, ids=[c["what"] for c in CLAIMS])
def test_numbers_the_documents_state_about_configs_are_the_configs(claim: dict[str, str]):
    """The CNN step once said 10 epochs while experiments/mnist_cnn.yaml ran 25: read them instead."""
    value = claimed_value(claim["value"])
    for doc, pattern in zip(DOCS, (claim["en"], claim["ja"]), strict=True):
        text = re.sub(r"\s+", " ", doc.read_text())
        stated = re.findall(pattern, text)
        assert stated, f"{doc.name}: no sentence matching {pattern!r} ({claim['what']})"
        for number in stated:
            assert float(number.replace(",", "")) == float(value), \
                f"{doc.name} says {number} for {claim['what']}; it is {value}"


def test_the_three_wrong_statements_stay_fixed():
    english, japanese = (doc.read_text() for doc in DOCS)
    assert "one or two" not in english and "1〜2 行" not in japanese  # step 11 alone has five commands
    assert "tens of thousands" not in english and "何万倍" not in japanese  # the figure measured ~2,000×
    assert "10 epochs of `make train`" not in english and "既定どおり 10 エポック" not in japanese


BOOK_TERMS = ["交差エントロピー誤差", "勾配確認", "重みの初期値", "Xavier の初期値", "He の初期値", "イテレーション",
              "2 乗和誤差", "恒等関数"]
NOT_THE_BOOKS = ["勾配チェック", "重みの初期化", "ここを見る", "罰の甘さ", "数値微分で学習しない理由です"]


def test_the_japanese_document_uses_the_books_terms():
    japanese = DOCS[1].read_text()
    for term in BOOK_TERMS:
        assert term in japanese, term
    for wording in NOT_THE_BOOKS:
        assert wording not in japanese, wording
    assert not re.search(r"交差エントロピー(?!誤差)", japanese), "the book says 交差エントロピー誤差"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_step_names_the_book_and_says_what_it_needs(doc: Path):
    book, needs = ("**Book:**", "**Needs:**") if doc == DOCS[0] else ("**本:**", "**必要なもの:**")
    for number in range(1, STEP_COUNT + 1):
        text = step(doc, number)
        assert book in text and re.search(r"(§\d|ch\. \d|\d 章)", text.split(book)[1].split("\n\n")[0]), \
            f"{doc.name} step {number}: no chapter or section of the book"
        what = text.split(needs)[1].split("\n\n")[0] if needs in text else ""
        assert re.search(r"(\d minute|minutes|\d 分|step \d|ステップ \d)", what), \
            f"{doc.name} step {number}: '{needs}' does not say the time it takes (or the step whose run it reuses)"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_notes_programs_are_linked_from_their_steps(doc: Path):
    text = doc.read_text()
    for program in sorted((REPO / "experiments" / "seeds").iterdir()):
        if program.name != "README.md":
            assert f"(../experiments/seeds/{program.name})" in text, f"{doc.name} never links {program.name}"
    for link in re.findall(r"\]\((\.\./[^)#]+)\)", text):
        assert (doc.parent / link).resolve().exists(), link


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_run_ids_are_a_placeholder_with_where_to_copy_one_from(doc: Path):
    shown = commands(doc)
    assert not [line for line in shown if "<" in line], "a <placeholder> pasted into a shell is a redirection"
    assert any("RUN_ID" in line for line in shown) and "lit-nn runs --experiment char_rnn" in shown
    before = doc.read_text().split("## 1. ")[0]
    assert "`RUN_ID`" in before and "`lit-nn runs`" in before


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_comparisons_of_activations_linear_networks_and_cells_are_on_the_path(doc: Path):
    shown = commands(doc)
    for target in ("make compare-activations", "make compare-linear", "make compare-rnn-cells",
                   "lit-nn fit -c experiments/mnist_mlp.yaml --model.init_args.activation identity"):
        assert target in shown, target


def test_the_sweeps_behind_the_documents_make_targets_load():
    """Every `make X` of the documents that runs a sweep names a sweep file that loads and expands."""
    from lit_nn.sweeps.grid import expand, load_sweep

    recipes = dict(re.findall(r"^([a-z][a-z0-9-]*):.*\n\t(.*)$", (REPO / "Makefile").read_text(), flags=re.M))
    checked = 0
    for target in {line.split()[1] for line in commands(DOCS[0]) if line.startswith("make ")}:
        sweep = re.search(r"lit-nn sweep (\S+\.yaml)", recipes[target])
        if sweep:
            assert expand(load_sweep(REPO / sweep.group(1))), target
            checked += 1
    assert checked >= 6


def test_the_glossary_explains_the_english_labels_in_japanese():
    glossary = sections(DOCS[1], "## ")["用語集"]
    for label in ("val_acc", "val_loss", "train_loss", "test_acc", "epoch", "step", "run", "experiment", "sweep",
                  "seed", "nats", "lr", "checkpoint", "logits"):
        assert re.search(rf"^\| `{label}`|`{label}`、|、`{label}`", glossary, flags=re.M), label
    assert "イテレーション" in glossary
    assert "(#用語集)" in DOCS[1].read_text()
    assert "(#labels-in-the-figures-and-in-mlflow)" in DOCS[0].read_text()
    assert "## Labels in the figures and in MLflow" in DOCS[0].read_text()
