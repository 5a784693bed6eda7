"""Report inputs and the table sections: claims and runs (the figure sections: figure_sections.py).

A section builder is a function ``ReportInputs -> list[Section]``; ``build.py:SECTIONS`` lists them in page
order. ``ReportInputs`` holds what they read (result rows, run folders, one run's artifacts per variant,
the computed claims and summary table) and writes figures through ``ReportInputs.figure``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from dimcollapse.records import is_accuracy
from dimcollapse.records.row import ResultRow, Row, Scalar
from dimcollapse.records.schema import JsonValue
from dimcollapse.report.seed_spread import SOURCE
from dimcollapse.study.results import read_json
from dimcollapse.track.verdict import collapse_verdict, embedding_verdict, rows_le_dims
from dimcollapse.utils.atomic import atomic_write_bytes
from dimcollapse.utils.html import N_LE_D_FLAG, Figure, Section, Table, figure_png

if TYPE_CHECKING:
    from dimcollapse.report.claims import ClaimRow

T = TypeVar("T")

RUN_COLUMNS = (
    ("run_id", "run"),
    ("variant", "variant"),
    ("seed", "seed"),
    ("steps", "steps"),
    ("planned_steps", "planned"),
    ("epochs", "epochs"),
    ("stop_reason", "stopped"),
    ("train_time_s", "train s"),
    ("monitor_warnings", "monitor warnings"),
    ("n_r", "N"),
    ("d_r", "D"),
    ("collapse", "verdict"),
)


@dataclass
class ReportInputs:
    """What the section builders read; ``written`` collects the figure files in the order written."""

    root: Path
    rows: list[ResultRow]
    dirs: dict[str, Path]  # run id -> run folder (finished runs)
    reps: dict[str, Path]  # variant -> the folder of its first seed (figures show one run per variant)
    arts: dict[str, dict[str, np.ndarray]]  # variant -> artifacts.npz of that run
    baselines: list[ResultRow]
    figdir: Path
    map_method: str = "auto"
    claims: list[ClaimRow] = field(default_factory=list)
    deferred: dict[str, dict[str, str]] = field(default_factory=dict)
    table: list[dict[str, str | int]] = field(default_factory=list)  # build.py's summary table
    written: list[str] = field(default_factory=list)

    def figure(self, make: Callable[[], Any], caption: str, fig_id: str) -> Figure:
        """Draw ``make()``, write it to ``figures/<fig_id>.png`` and return it for the page."""
        return _fig(make, caption, fig_id, self.figdir, self.written)


SectionBuilder = Callable[[ReportInputs], list[Section]]


def _fig(make: Callable[[], Any], caption: str, fig_id: str, figdir: Path, written: list[str]) -> Figure:
    png = figure_png(make())
    atomic_write_bytes(figdir / f"{fig_id}.png", png)
    written.append(f"{fig_id}.png")
    return Figure(png, caption, fig_id)


CLAIM_RULES = (
    "Each row compares a metric between group <b>a</b> and group <b>b</b> of this study; the verdict is "
    "computed from the results. Groups whose runs differ in steps, batch, data or evaluation settings "
    "are <b>not comparable</b> (no verdict). With several seeds per group the difference must exceed 2 "
    "Welch standard errors; with a <b>single seed</b> it must exceed 2 standard errors derived from the "
    "seed-to-seed spread measured for that metric (" + html.escape(SOURCE) + ")."
)


def deferred_claims(root: Path) -> dict[str, dict[str, str]]:
    """Claim id -> {claim, command, measured} of the study's ``longer_training`` list (study.yaml copy)."""
    import yaml

    from dimcollapse.study.grid import longer_training

    path = root / "study.yaml"
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}
    entries = raw.get("longer_training") if isinstance(raw, dict) else None
    return {e["claim"]: e for e in longer_training(entries)} if entries else {}


def claims_sections(inp: ReportInputs) -> list[Section]:
    """The computed claims (verdicts) and the claims the study lists as needing longer training."""
    claims, deferred = inp.claims, inp.deferred
    computed = [_claim_cells(c) for c in claims if c["verdict"] != "needs longer training"]
    later = [c for c in claims if c["verdict"] == "needs longer training"]
    cols = ["paper", "claim", "metric", "a", "a_val", "b", "b_val", "seeds", "verdict", "detail"]
    heads = ["paper", "claim", "metric", "group a", "a", "group b", "b", "seeds", "verdict", "basis"]
    main = Section("Claims of the papers", [CLAIM_RULES], [], section_id="section-claims")
    if computed:
        left = ["paper", "claim", "metric", "a", "b", "seeds", "detail"]
        main.tables.append(Table(computed, cols, heads, left=left, table_id="claims"))
    elif not later:
        main.paragraphs.append("This study covers none of the papers' comparisons.")
    out = [main]
    if later:
        rows_later = [
            {**c, "command": deferred[c["id"]]["command"], "measured": deferred[c["id"]]["measured"]}
            for c in later
        ]
        out.append(
            Section(
                "Claims that need longer training",
                [
                    "These runs are too short to test these claims, so no verdict is computed from them. "
                    "The measured result of the longer study and the command that reproduces it:"
                ],
                [
                    Table(
                        rows_later,
                        ["paper", "claim", "measured", "command"],
                        left=["paper", "claim", "measured", "command"],
                        table_id="claims-longer",
                    )
                ],
                section_id="section-claims-longer",
            )
        )
    return out


