"""``dimcollapse report``: one self-contained HTML page (and PNG figures) for a run or a study folder.

Sections: claims (verdicts computed from the results), accuracy and collapse table (mean +- std over
seeds, with raw-pixel and random-init baselines), spectra of r and z, metrics over training, where in
the encoder collapse happens (per-layer weight and feature spectra), alignment of the last two layers,
2-D maps of r, and the toy-theory summary when the folder holds one.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from statistics import mean, stdev
from typing import Any, TypeVar

import numpy as np

from dimcollapse.diagnostics import catalogue
from dimcollapse.errors import InputError
from dimcollapse.report import plots, study_figures
from dimcollapse.report.claims import evaluate_claims
from dimcollapse.report.html import Figure, Section, Table, figure_png, render_page
from dimcollapse.report.seed_spread import SOURCE
from dimcollapse.study.results import load_results, read_json
from dimcollapse.utils.atomic import atomic_write_bytes, atomic_write_text, ensure_writable_dir

TABLE_METRICS = (
    ("knn_k20_top1", "kNN k=20"),
    ("knn_k200_top1", "kNN k=200"),
    ("linear_top1", "linear probe"),
    *[
        (f"{k}_r", f"{catalogue.spec(k).header} r")
        for k in ("erank", "rankme", "lid_mle_gmean", "collapsed_dims")
    ],
    ("d_r", "dim r"),
    ("erank_z", f"{catalogue.spec('erank').header} z"),
    ("weight_erank_mean", "weight erank/size"),
    ("train_time_s", "train s"),
)
T = TypeVar("T")
ACCURACY_KEYS = {"knn_k20_top1", "knn_k200_top1", "linear_top1"}
# kNN k=200 of each variant against the baselines (points): does self-supervision add anything?
GAIN_COLUMNS = (
    ("knn_gain_raw", "kNN k=200 vs raw pixels", "raw pixels"),
    ("knn_gain_random", "kNN k=200 vs random init", "random init"),
)
# what each run trained, shown for every variant and run (a comparison of unequal runs must be visible)
LENGTH_COLUMNS = (("steps", "steps"), ("epochs", "epochs"), ("stop_reason", "stopped"))
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


def _run_dirs(root: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
    if (root / "results.json").is_file():
        return {
            str(r["run_id"]): root / "runs" / str(r["run_id"])
            for r in rows
            if r.get("status") == "done" and (root / "runs" / str(r["run_id"])).is_dir()
        }
    return {str(rows[0]["run_id"]): root} if rows else {}


def _first_seed_per_variant(rows: Sequence[Mapping[str, Any]], dirs: Mapping[str, Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for r in sorted(rows, key=lambda r: (str(r.get("seed")), str(r["run_id"]))):
        rid = str(r["run_id"])
        if rid in dirs and str(r["variant"]) not in out:
            out[str(r["variant"])] = dirs[rid]
    return dict(sorted(out.items(), key=lambda kv: [str(r["variant"]) for r in rows].index(kv[0])))


def _with_artifacts(rows: list[dict[str, Any]], dirs: Mapping[str, Path]) -> list[dict[str, Any]]:
    from dimcollapse.study.artifacts import ARTIFACTS_VERSION, compute_artifacts

    for r in rows:
        d = dirs.get(str(r["run_id"]))
        if d is None:
            continue
        extra = read_json(d / "artifacts.json")
        current = extra is not None and extra.get("artifacts_version", 1) >= ARTIFACTS_VERSION
        if extra is None or not current or not (d / "artifacts.npz").is_file():
            extra = compute_artifacts(d)
        r.update({k: v for k, v in extra.items() if k not in r})
    return rows


def _fmt(values: list[float], key: str) -> str:
    scale = 100.0 if key in ACCURACY_KEYS else 1.0
    if not values:
        return "–"
    m = mean(values) * scale
    unit = "%" if key in ACCURACY_KEYS else ""
    if len(values) == 1:
        return f"{m:.4g}{unit}" if unit == "" else f"{m:.1f}{unit}"
    s = stdev(values) * scale
    return f"{m:.1f} ± {s:.1f}{unit}" if unit else f"{m:.4g} ± {s:.2g}"


def summary_table(
    rows: Sequence[Mapping[str, Any]], baselines: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per variant: mean ± std over seeds of each metric (accuracies in %), baselines first."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in [*baselines, *rows]:
        if r.get("status") in ("done", "baseline"):
            groups[str(r["variant"])].append(r)
    out = []
    for variant, rs in groups.items():
        first = rs[0]
        row: dict[str, Any] = {
            "variant": variant,
            "method": first.get("objective", ""),
            "projector": first.get("projector") or "–",
            "regularizers": first.get("regularizers") or "–",
            "seeds": len(rs),
        }
        for key, _ in LENGTH_COLUMNS:
            row[key] = _distinct(r.get(key) for r in rs)
        for key, _ in TABLE_METRICS:
            vals = [float(r[key]) for r in rs if isinstance(r.get(key), (int, float))]
            row[key] = _fmt(vals, key)
        row.update(_gains(rs, baselines))
        out.append(row)
    return out


def _gains(rs: Sequence[Mapping[str, Any]], baselines: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Mean kNN k=200 of a variant minus each baseline's, in points ('' for the baselines themselves)."""
    out = {key: "" for key, _, _ in GAIN_COLUMNS}
    vals = [float(r["knn_k200_top1"]) for r in rs if _number(r.get("knn_k200_top1"))]
    if not vals or any(r.get("status") == "baseline" for r in rs):
        return out
    for key, _, base in GAIN_COLUMNS:
        ref = [b["knn_k200_top1"] for b in baselines if b.get("variant") == base]
        if ref and _number(ref[0]):
            out[key] = f"{100 * (mean(vals) - float(ref[0])):+.1f}"
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _distinct(values: Iterable[Any]) -> str:
    """The distinct values of a column over a variant's runs ('500', or '480 / 500' when they differ)."""
    seen: list[str] = []
    for v in values:
        text = "–" if v is None or v == "" else (f"{v:.3g}" if isinstance(v, float) else str(v))
        if text not in seen:
            seen.append(text)
    return " / ".join(seen)


