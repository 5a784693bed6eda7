"""IDX reader and Fashion-MNIST loader on small files written in the real on-disk format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dimcollapse.data import fashion_mnist as fm
from dimcollapse.data.idx import read_idx, write_idx
from dimcollapse.errors import InputError
from dimcollapse.registry import build


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding written independently of write_idx: 0, 0, 0x08, ndim, big-endian sizes, data."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def make_fmnist(
    directory: Path, n_train: int = 30, n_test: int = 12, gz: bool = True
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbls = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3-ubyte", imgs), ("labels-idx1-ubyte", lbls)):
            data = idx_bytes(arr)
            name = f"{stem}-{kind}" + (".gz" if gz else "")
            (directory / name).write_bytes(gzip.compress(data) if gz else data)
        out[stem] = imgs
        out[stem + "_labels"] = lbls
    return out


@pytest.fixture
def no_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hide $DIMCOLLAPSE_DATA and the system default so only the given root counts."""
    empty = tmp_path / "nowhere"
    monkeypatch.delenv("DIMCOLLAPSE_DATA", raising=False)
    monkeypatch.setattr(fm, "DEFAULT_ROOTS", [empty])
    return empty


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_raw_and_gz(tmp_path: Path, no_default: Path, gz: bool) -> None:
    ref = make_fmnist(tmp_path, gz=gz)
    ds = build("dataset", "fashion_mnist", root=str(tmp_path), train=True)
    assert ds.images.shape == (30, 1, 28, 28) and ds.images.dtype.is_floating_point is False
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), ref["train"])
    np.testing.assert_array_equal(ds.labels.numpy(), ref["train_labels"].astype(np.int64))
    test = build("dataset", "fashion_mnist", root=tmp_path, train=False)
    np.testing.assert_array_equal(test.images[:, 0].numpy(), ref["t10k"])
    assert (test.num_classes, test.channels, test.image_size, test.name) == (10, 1, 28, "fashion_mnist")
    img, label = test[3]
    assert img.shape == (1, 28, 28) and label == int(ref["t10k_labels"][3])


def test_env_var_and_subdir_are_searched(
    tmp_path: Path, no_default: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "fashion-mnist"
    sub.mkdir()
    make_fmnist(sub)
    monkeypatch.setenv("DIMCOLLAPSE_DATA", str(tmp_path))
    assert len(build("dataset", "fashion_mnist", train=False)) == 12


def test_missing_names_places_and_how_to_get(tmp_path: Path, no_default: Path) -> None:
    with pytest.raises(InputError) as err:
        build("dataset", "fashion_mnist", root=None, train=True)
    msg = str(err.value)
    assert str(no_default) in msg
    assert "dataset-fashion-mnist" in msg and "DIMCOLLAPSE_DATA" in msg and "data.root=DIR" in msg
    assert "--data-dir" not in msg  # no command has that option
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as err:  # a given root is the only place looked in
        build("dataset", "fashion_mnist", root=tmp_path / "empty", train=True)
    assert str(tmp_path / "empty") in str(err.value) and str(no_default) not in str(err.value)
    with pytest.raises(InputError, match=r"data\.root '.*typo' does not exist"):  # a typo never falls back
        build("dataset", "fashion_mnist", root=tmp_path / "typo", train=True)


def test_write_idx_roundtrip_matches_independent_encoding(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr)
    assert (tmp_path / "a.idx").read_bytes() == idx_bytes(arr)
    write_idx(tmp_path / "a.idx.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), arr)
    ints = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    write_idx(tmp_path / "i.idx", ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), ints)


def corrupt_cases(good: bytes) -> dict[str, tuple[bytes, str]]:
    return {
        "bad_magic": (b"\x01\x02" + good[2:], "magic"),
        "bad_type": (good[:2] + b"\x07" + good[3:], "magic"),
        "truncated": (good[:-5], "truncated"),
        "trailing": (good + b"\x00", "trailing"),
        "short_header": (good[:6], "header"),
        "tiny": (good[:2], "too short"),
    }


@pytest.mark.parametrize("case", ["bad_magic", "bad_type", "truncated", "trailing", "short_header", "tiny"])
def test_corrupt_idx_names_file_and_problem(tmp_path: Path, case: str) -> None:
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    data, word = corrupt_cases(good)[case]
    path = tmp_path / f"{case}.idx"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_idx(path, ndim=3)
    assert str(path) in str(err.value) and word in str(err.value)


def test_truncated_gzip_and_wrong_dims(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    path = tmp_path / "t.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    path2 = tmp_path / "d.idx"
    path2.write_bytes(idx_bytes(np.zeros((3, 27, 28), np.uint8)))
    with pytest.raises(InputError, match="dimension 1 is 27, expected 28"):
        read_idx(path2, ndim=3, dims=(None, 28, 28))
    with pytest.raises(InputError, match="2 dimensions"):
        path2.write_bytes(idx_bytes(np.zeros((3, 28), np.uint8)))
        read_idx(path2, ndim=3)


def test_fashion_mnist_count_mismatch_and_label_range(tmp_path: Path, no_default: Path) -> None:
    make_fmnist(tmp_path, gz=False)
    lbl = tmp_path / "train-labels-idx1-ubyte"
    lbl.write_bytes(idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(InputError, match="count mismatch") as err:
        build("dataset", "fashion_mnist", root=tmp_path)
    assert str(lbl) in str(err.value)
    lbl.write_bytes(idx_bytes(np.full(30, 10, np.uint8)))
    with pytest.raises(InputError, match="out of range") as err:
        build("dataset", "fashion_mnist", root=tmp_path)
    assert str(lbl) in str(err.value)


def test_installed_fashion_mnist_if_present() -> None:
    if not Path(fm.DEFAULT_ROOTS[0], "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed in /usr/share/datasets/fashion-mnist")
    ds = build("dataset", "fashion_mnist", train=False, fraction=0.05, seed=3)
    assert len(ds) == 500 and ds.images.shape[1:] == (1, 28, 28)
    assert set(ds.labels.tolist()) <= set(range(10))
