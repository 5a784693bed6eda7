"""Tar shards of a generated ImageNet tree load to the same images and labels as the tree, streamed (each
shard read by exactly one rank x worker) or at random offsets; the CLI writes them and refuses bad input."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from dimcollapse.cli.main import run
from dimcollapse.data.imagenet import ImageNetDataset
from dimcollapse.data.shards import ShardStream, assigned
from dimcollapse.errors import InputError
from imagenet_helpers import write_imagenet


@pytest.fixture()
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv("DIMCOLLAPSE_DATA", raising=False)
    write_imagenet(tmp_path / "tree", per_class=3, labels="devkit")
    out = tmp_path / "shards"
    assert (
        run(["data", "shards", "--src", str(tmp_path / "tree"), "--out", str(out), "--per-shard", "2"]) == 0
    )
    return tmp_path / "tree", out


def items(ds: object) -> list[tuple[torch.Tensor, int]]:
    return [(x, int(y)) for x, y in ds]  # type: ignore[attr-defined]


def test_shards_hold_the_tree_in_webdataset_form(written: tuple[Path, Path]) -> None:
    _, out = written
    tars = sorted((out / "train").glob("shard-*.tar"))
    assert len(tars) == 5  # 9 training images, 2 per shard
    with tarfile.open(tars[0]) as tar:
        names = tar.getnames()
        assert names == ["000000000.jpg", "000000000.cls", "000000001.jpg", "000000001.cls"]
        assert tar.extractfile("000000001.cls").read() == b"0"  # type: ignore[union-attr]
    assert len(list((out / "val").glob("shard-*.tar"))) == 3


@pytest.mark.parametrize("train", [True, False])
def test_streamed_and_random_access_shards_equal_the_tree(written: tuple[Path, Path], train: bool) -> None:
    tree, out = written
    want = items(ImageNetDataset(tree, train, image_size=16, resize=18))
    split = out / ("train" if train else "val")
    streamed = items(ShardStream(split, image_size=16, resize=18))
    assert len(streamed) == len(want)
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(streamed, want, strict=True))
    random_access = ImageNetDataset(train=train, shards=out, image_size=16, resize=18)
    assert random_access.classes == ImageNetDataset(tree, True).classes
    got = items(random_access[i] for i in range(len(random_access)))
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(got, want, strict=True))


def test_shards_split_across_ranks_and_workers_once_each(written: tuple[Path, Path]) -> None:
    tree, out = written
    want = items(ImageNetDataset(tree, True, image_size=16, resize=18))
    seen: list[tuple[torch.Tensor, int]] = []
    for rank in range(2):
        stream = ShardStream(
            out / "train", image_size=16, resize=18, rank=rank, world=2, shuffle=True, seed=1
        )
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        seen.extend((x, int(y)) for x, y in loader)
    assert len(seen) == len(want)  # no sample twice, none lost
    key = [x.sum().item() * 10 + y for x, y in seen]
    assert sorted(key) == sorted(x.sum().item() * 10 + y for x, y in want)
    parts = [assigned(5, r, 2, w, 2) for r in range(2) for w in range(2)]
    assert sorted(i for p in parts for i in p) == list(range(5))


def test_shards_cli_refuses_bad_input_and_writes_nothing(
    written: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    tree, out = written
    assert run(["data", "shards", "--src", str(tree), "--out", str(out)]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    bad = tmp_path / "new"
    assert run(["data", "shards", "--src", str(tree), "--out", str(bad), "--per-shard", "0"]) == 2
    assert run(["data", "shards", "--src", str(tmp_path / "nowhere"), "--out", str(bad)]) == 2
    assert not bad.exists()
    with pytest.raises(InputError, match=r"shards\.json"):
        ShardStream(tmp_path / "tree")
