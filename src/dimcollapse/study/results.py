"""Gather a study's run folders into one table: results.csv and results.json (written atomically)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from dimcollapse.errors import InputError
from dimcollapse.records import RunRecord, read_record
from dimcollapse.records.row import ResultRow, Scalar
from dimcollapse.records.schema import RECORD_KEY, VERSION_KEY, JsonObject
from dimcollapse.regularizers.coefficients import weight_text
from dimcollapse.utils.atomic import atomic_write_json, atomic_write_text

ID_COLUMNS = (
    "run_id",
    "variant",
    "status",
    "objective",
    "projector",
    "regularizers",
    "seed",
    "steps",
    "epochs",
    "planned_steps",
    "stop_reason",
)


class RunDescription(TypedDict):
    """The columns ``describe_config`` reads from a run's config (regularizer weights as used)."""

    objective: Scalar
    projector: Scalar
    backbone: Scalar
    regularizers: str
    regularizer_weights: str
    seed: Scalar
    dataset: Scalar
    batch_size: Scalar
    image_size: Scalar


def describe_config(cfg: Mapping[str, Any]) -> RunDescription:
    """The fields a claim selects on and the data settings it checks, read from a run's config dict
    (regularizer weights as used: the default coefficient when the config gives none)."""
    regs = sorted(str(r.get("name")) for r in cfg.get("regularizers") or [])
    weights = sorted(weight_text(str(r.get("name")), r.get("kwargs")) for r in cfg.get("regularizers") or [])
    data = cfg.get("data") or {}
    return {
        "objective": cfg.get("objective", {}).get("name"),
        "projector": cfg.get("model", {}).get("projector"),
        "backbone": cfg.get("model", {}).get("backbone"),
        "regularizers": "+".join(regs),
        "regularizer_weights": "+".join(weights),
        "seed": cfg.get("trainer", {}).get("seed"),
        "dataset": data.get("name"),
        "batch_size": data.get("batch_size"),
        "image_size": (data.get("views") or {}).get("image_size"),
    }


def result_row(run_id: str, variant: str, status: str, description: RunDescription) -> ResultRow:
    """A result row: the run's identity, then the columns of its description (``describe_config``)."""
    return ResultRow(run_id, variant, status, dict(cast(Mapping[str, Scalar], description)))


def flat_scalars(metrics: Mapping[str, object]) -> dict[str, Scalar]:
    """Top-level scalar entries of a metrics dict (nested dicts/lists are left to metrics.json; the record's
    kind and schema version are the file's, not a result column)."""
    out: dict[str, Scalar] = {}
    for k, v in metrics.items():
        if (isinstance(v, (int, float, str, bool)) or v is None) and k not in (RECORD_KEY, VERSION_KEY):
            out[k] = v
    return out


def run_metrics(path: Path) -> JsonObject | None:
    """A finished run's metrics.json as its record's flat fields (any schema version; None when the file is
    missing or unreadable, i.e. the run did not finish); a newer schema version raises InputError."""
    raw = read_json(path)
    if raw is None:
        return None
    return dict(RunRecord.from_json(raw, str(path)).fields())


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when missing or unreadable (a run killed mid-write)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_results(out_dir: Path, rows: Sequence[ResultRow]) -> None:
    """results.json (list of rows) and results.csv (union of columns, id columns first)."""
    atomic_write_json(out_dir / "results.json", [r.to_json() for r in rows])
    cols = list(ID_COLUMNS)
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in cols})
    atomic_write_text(out_dir / "results.csv", buf.getvalue())


def load_results(study_dir: str | Path) -> list[ResultRow]:
    """Rows of a study folder's results.json; a single run folder gives one row from its run record
    (metrics.json of any schema version; a newer version or a corrupt file raises InputError)."""
    d = Path(study_dir)
    res = d / "results.json"
    if res.is_file():
        try:
            data = json.loads(res.read_text())
        except (OSError, ValueError) as e:
            data = e
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(
                f"'{res}' is not a study's results (unreadable, or not a JSON list of rows); rerun "
                "`dimcollapse study` on the study file to rebuild it from the run folders."
            )
        return [ResultRow.from_json(r, str(res)) for r in data]
    if not (d / "metrics.json").is_file():
        return []
    record = read_record(d / "metrics.json")  # any schema version; a newer one is one clear error
    if not isinstance(record, RunRecord):
        raise InputError(
            f"'{d / 'metrics.json'}' holds an analysed embedding, not a run; compare it with "
            "`dimcollapse report` on several folders."
        )
    metrics = record.fields()
    cfg = read_json(d / "config.json") or {}
    if not cfg and (d / "config.yaml").is_file():
        import yaml

        cfg = yaml.safe_load((d / "config.yaml").read_text()) or {}
    row = result_row(d.name, d.name, "done", describe_config(cfg))
    row.update(flat_scalars(metrics))
    return [row]
