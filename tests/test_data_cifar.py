"""CIFAR-10/100 loaders on small files in the real binary and python (pickle) formats; the restricted
unpickler refuses anything that is not CIFAR's."""

from __future__ import annotations

import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from dimcollapse.data import cifar
from dimcollapse.data.safe_pickle import load_cifar_pickle
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIMCOLLAPSE_DATA", raising=False)


def images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_bin10(d: Path, sizes: tuple[int, ...] = (3, 2, 4, 1, 2), n_test: int = 5) -> dict[str, np.ndarray]:
    """cifar-10-batches-bin: records <label><R plane><G plane><B plane>."""
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[np.ndarray]] = {"x": [], "y": []}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)]
    for name, n in zip(names, sizes, strict=True):
        x, y = images(n), RNG.integers(0, 10, n, dtype=np.uint8)
        (d / name).write_bytes(b"".join(bytes([y[i]]) + x[i].tobytes() for i in range(n)))
        out["x"].append(x)
        out["y"].append(y)
    xt, yt = images(n_test), RNG.integers(0, 10, n_test, dtype=np.uint8)
    (d / "test_batch.bin").write_bytes(b"".join(bytes([yt[i]]) + xt[i].tobytes() for i in range(n_test)))
    return {"x": np.concatenate(out["x"]), "y": np.concatenate(out["y"]), "xt": xt, "yt": yt}


def py2_pickle(batch: dict[bytes, object]) -> bytes:
    """Encode like Python 2 cPickle protocol 2 did for CIFAR: byte strings as BINSTRING, arrays through
    numpy.core.multiarray._reconstruct + numpy.dtype with BUILD states (written opcode by opcode)."""

    def s(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)

    def obj(v: object) -> bytes:
        if isinstance(v, bytes):
            return s(v)
        if isinstance(v, int):
            return b"J" + struct.pack("<i", v)
        if isinstance(v, list):
            return b"](" + b"".join(obj(i) for i in v) + b"e"
        assert isinstance(v, np.ndarray)
        dtype = (
            b"cnumpy\ndtype\n" + s(v.dtype.str[1:].encode()) + b"K\x00K\x01\x87R"
            b"(K\x03" + s(v.dtype.str[:1].encode()) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        )
        shape = b"(" + b"".join(obj(int(k)) for k in v.shape) + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
            b"(K\x01" + shape + dtype + b"\x89" + s(v.tobytes()) + b"tb"
        )

    body = b"".join(obj(k) + obj(v) for k, v in batch.items())
    return b"\x80\x02}(" + body + b"u."


def write_py10(d: Path, n: int = 4, style: str = "py3") -> dict[str, np.ndarray]:
    """cifar-10-batches-py: dicts with b'batch_label', b'labels', b'data' [N, 3072], b'filenames'."""
    d.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = images(n), RNG.integers(0, 10, n).tolist()
        batch = {
            b"batch_label": b"batch",
            b"labels": y,
            b"data": x.reshape(n, -1),
            b"filenames": [b"f.png"] * n,
        }
        blob = py2_pickle(batch) if style == "py2" else pickle.dumps(batch, protocol=2)
        (d / name).write_bytes(blob)
        xs.append(x)
        ys.append(np.array(y))
    return {"x": np.concatenate(xs[:5]), "y": np.concatenate(ys[:5]), "xt": xs[5], "yt": ys[5]}


def test_cifar10_binary(tmp_path: Path) -> None:
    ref = write_bin10(tmp_path / "cifar-10-batches-bin")
    ds = build("dataset", "cifar10", root=str(tmp_path), train=True)
    assert ds.images.shape == (12, 3, 32, 32) and (ds.num_classes, ds.channels, ds.image_size) == (10, 3, 32)
    np.testing.assert_array_equal(ds.images.numpy(), ref["x"])
    np.testing.assert_array_equal(ds.labels.numpy(), ref["y"])
    te = build("dataset", "cifar10", root=tmp_path, train=False)
    np.testing.assert_array_equal(te.images.numpy(), ref["xt"])
    # pixel layout: record byte 1 + c*1024 + row*32 + col is image[c, row, col]
    raw = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    assert te.images[0, 2, 5, 7].item() == raw[1 + 2 * 1024 + 5 * 32 + 7]


@pytest.mark.parametrize("style", ["py3", "py2"])
def test_cifar10_python_format(tmp_path: Path, style: str) -> None:
    ref = write_py10(tmp_path / "cifar-10-batches-py", style=style)
    ds = build("dataset", "cifar10", root=tmp_path, train=True, fraction=1.0)
    np.testing.assert_array_equal(ds.images.numpy(), ref["x"])
    np.testing.assert_array_equal(ds.labels.numpy(), ref["y"])
    te = build("dataset", "cifar10", root=tmp_path, train=False)
    np.testing.assert_array_equal(te.images.numpy(), ref["xt"])


