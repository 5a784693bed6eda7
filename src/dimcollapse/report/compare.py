"""One page comparing folders from anywhere: runs, studies, ``analyze`` output, monitors, checkpoints.

    build_comparison(["runs/demo", "runs/mine", "runs/analyze/theirs"], out="runs/compare")
    build_comparison(["runs/demo/checkpoints/epoch=1.ckpt", "runs/demo/checkpoints/final.ckpt"], "cmp")

The rows come from the result records (``compare_inputs.py``): one key scheme for every kind of folder,
N and D shown for training runs too. The table shows the catalogue's headline metrics and the accuracies
the rows hold (every k); the spectra (relative to the largest eigenvalue) are overlaid; monitor histories
and checkpoint series are drawn against the step, one panel per metric (erank, RankMe, LiDAR, std, ...);
the per-layer weight statistics of each monitor's last record are tables. The rows come from different
data, sizes and settings, and the page says so: nothing is equalised. Unreadable inputs are skipped,
named on the page and reported through ``warn``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

from dimcollapse.diagnostics import catalogue
from dimcollapse.records import accuracy_columns
from dimcollapse.report.compare_inputs import (
    Collected,
    CompareRow,
    History,
    collect,
    collect_records,
    stderr_warning,
)
from dimcollapse.utils.atomic import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from dimcollapse.utils.html import N_LE_D_FLAG, Figure, Section, Table, figure_png, render_page

MAX_PANELS = 8


def _spectra_figure(rows: list[CompareRow]) -> Figure | None:
    from dimcollapse.viz import plots

    spectra = {r.name: r.spectrum for r in rows if r.spectrum is not None and r.spectrum.size}
    if not spectra:
        return None
    fig = plots.plot_log_spectrum(spectra, "Covariance spectra (relative to the largest)", relative=True)
    return Figure(
        figure_png(fig), "Covariance spectrum of each analysed embedding / representation.", "spectra"
    )


def curve_metrics(curves: dict[str, History]) -> list[tuple[str, str]]:
    """(record key, title) of every numeric ``<metric>_<output>`` the curves hold, catalogue order first
    (erank, RankMe, ...), then the others (LiDAR, std, ...); at most ``MAX_PANELS``."""
    present = {k for hist in curves.values() for rec in hist for k, v in rec.items() if _curve_value(k, v)}
    labels = {m.record_name: m.label for m in catalogue.METRICS}
    order = {name: i for i, name in enumerate(labels)}

    def rank(key: str) -> tuple[int, str, str]:
        metric, output = key.rsplit("_", 1)
        return (order.get(metric, len(order)), output, metric)

    chosen = sorted(present, key=rank)[:MAX_PANELS]
    return [
        (k, f"{labels.get(k.rsplit('_', 1)[0], k.rsplit('_', 1)[0])} of {k.rsplit('_', 1)[1]}")
        for k in chosen
    ]


def _curve_value(key: str, value: object) -> bool:
    """True for a numeric ``<metric>_<output>`` entry of a history record (not the step, not a flag)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and key not in ("step", "epoch") and "_" in key


