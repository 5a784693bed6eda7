"""A paper's settings table, checked field by field against every run of its named studies.

A settings file (``configs/papers/settings/<paper>.yaml``) gives, per field, the paper's value and its
source (``paper: ...`` its text, ``code: ...`` the authors' public code, ``unstated: ...`` neither says,
our choice), and optionally ``deviation: <reason>`` when our run deliberately differs::

    paper: DirectCLR (Jing et al., ICLR 2022)
    fields:                       # every run of every study below
      model.backbone: {value: resnet50, source: "paper: sec. 6"}
    studies:
      dc_t1.yaml:
        fields: {...}             # every run of this study
        runs: {simclr_mlp: {model.projector: {value: mlp, source: "code: main.py"}}}

Run keys are names or shell patterns (``"*_so_*"``), applied in file order (later ones win); YAML
anchors and merge keys (``<<: *simclr``) share field blocks between runs.

Fields are dotted keys of the resolved run config (``objective.kwargs.temperature``) or derived ones:
``global_batch`` (batch x devices x nodes), ``views.<i>.<param>`` (view i's resolved augmentation
parameter), ``regularizers.<name>.<keyword>`` and ``regularizer_names``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.study.grid import Study, load_study
from dimcollapse.study.runner import resolve_configs
from dimcollapse.study.scale import global_batch
from dimcollapse.training.config import RunConfig, to_dict

SOURCES = ("paper", "code", "unstated")


@dataclass(frozen=True)
class FieldCheck:
    """One field of one run: the paper's value (with its source), ours, and whether they agree."""

    run: str
    field: str
    expected: Any
    actual: Any
    source: str
    deviation: str | None

    @property
    def matches(self) -> bool:
        """Our value equals the paper's (numbers to 1e-9 relative, lists element-wise)."""
        return same_value(self.expected, self.actual)

    @property
    def status(self) -> str:
        """'match', 'deviation' (listed, with its reason) or 'MISMATCH' (not listed: a bug)."""
        if self.matches:
            return "match"
        return "deviation" if self.deviation else "MISMATCH"


def same_value(a: Any, b: Any) -> bool:
    """Equality of config values: numbers to 1e-9 relative, tuples and lists alike, None only with None."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            _flatten(v, f"{prefix}{k}.", out)
    out[prefix.rstrip(".")] = node


def resolved_fields(cfg: RunConfig) -> dict[str, Any]:
    """Every dotted key of the run's config plus the derived fields (module docstring)."""
    from dimcollapse.data.view_recipes import apply_overrides, as_dict, base_views

    d = to_dict(cfg)
    out: dict[str, Any] = {}
    _flatten({k: v for k, v in d.items() if k != "regularizers"}, "", out)
    regs = d.get("regularizers") or []
    out["regularizer_names"] = "+".join(sorted(str(r["name"]) for r in regs)) or "none"
    for reg in regs:
        for k, v in (reg.get("kwargs") or {}).items():
            out[f"regularizers.{reg['name']}.{k}"] = v
    out["global_batch"] = global_batch(cfg)
    views = d["data"]["views"]
    kwargs = d["data"].get("kwargs") or {}
    size = int(views.get("image_size") or kwargs.get("image_size") or 32)
    overrides = {k: v for k, v in (views.get("overrides") or {}).items() if not k.startswith("local_")}
    params = apply_overrides(base_views(views["recipe"], size, int(kwargs.get("channels", 3))), overrides)
    for i in range(int(views.get("n_views", 2))):
        for k, v in as_dict(params[i % len(params)]).items():
            out[f"views.{i}.{k}"] = v
    return out


def _field_spec(where: str, name: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or "value" not in spec or not isinstance(spec.get("source"), str):
        raise ConfigError(f"{where}: field '{name}' needs 'value' and 'source' (paper: / code: / unstated:).")
    if spec["source"].split(":")[0] not in SOURCES:
        raise ConfigError(f"{where}: field '{name}' source must start with one of {', '.join(SOURCES)}.")
    return dict(spec)


@dataclass(frozen=True)
class PaperSettings:
    """A parsed settings file: the paper, its common fields and per-study / per-run fields."""

    paper: str
    path: Path
    fields: dict[str, dict[str, Any]]
    studies: dict[str, dict[str, Any]]

    def expected(self, study_key: str, variant: str) -> dict[str, dict[str, Any]]:
        """The field specs that apply to run ``variant`` of study ``study_key`` (later levels win)."""
        block = self.studies.get(study_key) or {}
        out = {**self.fields, **(block.get("fields") or {})}
        for pattern, specs in (block.get("runs") or {}).items():  # in file order: later patterns win
            if fnmatch.fnmatchcase(variant, pattern):
                out.update(specs)
        return out


def load_settings(path: str | Path) -> PaperSettings:
    """Parse and validate a settings table (every field with a value and a source)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"settings file '{p}' does not exist.")
    raw = yaml.safe_load(p.read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("studies"), dict):
        raise ConfigError(f"settings file '{p}' needs 'paper', 'fields' and 'studies'.")
    fields = {k: _field_spec(str(p), k, v) for k, v in (raw.get("fields") or {}).items()}
    studies: dict[str, dict[str, Any]] = {}
    for key, block in raw["studies"].items():
        block = block or {}
        sf = {k: _field_spec(f"{p} {key}", k, v) for k, v in (block.get("fields") or {}).items()}
        runs = {
            run: {k: _field_spec(f"{p} {key} {run}", k, v) for k, v in (specs or {}).items()}
            for run, specs in (block.get("runs") or {}).items()
        }
        studies[str(key)] = {"fields": sf, "runs": runs}
    return PaperSettings(str(raw.get("paper", p.stem)), p, fields, studies)


def check_study(
    settings: PaperSettings, study_key: str, study: Study | None = None, extra: list[str] | None = None
) -> list[FieldCheck]:
    """Resolve every run of ``study`` (default: the file ``study_key`` beside the settings folder) and
    compare it with the settings' fields for that study; per-run fields apply to runs of that name only."""
    if study is None:
        study = load_study(settings.path.parent.parent / study_key)
    checks: list[FieldCheck] = []
    for spec, cfg in resolve_configs(study, extra):
        actual = resolved_fields(cfg)
        for name, fs in settings.expected(study_key, spec.variant).items():
            checks.append(
                FieldCheck(
                    spec.run_id, name, fs["value"], actual.get(name), fs["source"], fs.get("deviation")
                )
            )
    return checks


def match_count(checks: list[FieldCheck]) -> tuple[int, int]:
    """(fields that match the paper / its code, fields checked)."""
    return sum(c.matches for c in checks), len(checks)
