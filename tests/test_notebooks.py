"""notebooks/ (English) and notebooks/ja/ (Japanese): jupytext py:percent sources of the learner's
notebooks, one per stage of the learning path.

Fast: every notebook parses as py:percent, the Japanese one has the English one's code (comments
aside: only the prose differs), every step of the learning path is linked from a notebook of each
language and links its notebook back (README too), no .ipynb is committed, and the Makefile's
``notebooks`` and ``jupyter`` targets and the extras say what they run. Slow: every notebook runs
headless through nbmake with ``LIT_NN_NOTEBOOK_QUICK=1`` (tiny budgets) into its own MLflow store,
ends with exactly its expected runs, all FINISHED, and shows at least one figure; ``make notebooks``
executes one into a folder of the test's; and a cell that raises fails the run."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest

from helpers import REPO

NOTEBOOKS = REPO / "notebooks"
ENGLISH = sorted(NOTEBOOKS.glob("[0-9]*.py"))
JAPANESE = sorted((NOTEBOOKS / "ja").glob("[0-9]*.py"))
BUILD = NOTEBOOKS / "_build"  # make notebooks: notebooks/_build/*.ipynb, notebooks/_build/ja/*.ipynb
DOCS = {"en": REPO / "docs" / "learning-path.md", "ja": REPO / "docs" / "learning-path.ja.md"}

# The MLflow runs each notebook leaves under LIT_NN_NOTEBOOK_QUICK=1, counted from its code: a lab
# is one run, lit_nn.fit one, lit-nn predict one (its predictions), a sweep its parent and one run
# per point and seed; generate and reading runs back make none.
EXPECTED_RUNS = {
    "01_perceptron_gates": 1,    # gates lab
    "02_activations_losses": 2,  # activations lab, losses lab
    "03_gradients_numpy": 1,     # scratch lab (the NumPy mini-batch loop logs nothing)
    "04_optimizers": 5,          # two trajectories labs; sweep parent + sgd and adam, seed 0
    "05_mlp_cnn_mnist": 5,       # MLP relu, MLP identity, softmax regression, CNN; predict on the CNN
    "06_char_rnn": 1,            # the char-RNN fit
    "07_dynamics": 3,            # relu lr 0.1, sigmoid depth 3, relu depth 3
}


def read(path: Path):
    import jupytext

    return jupytext.read(path, fmt="py:percent")


def code_without_comments(source: str) -> str:
    """A code cell's tokens without its comments: what runs, not how it is explained."""
    tokens = tokenize.generate_tokens(io.StringIO(source + "\n").readline)
    kept = [(tok.type, tok.string) for tok in tokens if tok.type not in (tokenize.COMMENT, tokenize.NL)]
    return tokenize.untokenize(kept)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def step_anchors(doc: Path) -> list[str]:
    return [anchor(title) for title in re.findall(r"^## (\d+\. .*)$", doc.read_text(), flags=re.M)]


def test_there_are_notebooks_in_both_languages_with_the_same_names():
    assert ENGLISH, "no notebook under notebooks/"
    assert [p.name for p in JAPANESE] == [p.name for p in ENGLISH]


@pytest.mark.parametrize("path", ENGLISH + JAPANESE, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_every_notebook_is_py_percent_with_markdown_and_code(path: Path):
    text = path.read_text()
    assert "formats: py:percent" in text and "# %%" in text
    notebook = read(path)
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: p.stem)
def test_the_japanese_notebook_runs_the_same_code(english: Path):
    japanese = NOTEBOOKS / "ja" / english.name
    en_cells, ja_cells = read(english).cells, read(japanese).cells
    assert [c.cell_type for c in ja_cells] == [c.cell_type for c in en_cells], "cells differ in kind or order"
    for en, ja in zip(en_cells, ja_cells, strict=True):
        if en.cell_type == "code":
            assert code_without_comments(ja.source) == code_without_comments(en.source), en.source[:200]
    prose = "".join(c.source for c in ja_cells if c.cell_type == "markdown")
    assert re.search(r"[\u3040-\u30ff]", prose), "the Japanese notebook's text is not in Japanese"


