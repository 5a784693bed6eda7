"""``dimcollapse report``: one self-contained HTML page (and PNG figures) for a run or a study folder.

Sections: claims (verdicts computed from the results), accuracy and collapse table (mean +- std over
seeds, with raw-pixel and random-init baselines), spectra of r and z, metrics over training, where in
the encoder collapse happens (per-layer weight and feature spectra), alignment of the last two layers,
2-D maps of r, and the toy-theory summary when the folder holds one.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from statistics import mean, stdev

import numpy as np

from dimcollapse.diagnostics import catalogue
from dimcollapse.errors import InputError
from dimcollapse.records import accuracy_columns, headline_knn, is_accuracy
from dimcollapse.records.row import BASELINE, DONE, ResultRow, Row, as_number, number
from dimcollapse.records.schema import JsonValue
from dimcollapse.report.claims import evaluate_claims
from dimcollapse.report.compare_inputs import UNREADABLE, Warn, stderr_warning
from dimcollapse.report.figure_sections import (
    alignment_sections,
    layer_sections,
    map_sections,
    spectra_sections,
    training_sections,
)
from dimcollapse.report.paper_section import paper_sections
from dimcollapse.report.sections import (
    ReportInputs,
    SectionBuilder,
    claims_sections,
    deferred_claims,
    run_verdict_lines,
    runs_sections,
)
from dimcollapse.study.baselines import read_baselines
from dimcollapse.study.results import load_results, read_json
from dimcollapse.utils.atomic import atomic_write_json, atomic_write_text, ensure_writable_dir
from dimcollapse.utils.html import Figure, Section, Table, render_page

OTHER_COLUMNS = (("weight_erank_mean", "weight erank/size"), ("train_time_s", "train s"))
SummaryRow = dict[str, str | int]  # one variant of the summary table: display cells (seeds: a count)


def _keys(rows: Iterable[Row]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def table_metrics(rows: Iterable[Row] = ()) -> list[tuple[str, str]]:
    """(result key, header) of the summary table's metric columns: the accuracies the rows hold (the
    accuracy catalogue: every configured k, every probe), the catalogue's per-run metrics of r (``run``
    field), the width of r, those of z, weight erank and training time."""
    per_output = {o: [(k, f"{m.header} {o}") for k, m in catalogue.run_columns(o)] for o in ("r", "z")}
    accuracies = accuracy_columns(_keys(rows))
    return [*accuracies, *per_output["r"], ("d_r", "dim r"), *per_output["z"], *OTHER_COLUMNS]


# the largest-k kNN accuracy of each variant against the baselines (points): does self-supervision add
# anything? (key, header, baseline variant)
BASELINE_NAMES = ("raw pixels", "random init")


def gain_columns(knn_key: str | None) -> list[tuple[str, str, str]]:
    """(column key, header, baseline) of the gains over each baseline, on ``knn_key`` (none without it)."""
    if knn_key is None:
        return []
    label = dict(accuracy_columns([knn_key]))[knn_key]
    return [(f"knn_gain_{b.split()[0]}", f"{label} vs {b}", b) for b in BASELINE_NAMES]


# what each run trained, shown for every variant and run (a comparison of unequal runs must be visible)
LENGTH_COLUMNS = (("steps", "steps"), ("epochs", "epochs"), ("stop_reason", "stopped"))


def _run_dirs(root: Path, rows: Sequence[Row]) -> dict[str, Path]:
    if (root / "results.json").is_file():
        return {
            str(r["run_id"]): root / "runs" / str(r["run_id"])
            for r in rows
            if r.get("status") == "done" and (root / "runs" / str(r["run_id"])).is_dir()
        }
    return {str(rows[0]["run_id"]): root} if rows else {}


def _first_seed_per_variant(rows: Sequence[Row], dirs: Mapping[str, Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for r in sorted(rows, key=lambda r: (str(r.get("seed")), str(r["run_id"]))):
        rid = str(r["run_id"])
        if rid in dirs and str(r["variant"]) not in out:
            out[str(r["variant"])] = dirs[rid]
    return dict(sorted(out.items(), key=lambda kv: [str(r["variant"]) for r in rows].index(kv[0])))


def _with_artifacts(rows: list[ResultRow], dirs: Mapping[str, Path], warn: Warn) -> list[ResultRow]:
    """Each finished run's artifact metrics (computed when missing, stale or unreadable); a run whose
    artifacts cannot be computed is reported through ``warn`` and shown without them."""
    from dimcollapse.study.artifacts import ARTIFACTS_VERSION, compute_artifacts

    for r in rows:
        d = dirs.get(str(r["run_id"]))
        if d is None:
            continue
        extra = read_json(d / "artifacts.json")
        current = extra is not None and extra.get("artifacts_version", 1) >= ARTIFACTS_VERSION
        try:
            if extra is None or not current or _load_npz(d / "artifacts.npz") is None:
                extra = compute_artifacts(d)
        except UNREADABLE as e:
            warn(f"run '{d}': no artifacts (figures) for it: {e}")
            continue
        r.add_missing(extra)
    return rows


def _fmt(values: list[float], key: str) -> str:
    scale = 100.0 if is_accuracy(key) else 1.0
    if not values:
        return "–"
    m = mean(values) * scale
    unit = "%" if is_accuracy(key) else ""
    if len(values) == 1:
        return f"{m:.4g}{unit}" if unit == "" else f"{m:.1f}{unit}"
    s = stdev(values) * scale
    return f"{m:.1f} ± {s:.1f}{unit}" if unit else f"{m:.4g} ± {s:.2g}"


def summary_table(rows: Sequence[Row], baselines: Sequence[Row]) -> list[SummaryRow]:
    """One row per variant: mean ± std over seeds of each metric (accuracies in %), baselines first."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in [*baselines, *rows]:
        if r.get("status") in (DONE, BASELINE):
            groups[str(r["variant"])].append(r)
    metrics = table_metrics([*baselines, *rows])
    knn = headline_knn(k for k, _ in metrics)
    out = []
    for variant, rs in groups.items():
        first = rs[0]
        row: SummaryRow = {
            "variant": variant,
            "method": str(first.get("objective", "")),
            "projector": str(first.get("projector") or "–"),
            "regularizers": str(first.get("regularizers") or "–"),
            "seeds": len(rs),
        }
        for key, _ in LENGTH_COLUMNS:
            row[key] = _distinct(r.get(key) for r in rs)
        for key, _ in metrics:
            vals = [float(v) for r in rs if isinstance(v := r.get(key), (int, float))]
            row[key] = _fmt(vals, key)
        row.update(_gains(rs, baselines, knn))
        out.append(row)
    return out


