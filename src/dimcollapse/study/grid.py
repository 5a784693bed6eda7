"""A study file: named run variants x a cartesian grid of config overrides x seeds.

    name: demo
    base: ../fmnist/base.yaml          # a training config (path relative to this file)
    set: {optim.max_time_minutes: 1}   # overrides applied to every run
    runs:                              # named variants, each a dict of dotted overrides
      - {name: simclr_mlp, set: {objective.name: simclr, model.projector.name: mlp}}
      - {name: simclr_none, set: {model.projector.name: none}}
    grid: {trainer.seed: [0, 1]}       # cartesian product over these keys

expands to len(runs) * prod(len(values)) runs, each with a unique, file-system-safe id.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dimcollapse.errors import ConfigError, InputError

MAX_RUNS = 5000  # a larger grid is refused: split it into several studies
_VALID_TOP = (
    "executor",
    "name",
    "base",
    "set",
    "runs",
    "grid",
    "description",
    "baselines",
    "theory",
    "longer_training",
    "paper",
    "scale",
)
_DEFERRED_KEYS = ("claim", "command", "measured")
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: its id, variant name, grid point and the full override list."""

    run_id: str
    variant: str
    grid_point: dict[str, Any]
    overrides: dict[str, Any]
    recipe: Path | None = None
    paper: dict[str, float | None] = field(default_factory=dict)  # the paper's reported numbers

    def dotlist(self) -> list[str]:
        """Overrides as ``key=value`` strings (values YAML-encoded)."""
        return [f"{k}={_yaml_scalar(v)}" for k, v in self.overrides.items()]


@dataclass
class Study:
    """A parsed study file."""

    name: str
    base: Path
    runs: list[RunSpec]
    path: Path
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def _yaml_scalar(v: Any) -> str:
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").strip()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not key.endswith(("kwargs", "regularizers")):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "+".join(_short(x) for x in v) or "none"
    if isinstance(v, dict):
        return "+".join(f"{_short(x)}" for x in v.values())
    return str(v)


def run_id(variant: str, grid_point: dict[str, Any]) -> str:
    """Stable directory name: ``variant`` then ``key-value`` for each grid key (last key segment)."""
    parts = [variant] + [f"{k.split('.')[-1]}-{_short(v)}" for k, v in grid_point.items()]
    return _SAFE.sub("_", "__".join(parts))


def expand(
    variants: list[dict[str, Any]],
    grid: dict[str, list[Any]],
    common: dict[str, Any] | None = None,
    folder: Path | None = None,
    paper_metric: str | None = None,
) -> list[RunSpec]:
    """Cartesian product variants x grid; later overrides win: common < variant < grid point."""
    common = _flatten(common or {})
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], list) or not grid[k]:
            raise ConfigError(f"study grid key '{k}' must map to a non-empty list of values.")
    count = max(1, len(variants)) * math.prod(len(grid[k]) for k in keys)
    if count > MAX_RUNS:
        raise ConfigError(
            f"the study expands to {count:,} runs, more than the limit of {MAX_RUNS:,}: split it into "
            "several studies (fewer grid values or variants each)."
        )
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for var in variants:
        if not isinstance(var, dict) or "name" not in var:
            raise ConfigError("each entry of 'runs' must be a mapping with a 'name' (and optional 'set').")
        unknown = set(var) - {"name", "set", "recipe", "paper"}
        if unknown:
            raise ConfigError(
                f"run '{var['name']}' has unknown key(s) {sorted(unknown)}; use 'name', 'recipe', 'set' "
                "and 'paper'."
            )
        paper = paper_numbers(str(var["name"]), var["paper"], paper_metric) if "paper" in var else {}
        recipe = None
        if var.get("recipe") is not None:
            recipe = ((folder or Path(".")) / str(var["recipe"])).resolve()
            if not recipe.is_file():
                raise InputError(f"run '{var['name']}': recipe '{recipe}' does not exist. Fix its path.")
        vset = _flatten(var.get("set") or {})
        for point in points or [{}]:
            rid = run_id(str(var["name"]), point)
            if rid in seen:
                raise ConfigError(
                    f"two runs of the study would share the id '{rid}': give variants unique names."
                )
            seen.add(rid)
            overrides = {**common, **vset, **point}
            specs.append(RunSpec(rid, str(var["name"]), dict(point), overrides, recipe, dict(paper)))
    return specs


def theory_options(option: Any) -> dict[str, Any] | None:
    """Keyword arguments for ``simulate all`` from a study's ``theory`` entry, or None when it is off.

    ``true`` or ``{enabled: true, ...}`` runs it; absent, ``false`` or ``{enabled: false, ...}`` does not.
    """
    if option is None or isinstance(option, bool):
        return {} if option else None
    if not isinstance(option, dict) or not isinstance(option.get("enabled", True), bool):
        raise ConfigError(
            f"study key 'theory' must be true, false or a mapping like {{enabled: true}}, got {option!r}."
        )
    if not option.get("enabled", True):
        return None
    return {k: v for k, v in option.items() if k != "enabled"}


