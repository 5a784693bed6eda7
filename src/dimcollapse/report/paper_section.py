"""The report's "paper vs measured" section: for a study whose runs carry the paper's numbers
(configs/papers/), each row's paper number beside the measured one, with the protocols of both."""

from __future__ import annotations

import html

import yaml

from dimcollapse.report.sections import ReportInputs
from dimcollapse.study.paper import paper_rows
from dimcollapse.utils.html import Section, Table


def _paper_entry(inp: ReportInputs) -> dict[str, object]:
    """The study's ``paper`` entry from the copy of the study file in its folder ({} when absent)."""
    try:
        raw = yaml.safe_load((inp.root / "study.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    entry = raw.get("paper") if isinstance(raw, dict) else None
    return entry if isinstance(entry, dict) else {}


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def paper_sections(inp: ReportInputs) -> list[Section]:
    """One table: run, metric, the paper's number, ours (mean over finished seeds), ours - paper."""
    rows = paper_rows(inp.rows)
    if not rows:
        return []
    entry = _paper_entry(inp)
    cells = [
        {
            "variant": r.variant,
            "metric": r.metric,
            "paper": _cell(r.paper),
            "measured": _cell(r.measured),
            "seeds": r.seeds,
            "diff": _cell(r.difference, signed=True),
        }
        for r in rows
    ]
    text = [
        f"The paper's numbers ({html.escape(str(entry.get('table', 'as given in the study file')))}) beside "
        "ours: accuracies in percent, the mean over finished seeds; '-' where the paper reports no number "
        "or the run has not finished.",
    ]
    if entry.get("protocol"):
        text.append(f"The paper's evaluation: {html.escape(str(entry['protocol']))}.")
    protocols = sorted({str(r.get("eval_linear_probe")) for r in inp.rows if r.get("eval_linear_probe")})
    if protocols:
        text.append(f"Ours (linear probe): {html.escape(', '.join(protocols))}.")
    cols = ["variant", "metric", "paper", "measured", "seeds", "diff"]
    heads = ["run", "metric", "paper", "measured", "seeds", "measured - paper"]
    table = Table(cells, cols, heads, left=["variant", "metric"], table_id="paper")
    return [Section("Paper vs measured", text, [table], section_id="section-paper")]