def _gains(rs: Sequence[Row], baselines: Sequence[Row], knn: str | None) -> dict[str, str]:
    """Mean ``knn`` accuracy of a variant minus each baseline's, in points ('' for the baselines)."""
    out = {key: "" for key, _, _ in gain_columns(knn)}
    vals = [v for r in rs if knn is not None and (v := number(r, knn)) is not None]
    if knn is None or not vals or any(r.get("status") == BASELINE for r in rs):
        return out
    for key, _, base in gain_columns(knn):
        ref = [as_number(b[knn]) for b in baselines if b.get("variant") == base and knn in b]
        if ref and (first := ref[0]) is not None:
            out[key] = f"{100 * (mean(vals) - first):+.1f}"
    return out


def _distinct(values: Iterable[JsonValue]) -> str:
    """The distinct values of a column over a variant's runs ('500', or '480 / 500' when they differ)."""
    seen: list[str] = []
    for v in values:
        text = "–" if v is None or v == "" else (f"{v:.3g}" if isinstance(v, float) else str(v))
        if text not in seen:
            seen.append(text)
    return " / ".join(seen)


def _theory_sections(inp: ReportInputs) -> list[Section]:
    """The toy-theory claims and figures when the folder holds ``theory/results.json``."""
    root = inp.root
    summary = read_json(root / "theory" / "results.json")
    if summary is None:
        return []
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
    table = Table(
        rows,
        ["experiment", "claim", "measured", "verdict"],
        left=["experiment", "claim", "measured"],
        table_id="theory-claims",
    )
    text = "Linear toy models of the two causes of collapse; each verdict is computed by the simulation."
    return [Section("Toy theory (DirectCLR sections 4-5)", [text], [table], figs, "theory")]


