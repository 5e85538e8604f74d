"""The source tree is the architecture: packages with one job, layered, each fact stated once."""

from __future__ import annotations

import ast
import re
import sys
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


# -- libraries' private names live in lit_nn/compat only -----------------------------------------
COMPAT = SRC / "compat"
# private names of Lightning, MLflow and jsonargparse that lit-nn once used outside compat/
ONCE_USED_PRIVATES = (
    "_save_last_checkpoint", "_should_save_on_train_epoch_end", "_monitor_candidates", "_should_skip_saving_checkpoint",
    "_tracking_uri", "_run_id", "_initialized", "_experiment_name", "_instantiate_trainer", "_get", "_parser",
    "_subcommands_action", "_name_parser_map", "_actions", "_trainer", "_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT",
    "_MODULES_TO_PACKAGES",
)
# underscored names that are public API: namedtuple's methods, os._exit
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def outside_compat() -> list[Path]:
    return [p for p in source_files() if COMPAT not in p.parents]


def test_once_used_library_privates_stay_in_compat():
    pattern = re.compile(r"(?<![\w])(" + "|".join(ONCE_USED_PRIVATES) + r")\b")
    hits = [f"{p.relative_to(SRC)}:{n}: {line.strip()}" for p in outside_compat()
            for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "a library's private name outside lit_nn/compat (add a hook there):\n" + "\n".join(hits)


def own_private_names() -> set[str]:
    """Every underscored name lit-nn itself defines outside compat: functions, classes, variables,
    the attributes it sets on its objects and classes (``self._x = ...``), names it imports."""
    names = set()
    for path in outside_compat():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) \
                    and (node.value.id in ("self", "cls") or node.value.id[:1].isupper()):  # not a module's
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[-1])
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_library_private_attribute_or_module_outside_compat():
    """``x._name`` only for names lit-nn defines itself; no import from a library's private module."""
    own = own_private_names() | PUBLIC_UNDERSCORED
    hits = []
    for path in outside_compat():
        rel = str(path.relative_to(SRC))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                text = ast.unparse(node)
                if node.attr not in own and text != "os._exit":
                    hits.append(f"{rel}:{node.lineno}: {text}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and not node.module.startswith(("lit_nn", "__future__")):
                private = [p for p in node.module.split(".") if p.startswith("_")]
                private += [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    hits.append(f"{rel}:{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
            elif isinstance(node, ast.Import):
                hits += [f"{rel}:{node.lineno}: import {a.name}" for a in node.names
                         if not a.name.startswith("lit_nn") and any(p.startswith("_") for p in a.name.split("."))]
    assert not hits, "a library's private name outside lit_nn/compat (add a hook there):\n" + "\n".join(hits)


def class_index() -> dict[str, tuple[ast.ClassDef, list[str]]]:
    """lit-nn's classes (outside compat) by dotted name, each with its bases as dotted names
    (``lightning.LightningModule``, ``lit_nn.models.base.LitModel``), read from the source: some
    modules cannot simply be imported (``pyfunc_model`` registers itself with MLflow)."""
    index = {}
    for path in outside_compat():
        module = ".".join(("lit_nn", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
            elif isinstance(node, ast.Import):
                imported.update({a.asname or a.name: a.name for a in node.names})
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                bases = []
                for base in node.bases:
                    head, *rest = ast.unparse(base).split(".")
                    bases.append(".".join((imported.get(head, f"{module}.{head}"), *rest)))
                index[f"{module}.{node.name}"] = (node, bases)
    return index


def library_privates(dotted: str) -> set[str]:
    """The underscored names of a library class and its ancestors: its members, and the
    attributes its source sets or reads on ``self``."""
    import importlib
    import inspect

    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # a name from a module imported whole: lightning.pytorch...
        head, _, rest = dotted.partition(".")
        cls = importlib.import_module(head)
        for part in rest.split("."):
            cls = getattr(cls, part)
    names = set()
    for base in inspect.getmro(cls):
        if base.__module__ == "builtins":
            continue
        names |= {n for n in vars(base) if n.startswith("_") and not n.startswith("__")}
        try:
            names |= set(re.findall(r"self\.(_[A-Za-z]\w*)", inspect.getsource(base)))
        except (OSError, TypeError):
            pass
    return names


def test_subclasses_of_library_classes_use_none_of_their_private_names():
    """A lit-nn subclass neither overrides nor reads its library base's ``_name``s (its methods, and
    the attributes its source sets): they change without notice, and a clash is silent."""
    index = class_index()

    def theirs(dotted: str) -> set[str]:
        if dotted in index:
            return set().union(*(theirs(b) for b in index[dotted][1]))
        standard = dotted.startswith("lit_nn.") or dotted.split(".")[0] in sys.stdlib_module_names
        return set() if standard else library_privates(dotted)  # a third-party library's class

    hits = []
    for name, (node, bases) in index.items():
        private = set().union(*(theirs(b) for b in bases))
        if not private:
            continue
        source = ast.unparse(node)
        ours = set(re.findall(r"(?:self|cls|super\(\))\.(_[A-Za-z]\w*)", source))
        ours |= {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        ours |= {t.id for n in node.body if isinstance(n, ast.Assign | ast.AnnAssign)
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        hits += [f"{name}: {attr}" for attr in sorted(ours & private) if attr.startswith("_") and not attr.startswith("__")]
    assert not hits, "a library's private name used by a subclass (add a hook to lit_nn/compat):\n" + "\n".join(hits)