@pytest.mark.parametrize("language", ["en", "ja"])
def test_every_learning_path_step_links_to_a_notebook(language: str):
    """Each '## N. ...' step of the learning path is linked (with its anchor) from a notebook, by a
    path relative to the notebook's .ipynb in notebooks/_build/, where a learner opens it."""
    paths = ENGLISH if language == "en" else JAPANESE
    doc = DOCS[language]
    anchors = step_anchors(doc)
    assert anchors, f"no '## N. ' step in {doc.name}"
    linked = set()
    for path in paths:
        prose = "".join(c.source for c in read(path).cells if c.cell_type == "markdown")
        built = BUILD / path.parent.relative_to(NOTEBOOKS)  # links work where make notebooks puts the .ipynb
        linked |= set(re.findall(rf"\]\({re.escape(os.path.relpath(doc, built))}#([^)\s]+)\)", prose))
    missing = [a for a in anchors if a not in linked]
    assert not missing, f"steps without a notebook: {missing}"


def steps(doc: Path) -> dict[str, str]:
    """Each '## N. ...' step of a learning-path document: its number and its text."""
    parts = re.split(r"^## (\d+)\. .*$", doc.read_text(), flags=re.M)
    return {number: text.split("\n## ")[0] for number, text in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.mark.parametrize("language", ["en", "ja"])
def test_every_learning_path_step_links_its_notebook_back(language: str):
    """Docs to notebook: every step links a notebook of its own language, and that file exists."""
    doc, folder = DOCS[language], NOTEBOOKS if language == "en" else NOTEBOOKS / "ja"
    numbered = steps(doc)
    assert len(numbered) == len(step_anchors(doc))
    linked = set()
    for number, text in numbered.items():
        links = re.findall(r"\]\((\.\./notebooks/[^)\s#]+\.py)\)", text)
        assert links, f"{doc.name} step {number} links no notebook"
        for link in links:
            target = (doc.parent / link).resolve()
            assert target.is_file() and target.parent == folder, f"{doc.name} step {number}: {link}"
            linked.add(target)
    assert linked == set(ENGLISH if language == "en" else JAPANESE), "a notebook no step links"


@pytest.mark.parametrize("path", ENGLISH + JAPANESE, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_every_notebook_names_its_commands_from_a_terminal(path: Path):
    """Notebook to commands: the first cell names the lit-nn or make commands of the same runs."""
    commands = re.findall(r"`((?:lit-nn|make) [^`]+)`", read(path).cells[0].source)
    assert commands, f"{path.name}: no `lit-nn ...` or `make ...` in its first cell"
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    for command in commands:
        assert not command.startswith("make ") or command.split()[1] in targets, command


def test_the_readme_links_every_notebook():
    readme = (REPO / "README.md").read_text()
    links = {(REPO / link).resolve() for link in re.findall(r"\]\((notebooks/[^)\s#]+\.py)\)", readme)}
    assert links == set(ENGLISH), "README's notebook links and notebooks/ differ"
    assert "make notebooks" in readme and "make jupyter" in readme


def test_every_notebook_has_its_expected_run_count():
    assert set(EXPECTED_RUNS) == {p.stem for p in ENGLISH}


def make_dry_run(*args: str) -> str:
    """What `make ARGS` would run (`make -n`: nothing runs)."""
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_make_notebooks_converts_and_executes_every_notebook_into_build():
    recipe = make_dry_run("-o", ".venv/.install-stamp", "notebooks")  # the install step taken as done
    for path in ENGLISH + JAPANESE:
        assert str(path.relative_to(REPO)) in recipe, path
    assert "jupytext --quiet --to ipynb -o $out $nb" in recipe
    assert "jupyter execute --inplace" in recipe and "notebooks/_build/" in recipe


def test_make_jupyter_starts_jupyterlab_on_localhost_with_the_notebooks_extra():
    recipe = make_dry_run("-B", "jupyter")  # -B: as on a fresh clone, every step
    assert "pip install --quiet -e '.[dev,notebooks]'" in recipe
    assert "set-default-viewer python" in recipe  # jupytext opens a .py as a notebook
    assert re.search(r"jupyter lab --ip 127\.0\.0\.1 .*--no-browser", recipe)


def test_the_extras_split_what_ci_needs_from_jupyterlab():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {extra: {re.split(r"[<>=\[ ]", req)[0] for req in reqs} for extra, reqs in extras.items()}
    assert {"jupytext", "nbclient", "nbmake", "ipykernel"} <= names["dev"]  # make notebooks, the tests
    assert "jupyterlab" not in names["dev"]  # CI installs dev: no JupyterLab there
    assert {"jupytext", "nbclient", "ipykernel", "jupyterlab"} <= names["notebooks"]
    assert "notebooks" not in (REPO / ".ci" / "run").read_text().split("pip install")[-1].split("\n")[0]


def test_no_ipynb_is_committed_and_they_are_ignored():
    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked == []
    for built in ("notebooks/_build/x.ipynb", "notebooks/ja/.ipynb_checkpoints/x-checkpoint.py"):
        assert subprocess.run(["git", "check-ignore", "-q", built], cwd=REPO).returncode == 0, built


def run_nbmake(notebook: Path, work: Path, store: Path) -> subprocess.CompletedProcess:
    """Execute one .ipynb with nbmake in a child pytest, outputs written back into the file."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's own inline backend
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{store}", LIT_NN_NOTEBOOK_QUICK="1", PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbmake",
                           "--nbmake-timeout=600", "--overwrite", str(notebook)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)


def to_ipynb(source: Path, target: Path) -> Path:
    import jupytext

    jupytext.write(read(source), target, fmt="ipynb")
    return target


@pytest.mark.slow
@pytest.mark.parametrize("path", ENGLISH + JAPANESE, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_every_notebook_runs_leaves_finished_runs_and_shows_a_figure(path: Path, tmp_path: Path,
                                                                     migrated_store: Path):
    import nbformat
    from mlflow.tracking import MlflowClient

    store = tmp_path / "notebook-store" / "mlflow.db"
    store.parent.mkdir()
    shutil.copyfile(migrated_store, store)
    notebook = to_ipynb(path, tmp_path / (path.stem + ".ipynb"))
    result = run_nbmake(notebook, tmp_path, store)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    executed = nbformat.read(notebook, as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the notebook showed no figure"
    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    assert len(runs) == EXPECTED_RUNS[path.stem], [(r.info.run_name, r.info.status) for r in runs]
    assert {r.info.status for r in runs} == {"FINISHED"}
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "http://127.0.0.1:5000/#/experiments/" in printed, "the notebook does not print the MLflow UI link"


@pytest.mark.slow
def test_make_notebooks_executes_a_notebook_with_its_outputs(tmp_path: Path, migrated_store: Path):
    """The Makefile's own loop (jupytext, then nbclient's jupyter execute) on one notebook, built
    into a folder of the test's, its runs in a store of the test's."""
    import nbformat

    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    shutil.copyfile(migrated_store, store)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{store}", LIT_NN_NOTEBOOK_QUICK="1")
    result = subprocess.run(["make", "-o", ".venv/.install-stamp", "notebooks",
                             "NOTEBOOKS=notebooks/ja/01_perceptron_gates.py", f"NOTEBOOK_BUILD={tmp_path / 'build'}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    executed = nbformat.read(tmp_path / "build" / "ja" / "01_perceptron_gates.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"] * EXPECTED_RUNS["01_perceptron_gates"]


@pytest.mark.slow
def test_a_cell_that_raises_fails_the_run(tmp_path: Path):
    import jupytext

    notebook = jupytext.reads("# %%\nprint('first cell')\n\n# %%\nraise ValueError('broken cell')\n", fmt="py:percent")
    jupytext.write(notebook, tmp_path / "broken.ipynb", fmt="ipynb")
    result = run_nbmake(tmp_path / "broken.ipynb", tmp_path, tmp_path / "unused.db")
    assert result.returncode == 1 and "broken cell" in result.stdout
