"""Sweep files: load and check them, expand them into points, and hash each point's config.

A sweep file is YAML, typed by :class:`SweepFile` (jsonargparse checks it; ``lit-nn sweep
--help`` prints its keys; docs/sweeps.md explains them)::

    name: compare_depth
    config: {model: ..., data: ..., trainer: ...}   # a `lit-nn fit -c` config
    grid: {model.init_args.depth: [0, 1, 2, 3]}     # dotted key -> values; cartesian product
    points:                                         # named points: keys that change together
      - {name: sgd_momentum, model.init_args.optimizer: sgd, model.init_args.momentum: 0.9}
    seeds: [0, 1, 2]

:func:`load_sweep` checks it into a :class:`SweepSpec` (base merged, defaults resolved, each
arm's search space built) and :func:`expand` turns that into points.

A point's identity is the hash of its resolved config plus the extra command-line arguments:
resuming compares hashes, so editing a value in the file (or passing another
``--trainer.max_epochs``) makes the affected points new, while unchanged points are skipped.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_nn.core.errors import UserError, unknown_choice
from lit_nn.core.names import Tag
from lit_nn.core.yaml_files import read_yaml_mapping
from lit_nn.sweeps.tune import Dimension, TuneSpec, confirm_seeds, design, merged_space, parse_tune

SPACE = "space"  # a point's own search space in a tuned sweep (lit_nn.sweeps.tune)
# CLI options that belong to the sweep itself, so extra arguments may not override them
RESERVED_ARGS = ("--experiment", "--run_name", "--tags", "-c", "--config")
# config keys that name and label a run but do not change what it computes: not hashed
UNHASHED_KEYS = ("experiment", "run_name", "tags")
POINT_NAME = Tag.SWEEP_POINT


@dataclass(frozen=True)
class SweepSpec:
    """A loaded, checked sweep file."""

    name: str
    experiment: str
    config: dict[str, Any]
    grid: dict[str, list[Any]]
    points: list[dict[str, Any]]
    seeds: list[int]
    seed_keys: list[str]
    group_by: str
    path: Path | None = None
    description: str = ""
    tune: TuneSpec | None = None  # the tuning budget and space, for a tuned sweep
    spaces: dict[str, dict[str, Dimension]] = field(default_factory=dict)  # point name -> its arm's space

    def arm_space(self, point: dict[str, Any]) -> dict[str, Dimension]:
        """The search space of the arm a named point (or ``{}``, a grid cell) belongs to."""
        assert self.tune is not None
        return self.spaces.get(str(point.get("name")), self.tune.space)


@dataclass(frozen=True)
class Point:
    """One training run of a sweep: a setting (label) with one seed."""

    label: str                      # "sgd_momentum", "depth=2", "adam,hidden=64"
    seed: int
    overrides: dict[str, Any]       # dotted key -> value, seed keys included
    varied: dict[str, str]          # tag name -> value, for the scalar values the sweep varies
    config: dict[str, Any]          # the resolved run config (what `lit-nn fit -c` reads)
    extra_args: tuple[str, ...]     # command-line arguments appended to every point
    config_hash: str = field(default="")
    trial: int | None = None        # a tuned sweep's budget slot in the arm (label), else None
    params: dict[str, Any] | None = None  # the slot's design row (qmc, random); None: asked (tpe)
    space: dict[str, Dimension] | None = None  # the arm's search space (tuned sweeps)
    phase: str | None = None        # tuned sweeps: "tune" (a trial) or "confirm" (the arm's best, a fresh seed)

    @property
    def run_name(self) -> str:
        return f"{self.label}-t{self.trial:02d}" if self.trial is not None else f"{self.label}-s{self.seed}"

    def tags(self, sweep: str, parent_run_id: str | None) -> dict[str, str]:
        """The MLflow tags of the point's run: nesting, sweep identity and the varied values."""
        tags = {**self.varied, Tag.SWEEP: sweep, Tag.SWEEP_ROLE: "point", Tag.SWEEP_POINT: self.label,
                Tag.SEED: str(self.seed), Tag.CONFIG_HASH: self.config_hash}
        if self.phase is not None:
            tags.update({Tag.PHASE: self.phase, Tag.TUNE_ARM: self.label})
        if self.trial is not None:
            tags[Tag.TRIAL] = str(self.trial)
        if parent_run_id:
            tags[Tag.PARENT_RUN_ID] = parent_run_id
        return tags


