"""STL-10 binary files, image folders written with PIL, and scikit-learn digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimcollapse.data.image_folder import ImageFolderDataset
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build

RNG = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIMCOLLAPSE_DATA", raising=False)


def write_stl(d: Path, n_train: int = 4, n_test: int = 3, n_unlab: int = 5) -> dict[str, np.ndarray]:
    """stl10_binary: images in column-major order (index [c, col, row]), labels 1..10."""
    d.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlab)):
        x = RNG.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # [N, C, row, col]
        (d / f"{split}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        out[split] = x
        if split != "unlabeled":
            y = RNG.integers(1, 11, n, dtype=np.uint8)
            (d / f"{split}_y.bin").write_bytes(y.tobytes())
            out[split + "_y"] = y
    return out


def test_stl10_splits_and_column_major_layout(tmp_path: Path) -> None:
    ref = write_stl(tmp_path / "stl10_binary")
    tr = build("dataset", "stl10", root=tmp_path, train=True)
    assert tr.images.shape == (4, 3, 96, 96) and tr.num_classes == 10 and tr.image_size == 96
    np.testing.assert_array_equal(tr.images.numpy(), ref["train"])
    np.testing.assert_array_equal(tr.labels.numpy(), ref["train_y"].astype(np.int64) - 1)
    # byte (c * 96 + col) * 96 + row of an image is pixel [c, row, col]
    raw = (tmp_path / "stl10_binary" / "test_X.bin").read_bytes()
    te = build("dataset", "stl10", root=tmp_path, train=False)
    assert te.images[0, 1, 10, 70].item() == raw[(1 * 96 + 70) * 96 + 10]
    both = build("dataset", "stl10", root=tmp_path, split="train+unlabeled")
    assert len(both) == 9 and (both.labels == -1).sum() == 5
    np.testing.assert_array_equal(both.images[4:].numpy(), ref["unlabeled"])
    sub = build("dataset", "stl10", root=tmp_path, split="train+unlabeled", fraction=0.5, seed=2)
    assert len(sub) == 4
    rows = {bytes(x.numpy().tobytes()) for x in both.images}
    assert all(bytes(x.numpy().tobytes()) in rows for x in sub.images)
    with pytest.raises(ConfigError, match="split"):
        build("dataset", "stl10", root=tmp_path, split="val")


def test_stl10_corruptions(tmp_path: Path) -> None:
    d = tmp_path / "stl10_binary"
    write_stl(d)
    x = d / "train_X.bin"
    good = x.read_bytes()
    x.write_bytes(good[:-100])
    with pytest.raises(InputError, match="truncated") as err:
        build("dataset", "stl10", root=tmp_path)
    assert str(x) in str(err.value)
    x.write_bytes(good)
    y = d / "train_y.bin"
    y.write_bytes(bytes([1, 2, 3]))
    with pytest.raises(InputError, match="count mismatch") as err:
        build("dataset", "stl10", root=tmp_path)
    assert str(y) in str(err.value)
    y.write_bytes(bytes([1, 2, 0, 3]))
    with pytest.raises(InputError, match=r"1\.\.10") as err:
        build("dataset", "stl10", root=tmp_path)
    assert str(y) in str(err.value)
    with pytest.raises(InputError, match=r"data\.root '.*missing' does not exist"):
        build("dataset", "stl10", root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="stl10_binary"):
        build("dataset", "stl10", root=tmp_path / "empty")


def write_folder(root: Path) -> dict[str, list[np.ndarray]]:
    """root/train/<class>/ and root/val/<class>/ with PNG and JPEG files of different sizes."""
    out: dict[str, list[np.ndarray]] = {}
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = RNG.integers(0, 256, (20 + 4 * i, 30, 3), dtype=np.uint8)
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(arr).save(d / f"img{i}.{ext}")
                out.setdefault(f"{split}/{cls}", []).append(arr)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return out


def test_image_folder_layout_resize_and_labels(tmp_path: Path) -> None:
    ref = write_folder(tmp_path / "imagenet100")
    ds = build("dataset", "image_folder", root=tmp_path, train=True, image_size=16)
    assert isinstance(ds, ImageFolderDataset)
    assert len(ds) == 6 and ds.classes == ["cat", "dog"] and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 16, 16) and label == 0
    # PNG is lossless: shorter side 20 -> 16 means scale 0.8; centre crop of the 24-wide resized image
    src = Image.fromarray(ref["train/cat"][0]).resize((24, 16), Image.Resampling.BILINEAR)
    expect = np.asarray(src)[:, 4:20].transpose(2, 0, 1)
    assert np.abs(img.numpy().astype(int) - expect.astype(int)).max() <= 1
    val = build("dataset", "image_folder", root=tmp_path / "imagenet100", train=False, image_size=16)
    assert len(val) == 2 and val.labels.tolist() == [0, 1]
    mem = build("dataset", "image_folder", root=tmp_path, image_size=8, channels=1, in_memory=True)
    assert mem.images.shape == (6, 1, 8, 8) and mem.channels == 1
    half = build("dataset", "image_folder", root=tmp_path, image_size=8, fraction=0.5, seed=0)
    assert len(half) == 3


def test_image_folder_errors(tmp_path: Path) -> None:
    write_folder(tmp_path)
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    ds = build("dataset", "image_folder", root=tmp_path, image_size=8)
    i = [str(p) for p, _ in ds.samples].index(str(bad))
    with pytest.raises(InputError, match="cannot read image") as err:
        ds[i]
    assert str(bad) in str(err.value)
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(InputError, match="'bird' does not exist"):
        build("dataset", "image_folder", root=tmp_path, train=False)
    with pytest.raises(InputError, match=r"data\.root '.*missing' does not exist"):  # never a fall-back
        build("dataset", "image_folder", root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="image folder not found"):
        build("dataset", "image_folder", root=tmp_path / "empty")


def test_digits_fixed_split_and_scaling() -> None:
    from sklearn.datasets import load_digits

    tr = build("dataset", "digits", train=True)
    te = build("dataset", "digits", train=False)
    assert len(tr) + len(te) == 1797 and tr.images.shape[1:] == (1, 8, 8)
    assert torch.equal(te.images, build("dataset", "digits", train=False).images)
    raw = load_digits()
    # every test image is one of sklearn's images scaled by 255 / 16
    scaled = torch.from_numpy(np.rint(raw.images * 255 / 16).astype(np.uint8))
    d = (te.images[:, 0, None].int() - scaled[None].int()).abs().flatten(2).amax(-1)
    match = d.argmin(1)
    assert (d.min(1).values == 0).all()
    assert torch.equal(te.labels, torch.from_numpy(raw.target)[match])
    train_rows = {bytes(x.numpy().tobytes()) for x in tr.images}
    assert sum(bytes(x.numpy().tobytes()) in train_rows for x in te.images) < 5  # duplicates only
