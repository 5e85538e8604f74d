"""The source tree is the architecture: packages with one job, layered, each fact stated once."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lit_nn"
# each package may import only those before it (and itself); sweeps and lab are siblings; compat
# (the libraries' private names) imports no lit-nn package and any package may import it
LAYERS = {
    "compat": set(),
    "core": {"compat"},
    "data": {"compat", "core"},
    "models": {"compat", "core", "data"},
    "tracking": {"compat", "core", "data", "models"},
    "sweeps": {"compat", "core", "data", "models", "tracking"},
    "lab": {"compat", "core", "data", "models", "tracking"},
    "cli": {"compat", "core", "data", "models", "tracking", "sweeps", "lab"},
}


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_top_level_holds_only_packages():
    entries = {p.name for p in SRC.iterdir() if p.name != "__pycache__" and not p.name.endswith(".egg-info")}
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert entries - packages == {"__init__.py", "__main__.py"}
    assert packages == set(LAYERS)


def test_no_two_modules_share_a_name():
    names = Counter(p.name for p in source_files() if p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def imported_packages(path: Path) -> set[str]:
    """The lit_nn packages a module imports (at any depth in the file, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lit_nn."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lit_nn."))
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_only_go_down_the_layers(package: str):
    allowed = LAYERS[package] | {package}
    bad = {}
    for path in sorted((SRC / package).rglob("*.py")):
        wrong = imported_packages(path) - allowed
        if wrong:
            bad[str(path.relative_to(SRC))] = sorted(wrong)
    assert bad == {}, f"{package} may import only {sorted(allowed)}"


def test_no_attribute_guessing_on_models_and_data():
    """The CLI and callbacks read declared attributes (LitModel, LitDataModule), never getattr defaults."""
    pattern = re.compile(r"getattr\(\s*(self\.)?(model|datamodule|pl_module|trainer\.datamodule|module)\b")
    hits = [f"{p.relative_to(SRC)}:{n}" for p in source_files()
            for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_run_end_status_is_written_in_one_function():
    writers = [f"{p.relative_to(SRC)}:{n}" for p in source_files()
               for n, line in enumerate(p.read_text().splitlines(), 1) if "set_terminated(" in line]
    assert writers == ["tracking/lifecycle.py:" + writers[0].split(":")[1]] and len(writers) == 1


def test_mlflow_clients_come_from_one_factory():
    makers = [f"{p.relative_to(SRC)}:{n}" for p in source_files()
              for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bMlflowClient\(", line)]
    assert len(makers) == 1 and makers[0].startswith("tracking/store.py:")


def test_tag_and_metric_names_are_not_spelt_out():
    """Tag keys and metric names come from lit_nn.core.names, not string literals."""
    from lit_nn.core.names import Metric, Tag

    keys = {v for cls in (Metric, Tag) for k, v in vars(cls).items() if k.isupper()}
    literal = re.compile(r"""(?:tags?|metrics?|params?)\s*(?:\.get)?[\[(]\s*["']([\w.]+)["']""")
    hits = [f"{p.relative_to(SRC)}:{n}: {m.group(1)}" for p in source_files() if p.name != "names.py"
            for n, line in enumerate(p.read_text().splitlines(), 1) for m in literal.finditer(line)
            if m.group(1) in keys]
    assert hits == []