def _fig(make: Callable[[], Any], caption: str, fig_id: str, figdir: Path, written: list[str]) -> Figure:
    png = figure_png(make())
    atomic_write_bytes(figdir / f"{fig_id}.png", png)
    written.append(f"{fig_id}.png")
    return Figure(png, caption, fig_id)


def _theory_section(root: Path) -> Section | None:
    summary = read_json(root / "theory" / "results.json")
    if summary is None:
        return None
    rows = [
        {
            "experiment": c["experiment"],
            "claim": c["claim"],
            "measured": c["measured"],
            "verdict": "holds" if c["holds"] else "does not hold",
        }
        for c in summary.get("claims", [])
    ]
    figs = []
    for run in summary.get("runs", []):
        for name in run.get("figures", []):
            p = root / "theory" / name
            if p.suffix == ".png" and p.is_file():
                figs.append(Figure(p.read_bytes(), f"{run['experiment']} ({run['loss']} loss): {p.stem}"))
    return Section(
        "Toy theory (DirectCLR sections 4-5)",
        ["Linear toy models of the two causes of collapse; each verdict is computed by the simulation."],
        [
            Table(
                rows,
                ["experiment", "claim", "measured", "verdict"],
                left=["experiment", "claim", "measured"],
                table_id="theory-claims",
            )
        ],
        figs,
        "theory",
    )


