"""The rows of the comparison page, read from folders of any kind through the result records.

A folder contributes: a run (its ``RunRecord``, the representation r), a study (each finished run under
``runs/``), ``analyze`` output (its ``EmbeddingRecord``), or only a monitor.json (``CollapseMonitor`` /
``Tracker``: the last measurement); a list of checkpoints (``.ckpt`` files) contributes one row per
checkpoint, evaluated on its run's data, and one curve per run. A folder that cannot be read (corrupt
files, another schema version, garbage artifacts) is skipped with the reason; only when nothing is left
is it an error.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dimcollapse import errors
from dimcollapse.errors import DimCollapseError, InputError
from dimcollapse.records import EmbeddingRecord, Record, RunRecord, read_record
from dimcollapse.records.embedding import is_number
from dimcollapse.records.monitor import MonitorRecord, record_step
from dimcollapse.records.row import as_finite, as_number
from dimcollapse.records.schema import JsonObject, JsonValue
from dimcollapse.study.results import read_json
from dimcollapse.track.verdict import collapse_verdict, embedding_verdict, rows_le_dims

# what a broken file raises on its way in (np.load of garbage, int(inf), a history without steps, ...)
UNREADABLE = (DimCollapseError, OSError, ValueError, KeyError, TypeError, OverflowError, EOFError,
              zipfile.BadZipFile)  # fmt: skip
History = list[MonitorRecord]  # monitor records with a finite step, by step
Warn = Callable[[str], None]


def stderr_warning(text: str) -> None:
    """One line ``warning: ...`` on stderr (what the CLI shows for a skipped input)."""
    sys.stderr.write(f"warning: {errors.one_line(text)}\n")


@dataclass
class CompareRow:
    """One row of the page: the shown embedding's n, d, catalogue metrics and spectrum, the run's
    accuracies and trained steps, the per-layer weight statistics of its last monitor record, and the
    one-line verdict (the monitor's over its history, else ``embedding_verdict`` of this measurement)."""

    name: str
    folder: str
    source: str
    embedding: str
    n: int | None = None
    d: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    accuracies: dict[str, float] = field(default_factory=dict)
    steps: int | None = None
    spectrum: np.ndarray | None = None
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    verdict: str = ""

    @property
    def rows_le_dims(self) -> bool:
        """True when the row was measured on N <= D rows (its rank metrics are bounded by N - 1)."""
        return rows_le_dims(self.n, self.d)


@dataclass
class Collected:
    """Rows, curves against the step (name -> records with ``step``) and the skipped inputs (why)."""

    rows: list[CompareRow] = field(default_factory=list)
    curves: dict[str, History] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def clean_history(raw: object) -> History:
    """The records of a monitor history that carry a finite numeric ``step``, by step."""
    if not isinstance(raw, list):
        raise InputError("its history is not a list of records")
    steps = [(step, h) for h in raw if isinstance(h, dict) and (step := as_finite(h.get("step"))) is not None]
    return [h for _, h in sorted(steps, key=lambda pair: pair[0])]


def _output_of(rec: Mapping[str, JsonValue]) -> str:
    """The first output measured in a monitor record (``spectrum_<o>``), 'r' when none."""
    return next((k[len("spectrum_") :] for k in rec if k.startswith("spectrum_")), "r")


def _monitor_row(name: str, folder: Path, history: History, mon: Mapping[str, JsonValue]) -> CompareRow:
    """A row from a monitor's last record: its first output's metrics, spectrum and layers, its probe's
    size and the verdict over the history."""
    last = history[-1]
    out = _output_of(last)
    metrics = {
        k[: -len(out) - 1]: v
        for k, raw in last.items()
        if k.endswith(f"_{out}") and (v := as_number(raw)) is not None
    }
    spectrum = last.get(f"spectrum_{out}")
    step = record_step(last)
    row = CompareRow(name, str(folder), "monitor.json", f"{out} (monitor, step {step})")
    row.metrics, row.steps = metrics, step
    row.spectrum = None if spectrum is None else np.asarray(spectrum, dtype=np.float64)
    row.d = None if row.spectrum is None else int(row.spectrum.size)
    row.layers = _layers(last.get("layers"))
    size = mon.get("probe_size")
    row.n = int(size) if isinstance(size, int) and not isinstance(size, bool) else None
    row.verdict = collapse_verdict({**mon, "history": history})
    return row


def _layers(raw: object) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        return {}
    return {
        str(n): {k: float(v) for k, v in s.items() if is_number(v)}
        for n, s in raw.items()
        if isinstance(s, dict)
    }


def _record_row(name: str, folder: Path, rec: Record) -> CompareRow:
    """A row from a run's record (its r) or an analysed embedding's record."""
    emb: EmbeddingRecord | None = rec.output("r") if isinstance(rec, RunRecord) else rec
    source = rec.details.get("eval_dataset") if isinstance(rec, RunRecord) else None
    if isinstance(rec, EmbeddingRecord):
        source = rec.details.get("data") or rec.details.get("source")
    row = CompareRow(
        name, str(folder), str(source or ""), "r (run)" if isinstance(rec, RunRecord) else "file"
    )
    if isinstance(rec, EmbeddingRecord):
        row.embedding = str(rec.details.get("embedding", "file"))
        row.layers = _layers(rec.details.get("layers"))  # analyze --model: each weight layer's statistics
    if emb is not None:
        row.n, row.d, row.metrics = emb.n, emb.d, {k: float(v) for k, v in emb.metrics.items()}
        row.spectrum = None if emb.spectrum is None else np.asarray(emb.spectrum, dtype=np.float64)
        row.verdict = embedding_verdict({"n": emb.n, "d": emb.d, **row.metrics})
    said = rec.details.get("monitor_verdict" if isinstance(rec, RunRecord) else "verdict")
    if isinstance(said, str) and said:
        row.verdict = said
    if isinstance(rec, RunRecord):
        row.accuracies, row.steps = dict(rec.accuracies), rec.training.steps
        art = folder / "artifacts.npz"
        if row.spectrum is None and art.is_file():
            with np.load(art, allow_pickle=False) as z:
                row.spectrum = (
                    np.asarray(z["spectrum_r"], dtype=np.float64) if "spectrum_r" in z.files else None
                )
    return row


def _folder(name: str, folder: Path, got: Collected, warn: Callable[[str], None]) -> bool:
    """Add the row (and monitor curve) of one run / analyze / monitor folder; False when it holds none."""
    has_metrics, mon_path = (folder / "metrics.json").is_file(), folder / "monitor.json"
    if not has_metrics and not mon_path.is_file():
        return False
    history: History = []
    mon: JsonObject = {}
    if mon_path.is_file():
        try:
            read = read_json(mon_path)
            if read is None:
                raise InputError("not valid JSON")
            mon = read
            history = clean_history(mon.get("history", []))
        except UNREADABLE as e:
            if not has_metrics:
                raise InputError(f"monitor.json: {e}") from None
            warn(f"{mon_path}: ignored ({e}); the folder's metrics are still compared")
    if has_metrics:
        row = _record_row(name, folder, read_record(folder / "metrics.json"))
        if history:
            row.layers = _layers(history[-1].get("layers"))
            row.verdict = collapse_verdict({**mon, "history": history})
    elif history:
        row = _monitor_row(name, folder, history, mon)
    else:
        raise InputError("monitor.json holds no measurement with a step")
    got.rows.append(row)
    if history:
        got.curves[name] = history
    return True


def _checkpoints(paths: Sequence[Path], got: Collected, warn: Callable[[str], None]) -> None:
    """Rows for checkpoint files (evaluated on their run's data) and one curve per run folder."""
    from dimcollapse.training.evaluate_run import checkpoint_record

    series: dict[str, History] = {}
    for p in paths:
        run = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
        try:
            rec = checkpoint_record(p)
            row = _record_row(f"{run}/{p.stem}", p, rec)
            step = int(rec.training.steps or 0)
        except UNREADABLE as e:
            got.skipped.append((str(p), str(e)))
            warn(f"skipped '{p}': {e}")
            continue
        row.steps, row.embedding = step, f"r (checkpoint, step {step})"
        got.rows.append(row)
        point: MonitorRecord = {"step": step}
        point.update({f"{k}_r": v for k, v in row.metrics.items()})
        series.setdefault(f"{run} (checkpoints)", []).append(point)
    for name, hist in series.items():
        got.curves[name] = sorted(hist, key=record_step)


def collect(folders: Sequence[str | Path], warn: Callable[[str], None] = lambda _: None) -> Collected:
    """Rows of every folder (a study: each finished run; checkpoints: one row each). Unreadable inputs are
    skipped and reported through ``warn``; a folder holding no result at all, or nothing left, raises."""
    got = Collected()
    paths = [Path(f) for f in folders]
    for p in paths:
        if p.is_file() and p.suffix == ".ckpt":
            continue
        runs = (
            sorted(q.parent for q in (p / "runs").glob("*/metrics.json"))
            if (p / "results.json").is_file()
            else []
        )
        items = [(f"{p.name}/{r.name}", r) for r in runs] or [(p.name, p)]
        found = False
        for name, folder in items:
            try:
                found = _folder(name, folder, got, warn) or found
            except UNREADABLE as e:
                got.skipped.append((str(folder), str(e)))
                warn(f"skipped '{folder}': {e}")
                found = True
        if not found:
            raise InputError(
                f"'{p}' holds no metrics.json (a run or `analyze` output), no monitor.json and no "
                "results.json (a study). Pass folders written by train, study, analyze or a monitor, "
                "or checkpoint files (.ckpt)."
            )
    _checkpoints([p for p in paths if p.is_file() and p.suffix == ".ckpt"], got, warn)
    if not got.rows:
        why = "; ".join(f"{f}: {r}" for f, r in got.skipped)
        raise InputError(f"nothing to compare: every input was unreadable ({why}).")
    _unique_names(got.rows)
    return got


def collect_records(records: Sequence[tuple[str, Path, Record]]) -> Collected:
    """Rows of records held in memory (``analyze`` and ``analyze --compare`` pass the records they have
    just built): (name, the folder the record belongs to, record); no metrics.json is read."""
    if not records:
        raise InputError("nothing to compare: no result records given.")
    got = Collected(rows=[_record_row(name, folder, rec) for name, folder, rec in records])
    _unique_names(got.rows)
    return got


def _unique_names(rows: list[CompareRow]) -> None:
    names = [r.name for r in rows]
    for i, r in enumerate(rows):
        if names.count(r.name) > 1:
            r.name = f"{i + 1:02d}_{r.name}"
