"""``dimcollapse analyze PATH...``: collapse diagnostics of embeddings files as a table, JSON and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

# (metrics key, label, format) in the order the table shows them
ROWS: list[tuple[str, str, str]] = [
    ("n", "rows N", "{:d}"),
    ("d", "dimensions D", "{:d}"),
    ("erank", "effective rank", "{:.2f}"),
    ("rankme", "RankMe", "{:.2f}"),
    ("alpha", "alpha-ReQ", "{:.3f}"),
    ("alpha_r2", "alpha-ReQ fit R^2", "{:.3f}"),
    ("collapsed_dims", "collapsed dims (< 1e-6 max)", "{:d}"),
    ("dims_90", "dims for 90% variance", "{:d}"),
    ("dims_99", "dims for 99% variance", "{:d}"),
    ("eig_max", "largest eigenvalue", "{:.4g}"),
    ("eig_min", "smallest eigenvalue", "{:.4g}"),
    ("total_variance", "total variance", "{:.4g}"),
    ("lid_mle_gmean", "LID MLE (geometric mean)", "{:.2f}"),
    ("lid_mle_median", "LID MLE (median)", "{:.2f}"),
    ("lid_mom_gmean", "LID MoM (geometric mean)", "{:.2f}"),
    ("lid_mom_median", "LID MoM (median)", "{:.2f}"),
]
COMPARE_COLUMNS: list[tuple[str, str]] = [
    ("n", "N"),
    ("d", "D"),
    ("erank", "erank"),
    ("rankme", "RankMe"),
    ("alpha", "alpha"),
    ("collapsed_dims", "dead"),
    ("dims_90", "d90%"),
    ("dims_99", "d99%"),
    ("lid_mle_gmean", "LID"),
]


def fmt(metrics: dict[str, Any], key: str) -> str:
    """One metric as text ('-' when missing or NaN)."""
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    spec = next((f for k, label, f in ROWS if k == key), "{}")
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def metrics_table(m: dict[str, Any], out: Path | None) -> Table:
    """A two-column table of one embedding's metrics."""
    title = f"{m['name']}" + (f"  ->  {out}" if out is not None else "")
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, _ in ROWS:
        if key.startswith("lid_"):
            label = f"{label}, k={m.get('lid_k')}"
        table.add_row(label, fmt(m, key))
    if m.get("lid_points") is not None and m["lid_points"] < m["n"]:
        table.add_row("LID computed on", f"{m['lid_points']} random rows")
    if m.get("rows_dropped"):
        table.add_row("rows dropped (NaN/Inf)", str(m["rows_dropped"]))
    if m.get("l2_normalize"):
        table.add_row("rows L2-normalised", "yes")
    return table


def compare_table(results: list[dict[str, Any]]) -> Table:
    """One row per run, the headline metrics as columns."""
    k = results[0].get("lid_k") if results else None
    table = Table(
        title="comparison",
        header_style="bold",
        caption=f"dead: dims < 1e-6 of max; d90%/d99%: dims for that variance; LID: MLE geo. mean, k={k}",
    )
    table.add_column(
        "run", no_wrap=True, min_width=min(max((len(m["name"]) for m in results), default=3), 30)
    )
    for _, label in COMPARE_COLUMNS:
        table.add_column(label, justify="right")
    for m in results:
        table.add_row(m["name"], *(fmt(m, key) for key, _ in COMPARE_COLUMNS))
    return table


def analyze(
    paths: Annotated[
        list[Path], typer.Argument(help="Embeddings files (.npy .npz .pt .pth .safetensors .csv) or folders.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder for metrics.json and figures.")
    ] = Path("runs/analyze"),
    l2_normalize: Annotated[
        bool, typer.Option("--l2-normalize", help="L2-normalise rows before every metric.")
    ] = False,
    k: Annotated[int, typer.Option("--k", help="Neighbours for LID (k >= 2, k < N).")] = 20,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Integer labels, one per row (.npy, .csv, .txt).")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Array name inside .npz/.pt/.safetensors files.")
    ] = None,
    drop_nonfinite: Annotated[
        bool, typer.Option("--drop-nonfinite", help="Drop rows containing NaN/Inf instead of failing.")
    ] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Overlay the spectra of all inputs in one figure.")
    ] = False,
    lid_points: Annotated[
        int, typer.Option("--lid-points", help="LID on at most this many random rows (it costs O(N^2)).")
    ] = 20000,
    map_method: Annotated[
        str,
        typer.Option("--map", help="2-D map of the rows: auto (UMAP/PCA when --labels), umap, pca, none."),
    ] = "auto",
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="Draw per-file figures (compare overlays always).")
    ] = True,
) -> None:
    """Measure collapse of embeddings: spectrum, erank, RankMe, alpha-ReQ, LID; table, JSON, figures."""
    from dimcollapse.analysis.analyze import analyze_path, compare_paths

    common: dict[str, Any] = dict(
        key=key,
        labels=labels,
        drop_nonfinite=drop_nonfinite,
        l2_normalize=l2_normalize,
        k=k,
        lid_max_points=lid_points,
        map_method=map_method,
        figures=figures,
    )
    console = Console()
    if compare:
        results = compare_paths(paths, out=out, **common)
        console.print(compare_table(results))
        console.print(
            f"spectra overlaid in {out / 'compare_spectrum.png'} (and .svg); rows in {out / 'compare.json'}"
        )
        return
    results = analyze_path(paths, out=out, **common)
    for m in results:
        target = out if len(results) == 1 else out / m["name"]
        console.print(metrics_table(m, target))
    if len(results) > 1:
        console.print(compare_table(results))
    console.print(f"metrics.json and figures written to {out}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
