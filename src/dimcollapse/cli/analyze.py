"""``dimcollapse analyze PATH...``: collapse diagnostics of embeddings files as a table, JSON and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from dimcollapse.diagnostics import catalogue

SIZE_ROWS = (("n", "rows N", "{:d}"), ("d", "dimensions D", "{:d}"))
SIZE_COLUMNS = (("n", "N"), ("d", "D"))


def _embedding_only(m: catalogue.MetricSpec) -> bool:
    return m.needs == frozenset({catalogue.EMBEDDINGS})


def metric_rows() -> list[tuple[str, str, str]]:
    """(metrics key, label, format) in table order: n, d, then the catalogue's embedding metrics."""
    return [*SIZE_ROWS, *[(m.key, m.label, m.fmt) for m in catalogue.METRICS if _embedding_only(m)]]


def compare_columns() -> list[tuple[str, str]]:
    """(metrics key, column header) of the comparison table: N, D and the catalogue's headline metrics."""
    heads = [(m.key, m.column) for m in catalogue.METRICS if m.headline and _embedding_only(m)]
    return [*SIZE_COLUMNS, *heads]


def fmt(metrics: dict[str, Any], key: str) -> str:
    """One metric as text ('-' when missing or NaN)."""
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if key in catalogue.BY_KEY:
        return catalogue.fmt(key, value)
    spec = next((f for k, label, f in SIZE_ROWS if k == key), "{}")
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
    for key, label, _ in metric_rows():
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
    table = Table(  # no column rules: an 80-column terminal holds every number of the headline metrics
        title="comparison",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
        caption=f"dead: dims < {catalogue.THRESHOLD_TEXT} of max; d90%/d99%: dims for that variance; "
        f"LID: MLE geo. mean, k={k}",
    )
    table.add_column(
        "run", overflow="fold", min_width=min(max((len(m["name"]) for m in results), default=3), 12)
    )
    columns = compare_columns()
    cells = [[fmt(m, key) for key, _ in columns] for m in results]
    for i, (_, label) in enumerate(columns):  # a number is never cut ("4.…"): the name column folds instead
        width = max([len(row[i]) for row in cells], default=1)
        table.add_column(label, justify="right", no_wrap=True, min_width=width, overflow="fold")
    for m, row in zip(results, cells, strict=True):
        table.add_row(m["name"], *row)
    return table