# -- dotted keys ---------------------------------------------------------------------------
def _descend(node: dict[str, Any], part: str) -> dict[str, Any]:
    """Step into ``node[part]``, going through ``init_args`` of a ``class_path`` node."""
    if "class_path" in node and part not in ("class_path", "init_args"):
        node = node.setdefault("init_args", {})
    return node


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``model.init_args.lr`` (or the short ``model.lr``) in a nested config, in place.

    A dict value replaces the whole subtree (e.g. ``model: {class_path: CNN, ...}``), so
    switching the model class does not inherit the other class's arguments.
    """
    parts = key.split(".")
    if not all(parts):
        raise UserError(f"bad config key {key!r}: dotted keys look like model.init_args.lr")
    node = config
    for i, part in enumerate(parts[:-1]):
        node = _descend(node, part)
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise UserError(f"cannot set {key!r}: {where} is {child!r}, not a section")
        node = child
    node = _descend(node, parts[-1])
    node[parts[-1]] = copy.deepcopy(value)


def short_key(key: str) -> str:
    """``model.init_args.depth`` -> ``depth``: the name used for tags and point labels."""
    parts = [p for p in key.split(".") if p != "init_args"]
    return parts[-2] if parts[-1] == "class_path" and len(parts) > 1 else parts[-1]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested dicts merge, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if "class_path" in value and value["class_path"] != out[key].get("class_path"):
                out[key] = copy.deepcopy(value)  # another class: its arguments start from scratch
            else:
                out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- loading -------------------------------------------------------------------------------
def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    return read_yaml_mapping(path, what, "a YAML file such as experiments/compare_depth.yaml")


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
        raise UserError(f"{where}: {key!r} is not a config key; use dotted keys like model.init_args.lr")
    return key


@dataclass
class SweepFile:
    """A sweep file (YAML): what to compare, on which seeds, and optionally how to tune each arm.

    Its reference is ``lit-nn sweep --help`` (generated from this class) and docs/sweeps.md.

    Args:
        name: the sweep's name: its parent run, report folder and claims (default: the file's name).
        experiment: the MLflow experiment its runs go to (default: the sweep's name).
        description: one sentence for the parent run (default: generated from the settings).
        base: a `lit-nn fit -c` config file to start from, relative to the sweep file.
        config: a `lit-nn fit -c` config (model, data, trainer, ...) merged over base.
        grid: dotted config key -> list of values; every combination is a setting.
        points: named settings whose keys change together, e.g. {name: sgd, model.optimizer: sgd,
            model.lr: 0.1}; in a tuned sweep a point's own space: adds to tune.space for that arm.
        seeds: every setting runs once per seed (a tuned sweep's trials train with the first).
        seed_keys: the config keys a seed sets.
        group_by: the tag the report groups by (default: sweep_point, or the grid's one key).
        tune: the same tuning budget for every arm (a point or grid cell); absent: no tuning.
    """

    name: str | None = None
    experiment: str | None = None
    description: str = ""
    base: str | None = None
    # bare dict and list: jsonargparse keeps them verbatim (``Any`` would resolve each class_path in
    # them); the run config is checked by `lit-nn fit`'s own parser before any point runs
    config: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    points: list[dict] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    seed_keys: str | list[str] = field(default_factory=lambda: ["seed_everything"])
    group_by: str | None = None
    tune: TuneSpec = field(default_factory=TuneSpec)


@functools.cache
def file_parser() -> Any:
    """The jsonargparse parser of :class:`SweepFile`: it checks every key's type and prints the reference."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, prog="sweep file", allow_abbrev=False, default_env=False)
    parser.add_class_arguments(SweepFile, None)
    return parser


def file_reference(width: int = 100) -> str:
    """The sweep file's keys, types, defaults and meanings, read from :class:`SweepFile` and the
    dataclasses of its ``tune:`` section (their docstrings): ``lit-nn sweep --help`` prints it."""
    import textwrap

    from docstring_parser import parse

    lines = ["sweep file keys (YAML; nested keys are written with dots, and --tune.KEY VALUE after the file",
             "overrides the file's):"]

    def walk(cls: type, prefix: str) -> None:
        docs = {p.arg_name: " ".join((p.description or "").split()) for p in parse(cls.__doc__ or "").params}
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if dataclasses.is_dataclass(default) and not key.endswith("space"):
                lines.extend(textwrap.wrap(f"  {key}: {docs.get(f.name, '')}", width, subsequent_indent="      "))
                walk(type(default), key + ".")
                continue
            kind = str(f.type).replace("typing.", "")
            head = f"  {key} ({kind}, default {default!r}): " if default not in (None, "", {}, []) else \
                f"  {key} ({kind}): "
            lines.extend(textwrap.wrap(head + docs.get(f.name, ""), width, subsequent_indent="      "))

    walk(SweepFile, "")
    lines.append("  tune.space.KEY: a range {low, high, log: true|false, integer: true|false} or {choices: [...]}")
    return "\n".join(lines)


def load_sweep(path: str | Path, tune_overrides: list[str] = ()) -> SweepSpec:
    """Read and check a sweep file; every mistake is a UserError naming the bad value.
    ``tune_overrides`` are ``--tune.KEY VALUE`` options given after the file."""
    path = Path(path)
    raw = _read_yaml(path, "sweep file")
    return parse_sweep(raw, path, tune_overrides)


def read_sweep_file(raw: dict[str, Any], tune_overrides: list[str] = (), where: str = "sweep") -> SweepFile:
    """Type-check a sweep mapping with jsonargparse: an unknown key or a wrong type is one sentence."""
    from lit_nn.sweeps.tune import Confirm, Objective, jsonargparse_sentence

    raw = {k: v for k, v in raw.items() if v is not None or k == "tune"}  # `grid:` left empty: the default
    if raw.get("tune", {}) is None:
        raw["tune"] = {}
    if not isinstance(raw.get("tune", {}), dict):
        raise UserError(f"{where}: 'tune' must be a mapping (trials, space, sampler, ...), got {raw['tune']!r}")
    keys = [f.name for f in dataclasses.fields(SweepFile)]
    for key in raw:  # here, not by jsonargparse, which drops an unknown key holding an empty mapping
        if key not in keys:
            raise unknown_choice(f"key in {where}:", key, keys)
    parser = file_parser()
    try:
        config = parser.parse_object(copy.deepcopy(raw))
        if tune_overrides:
            config = parser.parse_args(list(tune_overrides), namespace=config)
        return SweepFile(**vars(parser.instantiate(config)))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - jsonargparse's ArgumentError and the dataclasses' ValueError
        groups = {"": SweepFile, "tune": TuneSpec, "tune.objective": Objective, "tune.confirm": Confirm}
        raise UserError(f"{where}: {jsonargparse_sentence(str(err), groups)}") from None


def parse_sweep(raw: dict[str, Any], path: Path | None = None, tune_overrides: list[str] = ()) -> SweepSpec:
    """Check a sweep mapping (as read from YAML) and build its :class:`SweepSpec`."""
    where = str(path) if path else "sweep"
    tuned = "tune" in raw
    if tune_overrides and not tuned:
        raise UserError(f"{where} has no 'tune:' section, so {tune_overrides[0]} has nothing to set; "
                        "add one (see docs/sweeps.md)")
    typed = read_sweep_file(raw, tune_overrides, where)
    config: dict[str, Any] = {}
    if typed.base is not None:
        base = Path(typed.base)
        if not base.is_absolute() and path is not None:
            base = path.parent / base
        config = _read_yaml(base, "base config")
    config = deep_merge(config, typed.config)
    if not config.get("model"):
        raise UserError(f"{where}: the run config has no 'model'; give one under 'config:' or in 'base:'")

    grid = typed.grid
    for key, values in grid.items():
        _check_key(key, f"{where} grid")
        if not values:
            raise UserError(f"{where}: grid key {key!r} needs a non-empty list of values, got {values!r}")

    points = typed.points
    names: set[str] = set()
    for i, point in enumerate(points):
        if not isinstance(point.get("name"), str | int) or str(point["name"]) == "":
            raise UserError(f"{where}: point #{i + 1} must be a mapping with a 'name', got {point!r}")
        name = str(point["name"])
        if name in names:
            raise UserError(f"{where}: two points are named {name!r}; point names must be unique")
        names.add(name)
        for key in point:
            if key == SPACE:
                if not tuned:
                    raise UserError(f"{where}: point {name!r} has a search space, but the file has no 'tune:' "
                                    "section to run it")
                if not isinstance(point[SPACE], dict):
                    raise UserError(f"{where}: point {name!r}: 'space' must map config keys to ranges")
            elif key != "name":
                _check_key(key, f"{where} point {name!r}")
                if key in grid:
                    raise UserError(f"{where}: point {name!r} sets {key!r}, which the grid also varies")

    seeds = typed.seeds
    if not seeds:
        raise UserError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: 'seeds' has duplicates: {seeds}")
    seed_keys = [typed.seed_keys] if isinstance(typed.seed_keys, str) else typed.seed_keys
    if not seed_keys:
        raise UserError(f"{where}: 'seed_keys' must be a list of config keys, got {seed_keys!r}")
    for key in seed_keys:
        _check_key(key, f"{where} seed_keys")

    name = typed.name or (path.stem if path else "sweep")
    default_group = POINT_NAME if points or len(grid) != 1 else short_key(next(iter(grid)))
    group_by = typed.group_by or default_group
    valid_groups = {POINT_NAME, "seed", *(short_key(k) for k in grid),
                    *(short_key(k) for p in points for k in p if k != "name")}
    if typed.group_by and group_by not in valid_groups:
        varied = sorted(valid_groups - {POINT_NAME, "seed"})
        near = difflib.get_close_matches(group_by, varied, n=1, cutoff=0.6)
        hint = f"; the nearest varied key is {near[0]!r}: is one of the two misspelt?" if near else ""
        raise UserError(f"{where}: group_by {group_by!r} is not a key this sweep varies "
                        f"(valid: {', '.join(sorted(valid_groups))}){hint}")
    tune = None
    spaces: dict[str, dict[str, Dimension]] = {}
    if tuned:
        tune = typed.tune
        tune.check()
        for point in points:  # each arm's own space, checked like the shared one
            own = parse_tune({SPACE: point.get(SPACE) or {}}, (), f"{where} point {point['name']!r}").space
            point_keys = set(point) - {"name", SPACE}
            spaces[str(point["name"])] = merged_space(tune, own)
            for key in spaces[str(point["name"])]:
                if key in point_keys or key in grid or key in seed_keys:
                    raise UserError(f"{where}: {key!r} is both searched (tune space) and set by "
                                    f"{'point ' + repr(point['name']) if key in point_keys else 'the grid or seeds'}; "
                                    "keep it in one place")
        if not points:
            for key in tune.space:
                if key in grid or key in seed_keys:
                    raise UserError(f"{where}: {key!r} is both searched (tune space) and set by the grid or "
                                    "seeds; keep it in one place")
    return SweepSpec(name=name, experiment=typed.experiment or name, config=config, grid=grid,
                     points=points, seeds=seeds, seed_keys=seed_keys, group_by=group_by, path=path,
                     description=typed.description, tune=tune, spaces=spaces)


# -- expanding -----------------------------------------------------------------------------
def normalize_args(args: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``--trainer.max_epochs 3`` and ``--trainer.max_epochs=3`` are the same point: join them."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.append(f"{arg}={args[i + 1]}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return tuple(out)


def check_extra_args(args: list[str] | tuple[str, ...]) -> None:
    """Extra arguments go to every point; the ones the sweep sets itself are refused."""
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in RESERVED_ARGS:
            raise UserError(f"{name} is set by the sweep for every point; put run settings in the sweep "
                            "file or pass --model.*, --data.*, --trainer.* options")
        if not arg.startswith("--") and arg == args[0]:
            raise UserError(f"unexpected argument {arg!r}: extra arguments are options such as "
                            "--trainer.max_epochs 3")


def config_hash(config: dict[str, Any], extra_args: tuple[str, ...] = (), data: str | None = None,
                tune: dict[str, Any] | None = None) -> str:
    """A short, stable hash of what a point computes: its config (minus labels), extra args and,
    where the same config means different data on different machines, which data (``data``;
    None for the embedded default, so hashes from before it was added still match)."""
    hashed = {k: v for k, v in config.items() if k not in UNHASHED_KEYS}
    identity: dict[str, Any] = {"config": hashed, "args": list(normalize_args(extra_args))}
    if data is not None:
        identity["data"] = data
    if tune is not None:  # a tuned sweep's slot: the tuning settings and the slot decide what it trains
        identity["tune"] = tune
    payload = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("class_path", "?")).rsplit(".", 1)[-1]
    return str(value)


def settings(spec: SweepSpec) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """The sweep's settings before seeds: (label, dotted overrides, varied tag values)."""
    named = spec.points or [{}]
    combos = [dict(zip(spec.grid, values, strict=True)) for values in itertools.product(*spec.grid.values())]
    out = []
    for point in named:
        for combo in combos:
            overrides = {**{k: v for k, v in point.items() if k not in ("name", SPACE)}, **combo}
            parts = ([str(point["name"])] if "name" in point else []) + [
                f"{short_key(k)}={_fmt(v)}" for k, v in combo.items()]
            varied = {short_key(k): str(v) for k, v in overrides.items() if not isinstance(v, dict | list)}
            out.append((",".join(parts) or "base", overrides, varied))
    return out


def arms(spec: SweepSpec) -> list[tuple[str, dict[str, Any], dict[str, str], dict[str, Dimension]]]:
    """A tuned sweep's arms: each setting (label, overrides, varied tags) with its search space."""
    named = spec.points or [{}]
    per_point = len(settings(spec)) // len(named)
    out = []
    for i, (label, overrides, varied) in enumerate(settings(spec)):
        out.append((label, overrides, varied, spec.arm_space(named[i // per_point])))
    return out


def expand_tuned(spec: SweepSpec, extra_args: list[str] | tuple[str, ...] = ()) -> list[Point]:
    """A tuned sweep's points: ``tune.trials`` slots per arm, slot-major (every arm's trial 0,
    then every arm's trial 1, ...), so a sweep stopped halfway has spent the same budget on each arm.

    Every trial trains with the sweep's first seed. A slot's identity is its arm's config with its
    design row (qmc, random; tpe asks when the slot runs), the tuning settings and the slot number.
    """
    from lit_nn.data.datamodule import source_identity

    assert spec.tune is not None
    check_extra_args(extra_args)
    extra = tuple(extra_args)
    seed = spec.seeds[0]
    tune = spec.tune
    per_arm = []
    for label, overrides, varied, space in arms(spec):
        rows = design(space, tune.trials, tune.sampler, tune.seed)
        per_arm.append((label, overrides, varied, space, rows))
    points: list[Point] = []
    for slot in range(tune.trials):
        for label, overrides, varied, space, rows in per_arm:
            config = copy.deepcopy(spec.config)
            all_overrides = {**overrides, **{key: seed for key in spec.seed_keys}}
            params = rows[slot] if rows is not None else None
            for key, value in {**all_overrides, **(params or {})}.items():
                set_dotted(config, key, value)
            # the slot number too: two slots may draw the same setting (choices), and must both run
            identity = {**tune.identity(), "space": {k: vars(d) for k, d in sorted(space.items())}, "slot": slot}
            digest = config_hash(config, extra, source_identity(config.get("data")), identity)
            points.append(Point(label, seed, all_overrides, varied, config, extra, digest, trial=slot,
                                params=params, space=space, phase="tune"))
    return points


def expand_confirm(spec: SweepSpec, best: dict[str, dict[str, Any]],
                   extra_args: list[str] | tuple[str, ...] = ()) -> list[Point]:
    """The confirm phase's points: each arm's chosen setting (``best``: arm -> params; arms whose
    budget is not spent yet are absent) on every confirm seed, seed-major like a plain sweep."""
    from lit_nn.data.datamodule import source_identity

    assert spec.tune is not None
    extra = tuple(extra_args)
    points: list[Point] = []
    for seed in confirm_seeds(spec.tune.confirm.seeds, spec.seeds):
        for label, overrides, varied, space in arms(spec):
            if label not in best:
                continue
            config = copy.deepcopy(spec.config)
            all_overrides = {**overrides, **{key: seed for key in spec.seed_keys}}
            for key, value in {**all_overrides, **best[label]}.items():
                set_dotted(config, key, value)
            digest = config_hash(config, extra, source_identity(config.get("data")), {"phase": "confirm"})
            points.append(Point(label, seed, all_overrides, varied, config, extra, digest, params=best[label],
                                space=space, phase="confirm"))
    return points


def expand(spec: SweepSpec, extra_args: list[str] | tuple[str, ...] = ()) -> list[Point]:
    """All points, seed-major: every setting with seed 0, then every setting with seed 1, ...

    Seed-major order means that a sweep stopped halfway already has one run of each setting,
    so the report is a complete (if noisier) comparison.
    """
    from lit_nn.data.datamodule import source_identity  # imports Lightning: only when points are made

    if spec.tune is not None:
        return expand_tuned(spec, extra_args)
    check_extra_args(extra_args)
    extra = tuple(extra_args)
    points: list[Point] = []
    seen: dict[str, str] = {}
    for seed in spec.seeds:
        for label, overrides, varied in settings(spec):
            config = copy.deepcopy(spec.config)
            all_overrides = {**overrides, **{key: seed for key in spec.seed_keys}}
            for key, value in all_overrides.items():
                set_dotted(config, key, value)
            digest = config_hash(config, extra, source_identity(config.get("data")))
            name = f"{label}-s{seed}"
            if digest in seen:
                raise UserError(f"points {seen[digest]!r} and {name!r} resolve to the same config; "
                                "make them differ or remove one")
            seen[digest] = name
            points.append(Point(label, seed, all_overrides, varied, config, extra, digest))
    return points


def point_settings_count(spec: SweepSpec) -> int:
    """How many settings (points per seed) the sweep has."""
    return max(1, len(spec.points)) * len(list(itertools.product(*spec.grid.values())))