def build_report(path: str | Path, out: str | Path | None = None, map_method: str = "auto") -> Path:
    """Write ``report/index.html`` (+ figures/*.png) for a run or study folder; return the page path."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(
            f"'{root}' is not a folder; pass a run folder (with metrics.json) or a study folder."
        )
    rows = load_results(root)
    if not rows:
        raise InputError(
            f"'{root}' holds neither results.json (a study) nor metrics.json (a finished run). "
            "Run `dimcollapse study` or `dimcollapse train` first."
        )
    out_dir = ensure_writable_dir(out if out is not None else root / "report")
    figdir = ensure_writable_dir(out_dir / "figures")
    dirs = _run_dirs(root, rows)
    rows = _with_artifacts(rows, dirs)
    baselines = (read_json(root / "baselines.json") or {}).get("rows", [])
    reps = _first_seed_per_variant(rows, dirs)
    arts = {v: _load_npz(d / "artifacts.npz") for v, d in reps.items()}
    written: list[str] = []
    sections: list[Section] = []

    claim_sections, claims = _claims_sections(root, rows)
    sections.extend(claim_sections)
    table = summary_table(rows, baselines)
    metrics = (*LENGTH_COLUMNS, *TABLE_METRICS[:2], *[(k, h) for k, h, _ in GAIN_COLUMNS], *TABLE_METRICS[2:])
    cols = ["variant", "method", "projector", "regularizers", "seeds", *[k for k, _ in metrics]]
    heads = ["variant", "method", "projector", "regularizers", "seeds", *[h for _, h in metrics]]
    sections.append(
        Section(
            "Accuracy and collapse",
            [
                "Accuracies on the test split in %, mean ± std over seeds. erank = effective rank of the "
                "covariance spectrum; collapsed dims: eigenvalues below 1e-6 of the largest. steps / "
                "epochs: what each variant trained (values separated by / when its runs differ); "
                "stopped: completed, or why training stopped early. vs raw pixels / random init: kNN k=200 "
                "minus that baseline's, in points (same data, split and kNN settings)."
            ],
            [
                Table(
                    table,
                    cols,
                    heads,
                    left=["variant", "method", "projector", "regularizers"],
                    table_id="accuracy",
                )
            ],
            section_id="section-accuracy",
        )
    )
    failed = [r for r in rows if str(r.get("status", "")).startswith("failed")]
    if failed:
        sections[-1].paragraphs.append(
            "Failed runs: " + "; ".join(html.escape(f"{r['run_id']} ({r['status']})") for r in failed)
        )
    sections.append(_runs_section(rows, dirs))

    figs = []
    for key, what in (("r", "representations"), ("z", "embeddings")) if arts else ():
        spectra = {v: a[f"spectrum_{key}"] for v, a in arts.items()}
        figs.append(
            _fig(
                partial(plots.plot_log_spectrum, spectra, f"Spectrum of {what} {key}", relative=True),
                f"Covariance spectrum of {key} (test images), divided by its largest eigenvalue.",
                f"spectrum_{key}",
                figdir,
                written,
            )
        )
    sections.append(Section("Spectra", [], [], figs, "spectra"))

    histories = {v: (read_json(d / "monitor.json") or {}).get("history", []) for v, d in reps.items()}
    histories = {v: h for v, h in histories.items() if h}
    if histories:
        sections.append(
            Section(
                "Collapse during training",
                [],
                [],
                [
                    _fig(
                        lambda: study_figures.training_curves(histories),
                        "Collapse monitor on a fixed held-out probe batch.",
                        "training_curves",
                        figdir,
                        written,
                    )
                ],
                "training",
            )
        )

    weights = {v: _prefixed(a, "weight/") for v, a in arts.items()}
    weights = {v: {k: s for k, s in w.items() if k.startswith("backbone.")} for v, w in weights.items()}
    feats = {v: _prefixed(a, "feature/") for v, a in arts.items()}
    limits = _rank_limits(arts)
    wlim, flim = _prefixed(limits, "weight/"), _prefixed(limits, "feature/")
    layer_figs = []
    if any(weights.values()):
        layer_figs.append(
            _fig(
                lambda: study_figures.layer_erank_profile(weights, "weight", wlim),
                "Effective rank of each encoder weight matrix (sigma^2), by depth.",
                "weight_erank_profile",
                figdir,
                written,
            )
        )
        layer_figs.append(
            _fig(
                lambda: study_figures.layer_spectra_panels(weights, "weight", wlim),
                "Singular values of every encoder weight, per run.",
                "weight_spectra",
                figdir,
                written,
            )
        )
    if any(feats.values()):
        layer_figs.append(
            _fig(
                lambda: study_figures.layer_erank_profile(feats, "feature", flim),
                "Effective rank of the features after each encoder block, by depth.",
                "feature_erank_profile",
                figdir,
                written,
            )
        )
        layer_figs.append(
            _fig(
                lambda: study_figures.layer_spectra_panels(feats, "feature", flim),
                "Spectra of hidden features (spatially mean-pooled) after each block.",
                "feature_spectra",
                figdir,
                written,
            )
        )
    sections.append(
        Section("Where in the encoder collapse happens", [], _rank_limit_tables(limits), layer_figs, "layers")
    )
    if limits:
        sections[-1].paragraphs.append(
            "Starred, shaded layers are <b>rank-limited by construction</b>: their weight has fewer inputs "
            "per output (in × kernel) than outputs, so its rank, and that of its output, cannot reach the "
            "layer's width (e.g. a 3×3 conv on a 1-channel image: rank ≤ 9). A low effective rank there "
            "is set by the shape, not collapse."
        )

    align_section = _alignment_section(rows, reps, arts, figdir, written)
    if align_section is not None:
        sections.append(align_section)

    maps = [
        _fig(
            partial(plots.plot_embedding_map, a["r_sample"], a["labels_sample"], map_method, title=v),
            f"2-D map of r for {v}, coloured by label.",
            f"map_{i}",
            figdir,
            written,
        )
        for i, (v, a) in enumerate(arts.items())
    ]
    sections.append(Section("Representations in 2-D", [], [], maps, "maps"))
    theory = _theory_section(root)
    if theory is not None:
        sections.append(theory)

    title = f"dimcollapse report: {root.resolve().name}"
    n_done = sum(1 for r in rows if r.get("status") == "done")
    page = render_page(title, f"{n_done} finished run(s) in {root}", sections)
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    from dimcollapse.utils.atomic import atomic_write_json

    atomic_write_json(out_dir / "report.json", {"claims": claims, "table": table, "figures": written})
    return index


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


def _load_npz(p: Path) -> dict[str, np.ndarray]:
    with np.load(p, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def read_report(path: str | Path) -> dict[str, Any]:
    """The machine-readable side of a report (claims, table, figure names)."""
    return dict(json.loads((Path(path) / "report.json").read_text()))