# options of `analyze --model` (aliases keep the command's signature short)
ModelPath = Annotated[
    Path | None,
    typer.Option("--model", help="A model to analyse: Lightning .ckpt, state_dict (+ --arch), TorchScript."),
]
DataOpt = Annotated[
    str | None, typer.Option("--data", help="With --model: dataset name, image folder or tensor file.")
]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="Architecture: a registered backbone (resnet18) or package.module:Class."),
]
ArchKwargsOpt = Annotated[
    str | None, typer.Option("--arch-kwargs", help="Constructor arguments as JSON/YAML: '{in_channels: 1}'.")
]
TrustOpt = Annotated[
    bool, typer.Option("--trust-pickle", help="Allow a whole pickled model (runs code from the file).")
]
LayersOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--layers",
        help="Layer names or patterns, e.g. 'projection_head.*'; 'blocks': each transformer block's output.",
    ),
]
EmbedOpt = Annotated[
    str | None,
    typer.Option(
        "--embed",
        help="Sub-module (e.g. backbone) or method (forward_features) giving the embeddings; "
        "default: forward.",
    ),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Use at most this many inputs.")]
SizeOpt = Annotated[int | None, typer.Option("--image-size", help="Resize images to this size.")]
ChannelsOpt = Annotated[int | None, typer.Option("--channels", help="Repeat grey images to 3 channels.")]
OutputOpt = Annotated[
    str | None,
    typer.Option("--output", help="With --model: the output to analyse (a ModelOutput field or dict key)."),
]
PoolOpt = Annotated[
    str | None,
    typer.Option(
        "--pool",
        help="Rows of a (B, T, E) or (B, C, H, W) output: cls, mean, gap, flatten; tokens (every token a "
        "row), patches (tokens without CLS / registers).",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="With --model: inputs per forward pass.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="With --model: cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[int, typer.Option("--num-workers", help="With --model: image-decoding workers.")]


PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Embeddings files (.npy .npz .pt .pth .safetensors .csv) or folders."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder for metrics.json and figures.")]
L2Opt = Annotated[bool, typer.Option("--l2-normalize", help="L2-normalise rows before every metric.")]
KOpt = Annotated[int, typer.Option("--k", help="Neighbours for LID (k >= 2, k < N).")]
LabelsOpt = Annotated[
    Path | None, typer.Option("--labels", help="Integer labels, one per row (.npy, .csv, .txt).")
]
KeyOpt = Annotated[str | None, typer.Option("--key", help="Array name inside .npz/.pt/.safetensors files.")]
DropOpt = Annotated[
    bool, typer.Option("--drop-nonfinite", help="Drop rows containing NaN/Inf instead of failing.")
]
CompareOpt = Annotated[
    bool, typer.Option("--compare", help="Overlay the spectra of all inputs in one figure.")
]
LidPointsOpt = Annotated[
    int, typer.Option("--lid-points", help="LID on at most this many random rows (it costs O(N^2)).")
]
MapOpt = Annotated[
    str, typer.Option("--map", help="2-D map of the rows: auto (UMAP/PCA when --labels), umap, pca, none.")
]
FiguresOpt = Annotated[
    bool, typer.Option("--figures/--no-figures", help="Draw per-file figures (compare overlays always).")
]
MeanOpt = Annotated[
    str | None, typer.Option("--mean", help="With --model: normalisation mean, '0.5' or 'r,g,b'.")
]
StdOpt = Annotated[
    str | None, typer.Option("--std", help="With --model: normalisation std, '0.5' or 'r,g,b'.")
]


def analyze(
    paths: PathsArg = None,
    out: OutOpt = Path("runs/analyze"),
    l2_normalize: L2Opt = False,
    k: KOpt = 20,
    labels: LabelsOpt = None,
    key: KeyOpt = None,
    drop_nonfinite: DropOpt = False,
    compare: CompareOpt = False,
    lid_points: LidPointsOpt = 20000,
    map_method: MapOpt = "auto",
    figures: FiguresOpt = True,
    model: ModelPath = None,
    data: DataOpt = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    trust_pickle: TrustOpt = False,
    layers: LayersOpt = None,
    embed: EmbedOpt = None,
    limit: LimitOpt = None,
    image_size: SizeOpt = None,
    channels: ChannelsOpt = None,
    output: OutputOpt = None,
    pool: PoolOpt = None,
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "cpu",
    num_workers: WorkersOpt = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
) -> None:
    """Measure collapse of embeddings files, or of a model (--model) on data: table, JSON, figures."""
    if model is not None:
        if paths:
            from dimcollapse.errors import ConfigError

            raise ConfigError("pass either embeddings files or --model with --data, not both.")
        _analyze_model(_model_options(locals()))
        return
    if not paths:
        from dimcollapse.errors import InputError

        raise InputError("nothing to analyse: pass embeddings files or folders, or --model PATH --data DATA.")

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
    _analyze_files(paths, out, common, compare)


def _model_options(a: dict[str, Any]) -> Any:
    """The CLI's arguments of ``analyze --model`` as one ModelOptions (validated when the pass starts)."""
    from dimcollapse.analysis.model_options import ModelOptions

    return ModelOptions(
        model=str(a["model"]),
        data=a["data"] or "",
        out=a["out"],
        arch=a["arch"],
        arch_kwargs=_kwargs(a["arch_kwargs"]),
        trust_pickle=a["trust_pickle"],
        layers=[p for item in a["layers"] or [] for p in item.split(",") if p] or None,
        embed=a["embed"],
        output=a["output"],
        pool=a["pool"],
        limit=a["limit"],
        batch_size=a["batch_size"],
        num_workers=a["num_workers"],
        device=a["device"],
        image_size=a["image_size"],
        channels=a["channels"],
        mean=_numbers("--mean", a["mean"]),
        std=_numbers("--std", a["std"]),
        key=a["key"],
        labels=None if a["labels"] is None else str(a["labels"]),
        k=a["k"],
        figures=a["figures"],
        map_method=a["map_method"],
    )


def _analyze_files(paths: list[Path], out: Path, common: dict[str, Any], compare: bool) -> None:
    from dimcollapse.analysis.analyze import analyze_path, compare_paths

    console = Console()
    if compare:
        results = compare_paths(paths, out=out, **common)
        console.print(compare_table(results))
        for m in results:
            _say_verdict(console, m, True)
        page = _record_page(results, [out / m["name"] for m in results], out / "report")
        console.print(
            f"spectra overlaid in {out / 'compare_spectrum.png'} (and .svg); rows in {out / 'compare.json'}; "
            f"report: {page}"
        )
        return
    results = analyze_path(paths, out=out, **common)
    for m in results:
        target = out if len(results) == 1 else out / m["name"]
        console.print(metrics_table(m, target))
        _say_verdict(console, m, len(results) > 1)
    if len(results) > 1:
        console.print(compare_table(results))
    if not common["figures"]:
        console.print(f"metrics.json written to {out}")
        return
    folders = [out if len(results) == 1 else out / m["name"] for m in results]
    page = _record_page(results, folders, out / "report")
    console.print(f"metrics.json and figures written to {out}; report: {page}")


def _record_page(results: list[dict[str, Any]], folders: list[Path], out: Path) -> Path:
    """The HTML page of the records this call has just built, rendered from memory (no metrics.json is
    read back) by the one page renderer of `report A B` (``report/compare.py:render_comparison``)."""
    from dimcollapse.records import EmbeddingRecord
    from dimcollapse.report.compare import collect_records, render_comparison

    records = [
        (str(m["name"]), folder, EmbeddingRecord.from_fields(m))
        for m, folder in zip(results, folders, strict=True)
    ]
    return render_comparison(collect_records(records), out, ", ".join(str(m["name"]) for m in results))


def _say_verdict(console: Console, m: dict[str, Any], named: bool) -> None:
    """The one-line verdict of an analysed embedding, then its warnings (N <= D, ...), as plain text."""
    who = f"{m['name']}: " if named else ""
    console.print(f"{who}{m['verdict']}", markup=False, highlight=False, soft_wrap=True)
    for note in m.get("warnings", []):
        console.print(f"warning: {who}{note}", markup=False, highlight=False, soft_wrap=True)


def _kwargs(text: str | None) -> dict[str, Any]:
    import yaml

    from dimcollapse.errors import ConfigError

    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(
            f"--arch-kwargs is not JSON/YAML ({str(e).splitlines()[0]}); e.g. '{{in_channels: 1}}'."
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"--arch-kwargs must be a mapping such as '{{in_channels: 1}}', got {text!r}.")
    return value


def _numbers(flag: str, text: str | None) -> list[float] | None:
    from dimcollapse.errors import ConfigError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"{flag} takes numbers separated by commas (e.g. 0.485,0.456,0.406), got {text!r}."
        ) from None