def _curves_figure(curves: dict[str, History]) -> Figure | None:
    from dimcollapse.report.study_figures import grid

    panels = curve_metrics(curves)
    if not panels:
        return None
    fig, axes = grid(len(panels), 4.2, 3.2, cols=2)
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name, hist in curves.items():
            pts = [(h["step"], h[key]) for h in hist if isinstance(h.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", label=name)
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    caption = "Over training: each monitor's history and each run's checkpoints, one panel per metric."
    return Figure(figure_png(fig), caption, "history")


def _table(rows: list[CompareRow]) -> Table:
    keys = catalogue.headline_keys()
    accs = accuracy_columns([k for r in rows for k in r.accuracies])
    cols = ["name", "embedding", "source", "n", "d", "steps", *keys, *[k for k, _ in accs], "collapse"]
    heads = ["folder", "embedding", "data / source", "N", "D", "steps", *[catalogue.label(k) for k in keys],
             *[f"{h} (%)" for _, h in accs], "verdict"]  # fmt: skip
    body = []
    for r in rows:
        cell: dict[str, str | int] = {"name": r.name, "embedding": r.embedding, "source": r.source}
        cell.update({c: "–" if v is None else v for c, v in (("n", r.n), ("d", r.d), ("steps", r.steps))})
        if r.rows_le_dims:
            cell["n"] = f"{r.n} {N_LE_D_FLAG}"
        cell["collapse"] = r.verdict or "–"
        cell.update({k: catalogue.fmt(k, r.metrics.get(k)) for k in keys})
        cell.update({k: f"{100 * r.accuracies[k]:.1f}" if k in r.accuracies else "–" for k, _ in accs})
        body.append(cell)
    return Table(body, cols, heads, left=["name", "embedding", "source", "collapse"], table_id="compare")


def _layer_tables(rows: list[CompareRow]) -> list[Table]:
    tables = []
    for r in rows:
        if not r.layers:
            continue
        stats = list(dict.fromkeys(s for v in r.layers.values() for s in v))
        body = [
            {"layer": n, **{s: f"{v.get(s, float('nan')):.4g}" for s in stats}} for n, v in r.layers.items()
        ]
        tid = "layers-" + "".join(c if c.isalnum() else "-" for c in r.name)
        tables.append(Table(body, ["layer", *stats], ["layer", *stats], left=["layer"], table_id=tid))
    return tables


def _sections(got: Collected, figs: list[Figure]) -> list[Section]:
    rows = got.rows
    note = (
        f"{len(rows)} rows, each measured where and how it was produced (data, number of rows, seeds "
        "and training length differ and are not equalised); single measurements, no error bars. "
        f"Collapsed dims: eigenvalues below {catalogue.THRESHOLD_TEXT} of the largest."
    )
    paras = [note]
    small = [r.name for r in rows if r.rows_le_dims]
    if small:
        paras.append(
            f"N <= D for {html.escape(', '.join(small))} (flagged in the N column): too few rows to resolve "
            "every dimension, so collapsed dims and the rank measures are bounded by N - 1, not by the model."
        )
    paras.append(
        "Verdict: a monitor's over its history (a watched value below a fraction of its best after the "
        "warm-up, or the embeddings' spread / total variance shrinking); a single measurement's: collapsing "
        "when dimensions carry no variance beyond what N rows can resolve."
    )
    if got.skipped:
        paras.append("Skipped (unreadable): " + "; ".join(html.escape(f"{f} ({w})") for f, w in got.skipped))
    layer_rows = [r.name for r in rows if r.layers]
    layer_text = [
        f"Weight statistics per layer at the last monitor record of: {html.escape(', '.join(layer_rows))}."
    ]
    return [
        Section("Collapse metrics", paras, [_table(rows)], [], "section-compare"),
        Section("Spectra and training curves", [], [], figs, "section-figures"),
        *(
            [Section("Per-layer weights", layer_text, _layer_tables(rows), [], "section-layers")]
            if layer_rows
            else []
        ),
    ]


def verdict_lines(rows: Sequence[CompareRow]) -> list[str]:
    """One line per row, ``NAME: collapsing: yes/no (why)``, then ``warning: NAME: N <= D ...`` when so."""
    out = []
    for r in rows:
        out.append(f"{r.name}: {r.verdict or 'collapsing: unknown (no measurement)'}")
        if r.rows_le_dims:
            out.append(
                f"warning: {r.name}: N <= D ({r.n} rows for {r.d} dims): collapsed dims and the rank "
                "measures are bounded by N - 1; measure on more rows."
            )
    return out


def build_comparison(
    folders: Sequence[str | Path],
    out: str | Path,
    warn: Callable[[str], None] = stderr_warning,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Write ``out/index.html`` (+ figures) comparing the folders / checkpoints; return the page path.
    ``say`` receives each row's verdict line (and its N <= D warning)."""
    title = ", ".join(str(f) for f in folders)
    return render_comparison(collect(folders, warn), out, title, say)


def render_comparison(
    got: Collected, out: str | Path, title: str, say: Callable[[str], None] | None = None
) -> Path:
    """The one page renderer: write ``out/index.html`` (+ figures) of rows already collected, from folders
    (``build_comparison``: ``report A B``) or from records in memory (``collect_records``: ``analyze``,
    ``analyze --compare``, ``analyze --model``); return the page path."""
    if say is not None:
        for line in verdict_lines(got.rows):
            say(line)
    out_dir = ensure_writable_dir(out)
    figs = [f for f in (_spectra_figure(got.rows), _curves_figure(got.curves)) if f is not None]
    for f in figs:
        atomic_write_bytes(out_dir / "figures" / f"{f.figure_id}.png", f.png)
    page = out_dir / "index.html"
    atomic_write_text(page, render_page("dimcollapse comparison", title, _sections(got, figs)))
    return page


__all__ = [
    "build_comparison",
    "collect",
    "collect_records",
    "curve_metrics",
    "render_comparison",
    "verdict_lines",
]