ACCURACY_TEXT = (
    "Accuracies on the test split in %, mean ± std over seeds. erank = effective rank of the "
    f"covariance spectrum; collapsed dims: eigenvalues below {catalogue.THRESHOLD_TEXT} of the largest. "
    "steps / epochs: what each variant trained (values separated by / when its runs differ); "
    "stopped: completed, or why training stopped early. vs raw pixels / random init: the kNN accuracy "
    "with the largest k minus that baseline's, in points (same data, split and kNN settings)."
)


def _accuracy_sections(inp: ReportInputs) -> list[Section]:
    """The summary table (mean ± std over seeds, baselines first) and the failed runs."""
    columns = table_metrics([*inp.baselines, *inp.rows])
    n_acc = sum(1 for k, _ in columns if is_accuracy(k))
    gains = [(k, h) for k, h, _ in gain_columns(headline_knn(k for k, _ in columns))]
    metrics = (*LENGTH_COLUMNS, *columns[:n_acc], *gains, *columns[n_acc:])
    cols = ["variant", "method", "projector", "regularizers", "seeds", *[k for k, _ in metrics]]
    heads = ["variant", "method", "projector", "regularizers", "seeds", *[h for _, h in metrics]]
    left = ["variant", "method", "projector", "regularizers"]
    table = Table(inp.table, cols, heads, left=left, table_id="accuracy")
    section = Section("Accuracy and collapse", [ACCURACY_TEXT], [table], section_id="section-accuracy")
    failed = [r for r in inp.rows if str(r.get("status", "")).startswith("failed")]
    if failed:
        section.paragraphs.append(
            "Failed runs: " + "; ".join(html.escape(f"{r['run_id']} ({r['status']})") for r in failed)
        )
    return [section]


# the page, top to bottom
SECTIONS: tuple[SectionBuilder, ...] = (
    paper_sections,
    claims_sections,
    _accuracy_sections,
    runs_sections,
    spectra_sections,
    training_sections,
    layer_sections,
    alignment_sections,
    map_sections,
    _theory_sections,
)


def _inputs(root: Path, rows: list[ResultRow], figdir: Path, map_method: str, warn: Warn) -> ReportInputs:
    """Run folders, artifacts (computed when missing), baselines, claims and the summary table."""
    dirs = _run_dirs(root, rows)
    rows = _with_artifacts(rows, dirs, warn)
    baselines = read_baselines(root / "baselines.json") or []
    reps = _first_seed_per_variant(rows, dirs)
    loaded = {v: _load_npz(d / "artifacts.npz") for v, d in reps.items()}
    arts = {v: a for v, a in loaded.items() if a is not None}
    deferred = deferred_claims(root)
    claims = [c.as_dict() for c in evaluate_claims(rows, deferred=deferred)]
    table = summary_table(rows, baselines)
    return ReportInputs(root, rows, dirs, reps, arts, baselines, figdir, map_method, claims, deferred, table)


def build_report(
    path: str | Path,
    out: str | Path | None = None,
    map_method: str = "auto",
    warn: Warn = stderr_warning,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Write ``report/index.html`` (+ figures/*.png) for a run or study folder; return the page path.
    A run whose artifacts are unreadable and cannot be recomputed is named through ``warn`` and shown
    without figures; ``say`` receives each finished run's verdict line (and its N <= D warning)."""
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
    inp = _inputs(root, rows, ensure_writable_dir(out_dir / "figures"), map_method, warn)
    sections = [section for make in SECTIONS for section in make(inp)]
    if say is not None:
        for line in run_verdict_lines(inp):
            say(line)
    n_done = sum(1 for r in inp.rows if r.get("status") == "done")
    title = f"dimcollapse report: {root.resolve().name}"
    page = render_page(title, f"{n_done} finished run(s) in {root}", sections)
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    report = {"claims": inp.claims, "table": inp.table, "figures": inp.written}
    atomic_write_json(out_dir / "report.json", report)
    return index


def _load_npz(p: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an artifacts.npz; None when it is missing or unreadable (garbage, truncated)."""
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except UNREADABLE:
        return None