def _analyze_model(opts: Any) -> None:
    from dimcollapse.analysis.model import run_analysis

    m = run_analysis(opts)
    out = opts.out
    console = Console()
    console.print(metrics_table(m, out))
    table = Table(title="weight layers", header_style="bold")
    for col in ("layer", "erank", "sigma max", "sigma min", "||G - I||^2", "feature erank"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for name, st in m["layers"].items():
        feat = m["features"].get(name, {}).get("erank")
        table.add_row(
            name,
            f"{st['erank']:.2f}",
            f"{st['sigma_max']:.3g}",
            f"{st['sigma_min']:.3g}",
            f"{st['orth_dev']:.3g}",
            "-" if feat is None else f"{feat:.2f}",
        )
    console.print(table)
    page = ""
    if opts.figures:  # the one-page report of this record (`dimcollapse report A B ...` compares several)
        page = f"; report: {_record_page([m], [out], out / 'report')}"
    pool = f", pooled '{m['embedding_pool']}'" if m.get("embedding_pool") else ""
    count = f"{m['inputs']} inputs ({m['n']} token rows)" if "inputs" in m else f"{m['n']} inputs"
    console.print(
        f"{m['model']['kind']} model, output '{m['embedding']}'{pool}, {count} from {m['data']}: "
        f"metrics.json in {out}{page}"
    )
    _say_verdict(console, m, False)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
