"""`simulate all`: run the three experiments (and the dot-loss comparisons) and write one HTML page.

The page embeds every figure as base64 PNG and a verdict table built from the claims each experiment
computed from its own numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from dimcollapse.theory.experiments import make_config, run_experiment, write_outputs
from dimcollapse.theory.verdict import ClaimDict
from dimcollapse.utils.atomic import atomic_write_json, atomic_write_text, ensure_writable_dir
from dimcollapse.utils.html import Figure, Section, Table
from dimcollapse.utils.html import render_page as html_page

# (experiment, loss override or None for its default): the dot-loss runs are the paper's released script
PLAN: tuple[tuple[str, str | None], ...] = (
    ("augmentation", None),
    ("augmentation", "dot"),
    ("alignment", None),
    ("alignment", "dot"),
    ("depth", None),
)


class TheoryRun(TypedDict):
    """One experiment run of ``simulate all``: its loss, time, results file and figures."""

    experiment: str
    loss: str
    seconds: float
    results: str
    figures: list[str]


class TheorySummary(TypedDict):
    """``theory/results.json`` of ``simulate all``: the runs, every claim checked, time, the page."""

    experiment: str
    runs: list[TheoryRun]
    claims: list[ClaimDict]
    seconds: float
    page: NotRequired[str]


def run_all(out: str | Path, **overrides: Any) -> TheorySummary:
    """Run PLAN; ``overrides`` (seed/steps/lr) apply to every run; a given loss skips the comparisons."""
    out = ensure_writable_dir(out)
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    plan = PLAN if overrides.get("loss") is None else tuple((e, None) for e, lo in PLAN if lo is None)
    for experiment, loss in plan:
        cfg = make_config(experiment, **{**overrides, **({"loss": loss} if loss else {})})
        res = run_experiment(experiment, cfg)
        write_outputs(res, out, name=f"results_{experiment}_{cfg.loss}.json")
        runs.append(res)
    claims: list[ClaimDict] = [c for r in runs for c in r["claims"]]
    summary: TheorySummary = {
        "experiment": "all",
        "runs": [
            {
                "experiment": r["experiment"],
                "loss": r["config"]["loss"],
                "seconds": r["seconds"],
                "results": f"results_{r['experiment']}_{r['config']['loss']}.json",
                "figures": r["figures"],
            }
            for r in runs
        ],
        "claims": claims,
        "seconds": time.perf_counter() - start,
    }
    atomic_write_text(out / "index.html", render_page(summary, out))
    summary["page"] = "index.html"
    atomic_write_json(out / "results.json", summary)
    return summary


def render_page(summary: TheorySummary, folder: Path) -> str:
    """HTML page: the verdict table (claim, measured numbers, holds / does not hold) and the figures."""
    claims = [
        {
            "experiment": c["experiment"],
            "claim": c["claim"],
            "measured": c["measured"],
            "verdict": "holds" if c["holds"] else "does not hold",
        }
        for c in summary["claims"]
    ]
    cols = ["experiment", "claim", "measured", "verdict"]
    held = sum(c["holds"] for c in summary["claims"])
    verdicts = Section(
        "Claims checked by simulation",
        [
            f"{held} of {len(claims)} claims hold in this run ({summary['seconds']:.1f} s). Each verdict is "
            "computed from the measured numbers next to it; see docs/theory.md for the settings."
        ],
        [Table(claims, cols, left=cols)],
        section_id="claims",
    )
    runs = [
        Section(
            f"{run['experiment']} ({run['loss']} loss, {run['seconds']:.1f} s)",
            figures=[Figure((folder / name).read_bytes(), name) for name in run["figures"]],
        )
        for run in summary["runs"]
    ]
    return html_page("DirectCLR toy theory: claims checked by simulation", "", [verdicts, *runs])
