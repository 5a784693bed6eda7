"""`simulate all`: run the three experiments (and the dot-loss comparisons) and write one HTML page.

The page embeds every figure as base64 PNG and a verdict table built from the claims each experiment
computed from its own numbers.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

from dimcollapse.theory.experiments import make_config, run_experiment, write_outputs
from dimcollapse.utils.atomic import atomic_write_json, atomic_write_text, ensure_writable_dir

# (experiment, loss override or None for its default): the dot-loss runs are the paper's released script
PLAN: tuple[tuple[str, str | None], ...] = (
    ("augmentation", None),
    ("augmentation", "dot"),
    ("alignment", None),
    ("alignment", "dot"),
    ("depth", None),
)


def run_all(out: str | Path, **overrides: Any) -> dict[str, Any]:
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
    claims = [c for r in runs for c in r["claims"]]
    summary = {
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


def render_page(summary: dict[str, Any], folder: Path) -> str:
    """HTML page: the verdict table (claim, measured numbers, holds / does not hold) and the figures."""
    rows = "\n".join(
        f"<tr class='{'ok' if c['holds'] else 'no'}'><td>{html.escape(c['experiment'])}</td>"
        f"<td>{html.escape(c['claim'])}</td><td>{html.escape(c['measured'])}</td>"
        f"<td>{'holds' if c['holds'] else 'does not hold'}</td></tr>"
        for c in summary["claims"]
    )
    figs = []
    for run in summary["runs"]:
        figs.append(
            f"<h2>{html.escape(run['experiment'])} ({html.escape(run['loss'])} loss, "
            f"{run['seconds']:.1f} s)</h2>"
        )
        for name in run["figures"]:
            data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
            figs.append(
                f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    held = sum(c["holds"] for c in summary["claims"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dimcollapse: DirectCLR toy theory</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
tr.ok td:last-child {{ color: #186a1f; font-weight: bold; }}
tr.no td:last-child {{ color: #a11; font-weight: bold; }}
img {{ max-width: 100%; }} figure {{ margin: 1em 0; }}
</style></head><body>
<h1>DirectCLR toy theory: claims checked by simulation</h1>
<p>{held} of {len(summary["claims"])} claims hold in this run ({summary["seconds"]:.1f} s). Each verdict
is computed from the measured numbers next to it; see docs/theory.md for the settings.</p>
<table><tr><th>experiment</th><th>claim</th><th>measured</th><th>verdict</th></tr>
{rows}
</table>
{"".join(figs)}
</body></html>
"""