def monitor_warnings(run_dir: Path) -> list[str]:
    """The collapse monitor's warnings of a run (monitor.json), one line each: step, erank of r, best."""
    mon = read_json(run_dir / "monitor.json") or {}
    frac = float(mon.get("warn_fraction", 0.5))
    best, out = 0.0, []
    for h in mon.get("history", []):
        erank = float(h.get("erank_r", float("nan")))
        best = max(best, erank) if erank == erank else best
        if h.get("warning"):
            out.append(f"step {h.get('step')}: erank r {erank:.3g} < {frac:g} × best {best:.3g}")
    return out


def run_verdict(row: Row, run_dir: Path | None) -> str:
    """A run's one-line verdict: its monitor's over the history (monitor.json, else the record's
    ``monitor_verdict``), else ``embedding_verdict`` of its representation r as measured at the end."""
    mon = read_json(run_dir / "monitor.json") if run_dir is not None else None
    if mon and mon.get("history"):
        return collapse_verdict(mon)
    said = row.get("monitor_verdict")
    if isinstance(said, str) and said:
        return said
    return embedding_verdict({k: row.get(f"{k}_r") for k in ("n", "d", "erank", "collapsed_dims")})


def run_verdict_lines(inp: ReportInputs) -> list[str]:
    """``RUN: collapsing: yes/no (why)`` for every finished run, then its N <= D warning when so."""
    out = []
    for r in inp.rows:
        if r.get("status") != "done":
            continue
        out.append(f"{r['run_id']}: {run_verdict(r, inp.dirs.get(str(r['run_id'])))}")
        if rows_le_dims(r.get("n_r"), r.get("d_r")):
            out.append(f"warning: {r['run_id']}: N <= D ({r['n_r']} rows for {r['d_r']} dims of r)")
    return out


def runs_sections(inp: ReportInputs) -> list[Section]:
    """One row per run: what it trained (steps, epochs, why it stopped) and its collapse-monitor warnings."""
    table: list[dict[str, JsonValue]] = []
    dirs = inp.dirs
    for r in inp.rows:
        cells: dict[str, JsonValue] = {k: r.get(k) for k, _ in RUN_COLUMNS}
        d = dirs.get(str(r["run_id"]))
        warnings = monitor_warnings(d) if d is not None else []
        cells["monitor_warnings"] = "; ".join(warnings) if warnings else ("none" if d is not None else "–")
        if str(r.get("status", "")).startswith("failed"):
            cells["stop_reason"] = r.get("stop_reason") or "failed"
        else:
            cells["collapse"] = run_verdict(r, d)
        if rows_le_dims(r.get("n_r"), r.get("d_r")):
            cells["n_r"] = f"{r['n_r']} {N_LE_D_FLAG}"
        table.append(cells)
    runs = Section(
        "Runs",
        [
            "Every run: the steps and epochs it trained (planned: the schedule's length), whether it "
            "completed or why it stopped, and the collapse monitor's warnings (effective rank of r on the "
            "probe batch below the warning fraction of its best so far), the rows N and dimensions D of r "
            "at evaluation (flagged when N <= D: the rank measures are then bounded by N - 1) and the "
            "verdict (the monitor's over the run's history, else the final measurement's)."
        ],
        [
            Table(
                table,
                [k for k, _ in RUN_COLUMNS],
                [h for _, h in RUN_COLUMNS],
                left=["run_id", "variant", "stop_reason", "monitor_warnings", "collapse"],
                table_id="runs",
            )
        ],
        section_id="section-runs",
    )
    return [runs]


def _claim_cells(c: ClaimRow) -> dict[str, Scalar]:
    """Claim row with 'mean ± std (n)' cells; accuracies in %."""
    key = c["metric"]
    out: dict[str, Scalar] = {k: v for k, v in c.items() if isinstance(v, (str, int, float)) or v is None}
    sides = {"a": (c["a_mean"], c["a_std"], c["a_n"]), "b": (c["b_mean"], c["b_std"], c["b_n"])}
    for side, (m, sd, n) in sides.items():
        if m is None:
            out[f"{side}_val"] = "–"
            continue
        scale, unit = (100.0, "%") if is_accuracy(key) else (1.0, "")
        spread = f" ± {sd * scale:.2g}" if sd is not None else ""
        out[f"{side}_val"] = f"{m * scale:.4g}{spread}{unit} (n={n})"
    return out


def prefixed(arrays: Mapping[str, T], prefix: str) -> dict[str, T]:
    """The entries whose key starts with ``prefix``, keyed by the rest of the key."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
