"""WebDataset-style tar shards for file systems that dislike a million small files.

    manifest = write_shards(dataset.files(), dataset.classes, out_dir, per_shard=1000)
    stream = ShardStream(out_dir, image_size=224, resize=256)      # an IterableDataset

A shard ``shard-000000.tar`` holds, per sample, ``<key>.jpg`` (the source file's bytes, not re-encoded)
and ``<key>.cls`` (the class index as ASCII digits), consecutively, as WebDataset reads them. ``shards.json``
(written last) lists the shards with their counts, the class names and each member's byte offset, so a
shard can also be read at random positions (``Member.read_bytes``). Python's ``tarfile`` reads and writes
them: no dependency (the ``webdataset`` package pulls in torch-adjacent requirements this project pins).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from dimcollapse.data.crops import centre_box, crop_pil
from dimcollapse.data.decode import open_image
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.utils.atomic import atomic_open, atomic_write_json

MANIFEST = "shards.json"
FORMAT = "dimcollapse-shards-1"


class Member(NamedTuple):
    """One sample's image bytes inside a shard: (shard file, byte offset of the data, size)."""

    shard: Path
    offset: int
    size: int

    def read_bytes(self) -> bytes:
        """The image file's bytes, read at its offset."""
        with open(self.shard, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.size)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_one(path: Path, rows: Sequence[tuple[int, Path, int]]) -> list[list[int]]:
    """Write one shard atomically; [[data offset, size, label], ...] of its samples."""
    with (
        atomic_open(path, "wb") as fh,
        tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for i, src, label in rows:
            key = f"{i:09d}"
            ext = src.suffix.lower().lstrip(".").replace("jpeg", "jpg") or "jpg"
            _add(tar, f"{key}.{ext}", src.read_bytes())
            _add(tar, f"{key}.cls", str(int(label)).encode())
    offsets: list[list[int]] = []
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if not m.name.endswith(".cls"):
                offsets.append([m.offset_data, m.size, 0])
            else:
                offsets[-1][2] = int(tar.extractfile(m).read())  # type: ignore[union-attr]
    return offsets


def write_shards(
    samples: Sequence[tuple[Path, int]], classes: Sequence[str], out: Path, per_shard: int
) -> dict[str, Any]:
    """Write ``samples`` (path, label) in order into shards of ``per_shard`` samples and the manifest."""
    if isinstance(per_shard, bool) or int(per_shard) < 1:
        raise ConfigError(f"--per-shard must be an integer >= 1, got {per_shard!r}.")
    if not samples:
        raise InputError("no samples to write; check --src and --split.")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; give a new or empty --out folder.")
    missing = [str(p) for p, _ in samples[:1000] if not Path(p).is_file()]
    if missing:
        raise InputError(f"source file {missing[0]} does not exist; rebuild the file index or check --src.")
    out.mkdir(parents=True, exist_ok=True)
    n = int(per_shard)
    shards = []
    for s, start in enumerate(range(0, len(samples), n)):
        rows = [(start + j, Path(p), y) for j, (p, y) in enumerate(samples[start : start + n])]
        name = f"shard-{s:06d}.tar"
        shards.append({"name": name, "count": len(rows), "members": _write_one(out / name, rows)})
    manifest = {"format": FORMAT, "classes": list(classes), "total": len(samples), "shards": shards}
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a shard folder (InputError naming the fix when it is missing or not ours)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read {path} ({exc}); write them with `dimcollapse data shards --src DIR --out DIR`."
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a dimcollapse shard manifest ({FORMAT}).")
    return data


def shard_members(folder: str | os.PathLike[str]) -> list[tuple[Member, int]]:
    """(Member, label) of every sample, in written order: random access into the shards."""
    root, data = Path(folder), read_manifest(folder)
    return [
        (Member(root / s["name"], int(o), int(n)), int(y)) for s in data["shards"] for o, n, y in s["members"]
    ]


def assigned(n_shards: int, rank: int, world: int, worker: int, workers: int) -> list[int]:
    """Shards of (rank, worker): shard i goes to consumer i mod (world x workers); consumer = rank x workers
    + worker."""
    consumers, me = world * workers, rank * workers + worker
    return [i for i in range(n_shards) if i % consumers == me]


class ShardStream(IterableDataset[tuple[Tensor, int]]):
    """Streams (uint8 [C, image_size, image_size] evaluation crop, label) from the shards, each shard read
    sequentially by exactly one (rank, worker); ``shuffle`` permutes the shard order per ``epoch``."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        image_size: int = 224,
        resize: int = 256,
        channels: int = 3,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
    ) -> None:
        self.folder, self.manifest = Path(folder), read_manifest(folder)
        self.classes: list[str] = list(self.manifest["classes"])
        self.image_size, self.resize, self.channels = int(image_size), int(resize), int(channels)
        self.rank, self.world, self.shuffle, self.seed, self.epoch = rank, world, shuffle, seed, epoch

    def shard_order(self) -> list[str]:
        """Shard names in this epoch's order (seeded permutation when shuffling)."""
        names = [s["name"] for s in self.manifest["shards"]]
        if not self.shuffle:
            return names
        gen = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(self.epoch))
        return [names[i] for i in torch.randperm(len(names), generator=gen).tolist()]

    def __iter__(self) -> Iterator[tuple[Tensor, int]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        names = self.shard_order()
        for i in assigned(len(names), self.rank, self.world, worker, workers):
            yield from self._read(self.folder / names[i])

    def _read(self, path: Path) -> Iterator[tuple[Tensor, int]]:
        data: bytes | None = None
        try:
            with tarfile.open(path, mode="r|") as tar:  # streaming: one pass, no seeks
                for m in tar:
                    payload = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
                    if not m.name.endswith(".cls"):
                        data = payload
                        continue
                    if data is None:
                        raise InputError(f"{path}: {m.name} has no image before it; rewrite the shard.")
                    img = open_image(data, self.channels)
                    box = centre_box(img.size[0], img.size[1], self.resize, self.image_size)
                    yield crop_pil(img, box, self.image_size), int(payload)
                    data = None
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise InputError(
                f"cannot read shard {path}: {exc}; rewrite it with `dimcollapse data shards`."
            ) from None
