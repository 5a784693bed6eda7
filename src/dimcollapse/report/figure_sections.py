"""The report's figure sections: spectra, training curves, per-layer spectra, alignment, 2-D maps.

Each is a section builder (``ReportInputs -> list[Section]``, see sections.py) that draws from the artifacts
of one run per variant and the runs' monitor histories.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from functools import partial

import numpy as np

from dimcollapse.report import study_figures
from dimcollapse.report.sections import ReportInputs, prefixed
from dimcollapse.study.results import read_json
from dimcollapse.utils.html import Section, Table
from dimcollapse.viz import plots


def spectra_sections(inp: ReportInputs) -> list[Section]:
    """Covariance spectra of r and z (test images) of each variant, divided by the largest eigenvalue."""
    figs = []
    for key, what in (("r", "representations"), ("z", "embeddings")) if inp.arts else ():
        spectra = {v: a[f"spectrum_{key}"] for v, a in inp.arts.items()}
        figs.append(
            inp.figure(
                partial(plots.plot_log_spectrum, spectra, f"Spectrum of {what} {key}", relative=True),
                f"Covariance spectrum of {key} (test images), divided by its largest eigenvalue.",
                f"spectrum_{key}",
            )
        )
    return [Section("Spectra", [], [], figs, "spectra")]


def training_sections(inp: ReportInputs) -> list[Section]:
    """The collapse monitor's history of each variant (none when no run kept one)."""
    histories = {v: (read_json(d / "monitor.json") or {}).get("history", []) for v, d in inp.reps.items()}
    histories = {v: h for v, h in histories.items() if h}
    if not histories:
        return []
    fig = inp.figure(
        lambda: study_figures.training_curves(histories),
        "Collapse monitor on a fixed held-out probe batch.",
        "training_curves",
    )
    return [Section("Collapse during training", [], [], [fig], "training")]


RANK_LIMITED_TEXT = (
    "Starred, shaded layers are <b>rank-limited by construction</b>: their weight has fewer inputs "
    "per output (in × kernel) than outputs, so its rank, and that of its output, cannot reach the "
    "layer's width (e.g. a 3×3 conv on a 1-channel image: rank ≤ 9). A low effective rank there "
    "is set by the shape, not collapse."
)
# (kind, caption of the erank-by-depth profile, caption of the per-run spectra panels)
LAYER_FIGURES = (
    (
        "weight",
        "Effective rank of each encoder weight matrix (sigma^2), by depth.",
        "Singular values of every encoder weight, per run.",
    ),
    (
        "feature",
        "Effective rank of the features after each encoder block, by depth.",
        "Spectra of hidden features (spatially mean-pooled) after each block.",
    ),
)


def layer_sections(inp: ReportInputs) -> list[Section]:
    """Where in the encoder collapse happens: per-layer weight and feature spectra, rank-limited layers."""
    weights = {v: prefixed(a, "weight/") for v, a in inp.arts.items()}
    per_kind = {
        "weight": {v: {k: s for k, s in w.items() if k.startswith("backbone.")} for v, w in weights.items()},
        "feature": {v: prefixed(a, "feature/") for v, a in inp.arts.items()},
    }
    limits = _rank_limits(inp.arts)
    figs = []
    for kind, profile_caption, spectra_caption in LAYER_FIGURES:
        spectra, lim = per_kind[kind], prefixed(limits, f"{kind}/")
        if not any(spectra.values()):
            continue
        figs.append(
            inp.figure(
                partial(study_figures.layer_erank_profile, spectra, kind, lim),
                profile_caption,
                f"{kind}_erank_profile",
            )
        )
        figs.append(
            inp.figure(
                partial(study_figures.layer_spectra_panels, spectra, kind, lim),
                spectra_caption,
                f"{kind}_spectra",
            )
        )
    section = Section("Where in the encoder collapse happens", [], _rank_limit_tables(limits), figs, "layers")
    if limits:
        section.paragraphs.append(RANK_LIMITED_TEXT)
    return [section]


def map_sections(inp: ReportInputs) -> list[Section]:
    """A 2-D map of r per variant, coloured by label."""
    maps = [
        inp.figure(
            partial(plots.plot_embedding_map, a["r_sample"], a["labels_sample"], inp.map_method, title=v),
            f"2-D map of r for {v}, coloured by label.",
            f"map_{i}",
        )
        for i, (v, a) in enumerate(inp.arts.items())
    ]
    return [Section("Representations in 2-D", [], [], maps, "maps")]


def _rank_limits(arts: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, tuple[int, int]]:
    """'weight/<layer>' / 'feature/<block>' -> (bound, width) over all runs' artifacts."""
    out: dict[str, tuple[int, int]] = {}
    for a in arts.values():
        for key, v in prefixed(a, "rank_limit/").items():
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


def alignment_sections(inp: ReportInputs) -> list[Section]:
    """Heat maps of |A| and each run's mean |diag A| against random orthonormal bases of the same sizes."""
    arts, reps = inp.arts, inp.reps
    align = {
        v: (a["alignment"], [str(x) for x in a.get("alignment_layers", [])])
        for v, a in arts.items()
        if "alignment" in a
    }
    if not align:
        return []
    random: dict[str, tuple[float, float, float]] = {}
    scores: dict[str, tuple[float, float, float, float]] = {}
    for v in align:
        j = read_json(reps[v] / "artifacts.json") or {}
        keys = ("alignment_random_mean", "alignment_random_low", "alignment_random_high")
        if all(isinstance(j.get(k), (int, float)) for k in keys):
            random[v] = (float(j[keys[0]]), float(j[keys[1]]), float(j[keys[2]]))
            scores[v] = (float(j.get("alignment_mean_diag", float("nan"))), *random[v])
    figs = [
        inp.figure(
            lambda: study_figures.alignment_panels(align, random),
            "Alignment heat maps (first 64 directions shown; the score uses all).",
            "alignment",
        )
    ]
    text = ["|A| = |V2^T U1| (DirectCLR theorem 2): a bright diagonal means the layers have aligned."]
    if scores:
        figs.insert(
            0,
            inp.figure(
                lambda: study_figures.alignment_vs_random(scores),
                "Mean |diag A| per run (red) and the same score for random orthonormal bases of the same "
                "sizes (grey band: 5-95% of 64 draws). Inside the band: no more aligned than chance.",
                "alignment_vs_random",
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
    return [Section("Alignment of the last two layers", text, [], figs, "alignment")]
