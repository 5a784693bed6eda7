"""One page comparing folders from anywhere: training runs, studies (each finished run), ``analyze`` output.

    build_comparison(["runs/demo", "runs/mine", "runs/analyze/theirs"], out="runs/compare")

Every folder contributes rows: a run folder (metrics.json with ``erank_r`` ...: the representation r),
a study folder (every finished run under ``runs/``), or an ``analyze`` / ``analyze --model`` folder
(metrics.json with ``erank`` ...: the analysed embedding). The table shows the catalogue's headline
metrics; the spectra (relative to the largest eigenvalue) are overlaid; collapse-monitor histories
(monitor.json, from the engine, ``CollapseMonitor`` or ``Tracker``) are drawn against the step. The
rows come from different data, sizes and settings, and the page says so: nothing is equalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.diagnostics import catalogue
from dimcollapse.errors import InputError
from dimcollapse.study.results import read_json
from dimcollapse.utils.atomic import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from dimcollapse.utils.html import Figure, Section, Table, figure_png, render_page


def _entry(label: str, folder: Path) -> dict[str, Any] | None:
    m = read_json(folder / "metrics.json")
    if m is None:
        return None
    suffix = "_r" if "erank_r" in m and "erank" not in m else ""
    row: dict[str, Any] = {
        "name": label,
        "folder": str(folder),
        "source": m.get("data") or m.get("source", ""),
    }
    row["embedding"] = "r (run)" if suffix else str(m.get("embedding", "file"))
    row["n"] = m.get("n", m.get("n_test", "–"))
    row["d"] = m.get("d", m.get("d_r", "–"))
    for key in catalogue.headline_keys():
        row[key] = catalogue.fmt(key, m.get(key + suffix))
    spectrum = m.get("spectrum")
    art = folder / "artifacts.npz"
    if spectrum is None and art.is_file():
        with np.load(art) as z:
            spectrum = z["spectrum_r"] if "spectrum_r" in z.files else None
    row["_spectrum"] = None if spectrum is None else np.asarray(spectrum, dtype=np.float64)
    mon = read_json(folder / "monitor.json")
    row["_history"] = (mon.get("watch") or "erank_r", mon.get("history", [])) if mon else None
    return row


def collect(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Rows of every folder (a study contributes each finished run); unreadable folders raise InputError."""
    rows: list[dict[str, Any]] = []
    for f in folders:
        p = Path(f)
        is_study = (p / "results.json").is_file()
        runs = sorted((p / "runs").glob("*/metrics.json")) if is_study else []
        entries = [_entry(f"{p.name}/{r.parent.name}", r.parent) for r in runs]
        entries = entries or [_entry(p.name, p)]
        found = [r for r in entries if r is not None]
        if not found:
            raise InputError(
                f"'{p}' holds no metrics.json (a run or `analyze` output) and no results.json (a study). "
                "Pass folders written by train, study or analyze."
            )
        rows.extend(found)
    names = [r["name"] for r in rows]
    for i, r in enumerate(rows):
        if names.count(r["name"]) > 1:
            r["name"] = f"{i + 1:02d}_{r['name']}"
    return rows


def _spectra_figure(rows: list[dict[str, Any]]) -> Figure | None:
    from dimcollapse.report import plots

    spectra = {r["name"]: r["_spectrum"] for r in rows if r["_spectrum"] is not None}
    if not spectra:
        return None
    fig = plots.plot_log_spectrum(spectra, "Covariance spectra (relative to the largest)", relative=True)
    return Figure(
        figure_png(fig), "Covariance spectrum of each analysed embedding / representation.", "spectra"
    )


def _history_figure(rows: list[dict[str, Any]]) -> Figure | None:
    import matplotlib.pyplot as plt

    curves = [(r["name"], *r["_history"]) for r in rows if r["_history"] and r["_history"][1]]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, watch, hist in curves:
        pts = [(h["step"], h[watch]) for h in hist if isinstance(h.get(watch), (int, float))]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".", label=f"{name} ({watch})")
    ax.set_xlabel("step")
    ax.set_ylabel("watched value")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Figure(figure_png(fig), "Collapse-monitor history (the value each monitor watched).", "history")


def build_comparison(folders: Sequence[str | Path], out: str | Path) -> Path:
    """Write ``out/index.html`` (+ figures) comparing the folders; return the page path."""
    rows = collect(folders)
    out_dir = ensure_writable_dir(out)
    keys = catalogue.headline_keys()
    cols = ["name", "embedding", "source", "n", "d", *keys]
    heads = ["folder", "embedding", "data / source", "N", "D", *[catalogue.label(k) for k in keys]]
    table = Table([{c: r[c] for c in cols} for r in rows], cols, heads, left=["name", "embedding", "source"],
                  table_id="compare")  # fmt: skip
    note = (
        f"{len(rows)} folders, each measured where and how it was produced (data, number of rows, seeds "
        "and training length differ and are not equalised); single measurements, no error bars. "
        f"Collapsed dims: eigenvalues below {catalogue.THRESHOLD_TEXT} of the largest."
    )
    figs = [f for f in (_spectra_figure(rows), _history_figure(rows)) if f is not None]
    for f in figs:
        atomic_write_bytes(out_dir / "figures" / f"{f.figure_id}.png", f.png)
    sections = [Section("Collapse metrics", [note], [table], [], "section-compare"),
                Section("Spectra and monitors", [], [], figs, "section-figures")]  # fmt: skip
    page = out_dir / "index.html"
    atomic_write_text(
        page, render_page("dimcollapse comparison", ", ".join(str(f) for f in folders), sections)
    )
    return page


__all__ = ["build_comparison", "collect"]