def longer_training(entries: Any) -> list[dict[str, str]]:
    """Validate ``longer_training``: claims (by id) that the study's runs are too short to test, each with
    the ``command`` of the longer study and its ``measured`` result; the report lists them, no verdict."""
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and set(e) == set(_DEFERRED_KEYS) for e in entries
    ):
        raise ConfigError(
            "study key 'longer_training' must be a list of mappings with exactly the keys "
            f"{', '.join(_DEFERRED_KEYS)} (a claim id, the command of the longer study, its measured result)."
        )
    return [{k: " ".join(str(e[k]).split()) for k in _DEFERRED_KEYS} for e in entries]


MAX_VALUES = 1_000_000  # values of a study file once its YAML aliases are expanded


def expanded_size(node: Any) -> int:
    """Number of values in ``node`` with every shared (aliased) part counted each time it is used.

    Counted with memoisation by object identity, so an alias bomb is measured without expanding it.
    """
    memo: dict[int, int] = {}

    def size(x: Any) -> int:
        if isinstance(x, (dict, list)):
            if id(x) not in memo:
                memo[id(x)] = 0  # a cycle counts once (PyYAML can build recursive aliases)
                items = list(x.keys()) + list(x.values()) if isinstance(x, dict) else x
                memo[id(x)] = min(1 + sum(size(v) for v in items), MAX_VALUES + 1)
            return memo[id(x)]
        return 1

    return size(node)


def paper_reference(entry: Any) -> dict[str, Any] | None:
    """Validate a study's ``paper`` entry: ``{table: "DC table 1", metric: linear_top1, ...}`` (the paper's
    table, the metric key its numbers are compared with; other keys, e.g. ``protocol``, are kept as text)."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("table"), str) or not entry.get("metric"):
        raise ConfigError(
            "study key 'paper' must be a mapping with 'table' (the paper's table) and 'metric' (the metric "
            f"key its numbers are compared with, e.g. linear_top1), got {str(entry)[:60]!r}."
        )
    return {str(k): v if isinstance(v, (int, float)) else str(v) for k, v in entry.items()}


def paper_numbers(run: str, entry: Any, metric: str | None) -> dict[str, float | None]:
    """A run's ``paper`` entry as {metric: number}: a number (the study's metric), null (the paper reports
    none for this row) or a mapping {metric: number} (percent for accuracies, as the papers print)."""
    if isinstance(entry, dict):
        values = entry
    elif metric is None:
        raise ConfigError(f"run '{run}' gives a paper number but the study has no 'paper: {{metric: ...}}'.")
    elif entry is None:
        values = {metric: None}
    else:
        values = {metric: entry}
    out: dict[str, float | None] = {}
    for key, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(
                f"run '{run}': paper number for '{key}' must be a number or null, got {value!r}."
            )
        out[str(key)] = None if value is None else float(value)
    return out


def load_study(path: str | Path) -> Study:
    """Parse and validate a study YAML file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"study file '{p}' does not exist. Pass a YAML file (see configs/studies/).")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"study file '{p}' is not valid YAML: {e}. Fix the syntax.") from None
    if expanded_size(raw) > MAX_VALUES:
        raise InputError(
            f"study file '{p}' expands to more than {MAX_VALUES:,} values through YAML aliases (an alias "
            "bomb?); write the values out or use fewer aliases."
        )
    if not isinstance(raw, dict):
        raise InputError(f"study file '{p}' must be a mapping with keys {', '.join(_VALID_TOP)}.")
    unknown = sorted(set(raw) - set(_VALID_TOP))
    if unknown:
        raise ConfigError(
            f"study file '{p}' has unknown key(s) {unknown}. Valid keys: {', '.join(_VALID_TOP)}."
        )
    for key, kind in (("runs", list), ("grid", dict), ("set", dict)):
        if raw.get(key) is not None and not isinstance(raw[key], kind):
            example = "a list of {name: ..., set: {...}} entries" if kind is list else "a mapping of keys"
            raise ConfigError(
                f"study file '{p}': '{key}' must be {example}, got {type(raw[key]).__name__} "
                f"{str(raw[key])[:40]!r}."
            )
    runs = raw.get("runs") or [{"name": str(raw.get("name", p.stem))}]
    if not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"study file '{p}': each entry of 'runs' must be a mapping with a 'name'.")
    if "base" not in raw and not all(isinstance(r, dict) and r.get("recipe") for r in runs):
        raise ConfigError(f"study file '{p}' needs 'base' (a training config) or a 'recipe' in every run.")
    base = (p.parent / str(raw.get("base", runs[0].get("recipe")))).resolve()
    if not base.is_file():
        raise InputError(f"study '{p}': base config '{base}' does not exist. Fix the 'base' path.")
    paper = paper_reference(raw.get("paper"))
    metric = str(paper["metric"]) if paper else None
    specs = expand(runs, raw.get("grid") or {}, raw.get("set") or {}, p.parent, metric)
    options = {k: raw[k] for k in ("baselines", "theory", "longer_training", "scale", "executor") if k in raw}
    if "baselines" in options and not isinstance(options["baselines"], bool):
        raise ConfigError(
            f"study file '{p}': 'baselines' must be true or false, got {options['baselines']!r}."
        )
    if paper:
        options["paper"] = paper
    theory_options(options.get("theory"))  # a malformed entry fails here, before anything trains
    if "longer_training" in options:
        options["longer_training"] = longer_training(options["longer_training"])
    return Study(str(raw.get("name", p.stem)), base, specs, p, str(raw.get("description", "")), options)
