"""Report sections: claims, runs, rank-limited layers and layer alignment (used by build.py)."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dimcollapse.report import study_figures
from dimcollapse.report.claims import evaluate_claims
from dimcollapse.report.html import Figure, Section, Table, figure_png
from dimcollapse.report.seed_spread import SOURCE
from dimcollapse.study.results import read_json
from dimcollapse.utils.atomic import atomic_write_bytes

T = TypeVar("T")

ACCURACY_KEYS = {"knn_k20_top1", "knn_k200_top1", "linear_top1"}
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
)


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


def _claims_sections(
    root: Path, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[Section], list[dict[str, Any]]]:
    """The computed claims (verdicts) and the claims the study lists as needing longer training."""
    deferred = deferred_claims(root)
    claims = [c.as_dict() for c in evaluate_claims(rows, deferred=deferred)]
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
    return out, claims


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


def _runs_section(rows: Sequence[Mapping[str, Any]], dirs: Mapping[str, Path]) -> Section:
    """One row per run: what it trained (steps, epochs, why it stopped) and its collapse-monitor warnings."""
    table = []
    for r in rows:
        cells: dict[str, Any] = {k: r.get(k) for k, _ in RUN_COLUMNS}
        d = dirs.get(str(r["run_id"]))
        warnings = monitor_warnings(d) if d is not None else []
        cells["monitor_warnings"] = "; ".join(warnings) if warnings else ("none" if d is not None else "–")
        if str(r.get("status", "")).startswith("failed"):
            cells["stop_reason"] = r.get("stop_reason") or "failed"
        table.append(cells)
    return Section(
        "Runs",
        [
            "Every run: the steps and epochs it trained (planned: the schedule's length), whether it "
            "completed or why it stopped, and the collapse monitor's warnings (effective rank of r on the "
            "probe batch below the warning fraction of its best so far)."
        ],
        [
            Table(
                table,
                [k for k, _ in RUN_COLUMNS],
                [h for _, h in RUN_COLUMNS],
                left=["run_id", "variant", "stop_reason", "monitor_warnings"],
                table_id="runs",
            )
        ],
        section_id="section-runs",
    )


def _rank_limits(arts: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, tuple[int, int]]:
    """'weight/<layer>' / 'feature/<block>' -> (bound, width) over all runs' artifacts."""
    out: dict[str, tuple[int, int]] = {}
    for a in arts.values():
        for key, v in _prefixed(a, "rank_limit/").items():
            out[key] = (int(v[0]), int(v[1]))
    return out


def _rank_limit_tables(limits: Mapping[str, tuple[int, int]]) -> list[Table]:
    rows = [
        {
            "what": key.split("/", 1)[0],
            "layer": key.split("/", 1)[1],
            "bound": bound,
            "width": width,
            "note": f"rank <= {bound} of {width} by construction; not collapse",
        }
        for key, (bound, width) in limits.items()
    ]
    if not rows:
        return []
    return [
        Table(
            rows,
            ["what", "layer", "bound", "width", "note"],
            ["weight / feature", "layer", "max rank", "width", "note"],
            left=["what", "layer", "note"],
            table_id="rank-limited",
        )
    ]


def _alignment_section(
    rows: Sequence[Mapping[str, Any]],
    reps: Mapping[str, Path],
    arts: Mapping[str, Mapping[str, np.ndarray]],
    figdir: Path,
    written: list[str],
) -> Section | None:
    """Heat maps of |A| and each run's mean |diag A| against random orthonormal bases of the same sizes."""
    align = {
        v: (a["alignment"], [str(x) for x in a.get("alignment_layers", [])])
        for v, a in arts.items()
        if "alignment" in a
    }
    if not align:
        return None
    random: dict[str, tuple[float, float, float]] = {}
    scores: dict[str, tuple[float, float, float, float]] = {}
    for v in align:
        j = read_json(reps[v] / "artifacts.json") or {}
        keys = ("alignment_random_mean", "alignment_random_low", "alignment_random_high")
        if all(isinstance(j.get(k), (int, float)) for k in keys):
            random[v] = (float(j[keys[0]]), float(j[keys[1]]), float(j[keys[2]]))
            scores[v] = (float(j.get("alignment_mean_diag", float("nan"))), *random[v])
    figs = [
        _fig(
            lambda: study_figures.alignment_panels(align, random),
            "Alignment heat maps (first 64 directions shown; the score uses all).",
            "alignment",
            figdir,
            written,
        )
    ]
    text = ["|A| = |V2^T U1| (DirectCLR theorem 2): a bright diagonal means the layers have aligned."]
    if scores:
        figs.insert(
            0,
            _fig(
                lambda: study_figures.alignment_vs_random(scores),
                "Mean |diag A| per run (red) and the same score for random orthonormal bases of the same "
                "sizes (grey band: 5-95% of 64 draws). Inside the band: no more aligned than chance.",
                "alignment_vs_random",
                figdir,
                written,
            ),
        )
        inside = [v for v, (val, _, lo, hi) in scores.items() if lo <= val <= hi]
        refs = [f"{html.escape(v)} {m:.2f} (5-95% {lo:.2f}-{hi:.2f})" for v, (m, lo, hi) in random.items()]
        text.append(
            "Random reference: random orthonormal bases of the same sizes score " + "; ".join(refs) + "."
        )
        if inside:
            text[-1] += (
                f" Within the random band (no alignment beyond chance): {html.escape(', '.join(inside))}."
            )
    return Section("Alignment of the last two layers", text, [], figs, "alignment")


def _claim_cells(c: Mapping[str, Any]) -> dict[str, Any]:
    """Claim row with 'mean ± std (n)' cells; accuracies in %."""
    key = str(c["metric"])
    out = dict(c)
    for side in ("a", "b"):
        m, sd, n = c.get(f"{side}_mean"), c.get(f"{side}_std"), c.get(f"{side}_n", 0)
        if m is None:
            out[f"{side}_val"] = "–"
            continue
        scale, unit = (100.0, "%") if key in ACCURACY_KEYS else (1.0, "")
        spread = f" ± {sd * scale:.2g}" if sd is not None else ""
        out[f"{side}_val"] = f"{m * scale:.4g}{spread}{unit} (n={n})"
    return out


def _prefixed(arrays: Mapping[str, T], prefix: str) -> dict[str, T]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
