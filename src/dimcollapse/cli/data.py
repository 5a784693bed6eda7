"""``dimcollapse data shards``: write ImageNet as distributed into WebDataset-style tar shards.

    dimcollapse data shards --src /data/imagenet --out /scratch/imagenet-shards --per-shard 1000

writes ``OUT/train/shard-*.tar`` and ``OUT/val/shard-*.tar`` (each with ``shards.json``); a run reads them
with ``data.name=imagenet data.kwargs.shards=OUT``.
"""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    help="Prepare data sets (tar shards of ImageNet as distributed).",
    no_args_is_help=True,
    add_completion=False,
)


@data_app.command("shards")
def shards(
    src: Path = typer.Option(..., help="ImageNet folder: train/<wnid>/ and val/ (+ labels file)."),
    out: Path = typer.Option(..., help="new or empty folder; OUT/<split>/shard-*.tar are written."),
    per_shard: int = typer.Option(1000, help="samples per shard."),
    split: str = typer.Option("both", help="train | val | both."),
    labels_file: Path | None = typer.Option(None, help="val labels (default: found in --src)."),
) -> None:
    """Write tar shards (<key>.jpg + <key>.cls per sample, the files' own bytes) and their manifests."""
    from dimcollapse.data.imagenet import ImageNetDataset
    from dimcollapse.data.shards import write_shards
    from dimcollapse.errors import ConfigError, InputError

    if split not in ("train", "val", "both"):
        raise ConfigError(f"--split must be train, val or both, got {split!r}.")
    if per_shard < 1:
        raise ConfigError(f"--per-shard must be >= 1, got {per_shard}.")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; give a new or empty --out folder.")
    splits = ["train", "val"] if split == "both" else [split]
    sets = {
        s: ImageNetDataset(src, s == "train", labels_file=labels_file) for s in splits
    }  # all checked first
    for name, ds in sets.items():
        manifest = write_shards(ds.files(), ds.classes, out / name, per_shard)
        typer.echo(
            f"{name}: {manifest['total']} images in {len(manifest['shards'])} shard(s) -> {out / name}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
