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
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from statistics import mean, stdev
from typing import Any, TypeVar

import numpy as np

from dimcollapse.diagnostics import catalogue
from dimcollapse.errors import InputError
from dimcollapse.report import plots, study_figures
from dimcollapse.report.html import Figure, Section, Table, render_page
from dimcollapse.report.sections import (
    ACCURACY_KEYS,
    _alignment_section,
    _claims_sections,
    _fig,
    _prefixed,
    _rank_limit_tables,
    _rank_limits,
    _runs_section,
)
from dimcollapse.study.results import load_results, read_json
from dimcollapse.utils.atomic import atomic_write_text, ensure_writable_dir

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

# kNN k=200 of each variant against the baselines (points): does self-supervision add anything?
GAIN_COLUMNS = (
    ("knn_gain_raw", "kNN k=200 vs raw pixels", "raw pixels"),
    ("knn_gain_random", "kNN k=200 vs random init", "random init"),
)
# what each run trained, shown for every variant and run (a comparison of unequal runs must be visible)
LENGTH_COLUMNS = (("steps", "steps"), ("epochs", "epochs"), ("stop_reason", "stopped"))


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


def _load_npz(p: Path) -> dict[str, np.ndarray]:
    with np.load(p, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def read_report(path: str | Path) -> dict[str, Any]:
    """The machine-readable side of a report (claims, table, figure names)."""
    return dict(json.loads((Path(path) / "report.json").read_text()))