def test_py2_pickle_references_only_numpy_globals(tmp_path: Path) -> None:
    import pickletools

    blob = py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})
    globals_ = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert pickle.loads(blob, encoding="bytes")[b"labels"] == [1, 2]  # the encoder is valid pickle


def test_cifar100_binary_fine_and_coarse(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    for name, n in (("train.bin", 6), ("test.bin", 3)):
        x = images(n)
        coarse, fine = RNG.integers(0, 20, n, dtype=np.uint8), RNG.integers(0, 100, n, dtype=np.uint8)
        (d / name).write_bytes(b"".join(bytes([coarse[i], fine[i]]) + x[i].tobytes() for i in range(n)))
        if name == "train.bin":
            ref = (x, coarse, fine)
    ds = build("dataset", "cifar100", root=tmp_path, train=True)
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.images.numpy(), ref[0])
    np.testing.assert_array_equal(ds.labels.numpy(), ref[2])
    co = build("dataset", "cifar100", root=tmp_path, train=True, label_type="coarse")
    assert co.num_classes == 20
    np.testing.assert_array_equal(co.labels.numpy(), ref[1])
    with pytest.raises(ConfigError, match="fine"):
        build("dataset", "cifar100", root=tmp_path, label_type="medium")


def test_cifar100_python_format(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name in ("train", "test"):
        x = images(5)
        fine, coarse = RNG.integers(0, 100, 5).tolist(), RNG.integers(0, 20, 5).tolist()
        batch = {b"data": x.reshape(5, -1), b"fine_labels": fine, b"coarse_labels": coarse, b"filenames": []}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    te = build("dataset", "cifar100", root=tmp_path, train=False, label_type="coarse")
    np.testing.assert_array_equal(te.images.numpy(), x)
    np.testing.assert_array_equal(te.labels.numpy(), coarse)


def test_binary_corruptions_name_the_file(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-bin"
    write_bin10(d)
    f = d / "data_batch_3.bin"
    good = f.read_bytes()
    f.write_bytes(good[:-10])
    with pytest.raises(InputError, match="truncated") as err:
        build("dataset", "cifar10", root=tmp_path)
    assert str(f) in str(err.value)
    f.write_bytes(bytes([12]) + good[1:])
    with pytest.raises(InputError, match="label 12 out of range") as err:
        build("dataset", "cifar10", root=tmp_path)
    assert str(f) in str(err.value)
    f.unlink()
    with pytest.raises(InputError, match="incomplete") as err:
        build("dataset", "cifar10", root=tmp_path)
    assert str(f) in str(err.value)


def test_python_format_corruptions(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    write_py10(d)
    f = d / "test_batch"
    cases = {
        "missing key(s) labels": {b"data": np.zeros((2, 3072), np.uint8)},
        "count mismatch": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]},
        "labels must lie in 0..9": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]},
        "uint8 array": {b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 1]},
        "not a dict": [1, 2, 3],
    }
    for word, batch in cases.items():
        f.write_bytes(pickle.dumps(batch, protocol=2))
        with pytest.raises(InputError, match=re.escape(word)) as err:
            build("dataset", "cifar10", root=tmp_path, train=False)
        assert str(f) in str(err.value)
    f.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-20])
    with pytest.raises(InputError, match="not a CIFAR") as err:
        build("dataset", "cifar10", root=tmp_path, train=False)
    assert str(f) in str(err.value)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("proto", [2, 4])
def test_forbidden_global_is_refused_without_executing(tmp_path: Path, proto: int) -> None:
    marker = tmp_path / "executed"
    f = tmp_path / "evil"
    f.write_bytes(pickle.dumps({b"data": Evil(marker), b"labels": [0]}, protocol=proto))
    with pytest.raises(InputError, match="is not allowed") as err:
        load_cifar_pickle(f)
    assert str(f) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()
    # an object array would unpickle arbitrary objects: refused too
    f.write_bytes(pickle.dumps({b"data": np.array([b"x", 1], dtype=object)}, protocol=proto))
    with pytest.raises(InputError, match="not a CIFAR"):
        load_cifar_pickle(f)


def test_missing_cifar_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIMCOLLAPSE_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    with pytest.raises(InputError) as err:
        build("dataset", "cifar100")
    msg = str(err.value)
    assert str(tmp_path / "env") in msg and "cifar-100-binary" in msg
    assert cifar.how_to_get("cifar100") in msg
    # a given data.root that does not exist is an error naming it (never a silent fall-back)
    with pytest.raises(InputError) as err:
        build("dataset", "cifar100", root=tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value) and "data.root" in str(err.value)
