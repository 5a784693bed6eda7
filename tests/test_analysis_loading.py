"""Embeddings/labels loading: every format round-trips; bad files raise InputError naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_safetensors_np
from safetensors.torch import save_file as save_safetensors_pt

from dimcollapse.analysis.loading import (
    as_embeddings,
    embedding_files,
    load_embeddings,
    load_labels,
    read_array,
)
from dimcollapse.errors import InputError


@pytest.fixture
def z() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)


def test_npy_roundtrip(tmp_path, z):
    np.save(tmp_path / "e.npy", z)
    emb = load_embeddings(tmp_path / "e.npy")
    np.testing.assert_array_equal(emb.values, z)
    assert emb.name == "e" and emb.dropped == 0 and emb.kept.all()


def test_npz_single_named_and_auto_2d(tmp_path, z):
    np.savez(tmp_path / "one.npz", feats=z)
    np.testing.assert_array_equal(read_array(tmp_path / "one.npz"), z)
    np.savez(tmp_path / "two.npz", feats=z, labels=np.arange(7))  # the only 2-D array is chosen
    np.testing.assert_array_equal(read_array(tmp_path / "two.npz"), z)
    np.testing.assert_array_equal(read_array(tmp_path / "two.npz", key="labels"), np.arange(7))
    np.savez(tmp_path / "amb.npz", a=z, b=z * 2)
    with pytest.raises(InputError, match="--key"):
        read_array(tmp_path / "amb.npz")
    np.testing.assert_array_equal(read_array(tmp_path / "amb.npz", key="b"), z * 2)
    with pytest.raises(InputError, match="no array named 'c'"):
        read_array(tmp_path / "amb.npz", key="c")


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_tensor_and_dict(tmp_path, z, suffix):
    torch.save(torch.from_numpy(z), tmp_path / f"t{suffix}")
    np.testing.assert_array_equal(read_array(tmp_path / f"t{suffix}"), z)
    torch.save({"z": torch.from_numpy(z), "y": torch.arange(7), "epoch": 3}, tmp_path / f"d{suffix}")
    np.testing.assert_array_equal(read_array(tmp_path / f"d{suffix}"), z)
    np.testing.assert_array_equal(read_array(tmp_path / f"d{suffix}", key="y"), np.arange(7))
    with pytest.raises(InputError, match="not a tensor"):
        read_array(tmp_path / f"d{suffix}", key="epoch")


def test_torch_bfloat16_and_grad(tmp_path, z):
    t = torch.from_numpy(z).to(torch.bfloat16)
    torch.save(t, tmp_path / "bf.pt")
    out = read_array(tmp_path / "bf.pt")
    np.testing.assert_array_equal(out, t.float().numpy())
    torch.save(torch.from_numpy(z).requires_grad_(), tmp_path / "g.pt")
    np.testing.assert_array_equal(read_array(tmp_path / "g.pt"), z)


class Pickled:
    """A custom class: a .pt holding it must be refused (weights_only)."""

    def __init__(self) -> None:
        self.z = np.zeros((3, 2))


def test_torch_pickled_object_refused(tmp_path):
    torch.save({"obj": Pickled()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="pickled Python objects"):
        read_array(tmp_path / "evil.pt")


def test_safetensors_roundtrip(tmp_path, z):
    save_safetensors_np({"emb": z}, str(tmp_path / "a.safetensors"))
    np.testing.assert_array_equal(read_array(tmp_path / "a.safetensors"), z)
    save_safetensors_pt(
        {"emb": torch.from_numpy(z).to(torch.bfloat16), "other": torch.zeros(2, 2)},
        str(tmp_path / "b.safetensors"),
    )
    with pytest.raises(InputError, match="--key"):
        read_array(tmp_path / "b.safetensors")
    out = read_array(tmp_path / "b.safetensors", key="emb")
    np.testing.assert_array_equal(out, torch.from_numpy(z).to(torch.bfloat16).float().numpy())


def test_csv_with_and_without_header(tmp_path, z):
    np.savetxt(tmp_path / "plain.csv", z.astype(np.float64), delimiter=",", fmt="%.17g")
    np.testing.assert_array_equal(read_array(tmp_path / "plain.csv"), z.astype(np.float64))
    np.savetxt(
        tmp_path / "head.csv", z.astype(np.float64), delimiter=",", fmt="%.17g", header="a,b,c", comments=""
    )
    np.testing.assert_array_equal(read_array(tmp_path / "head.csv"), z.astype(np.float64))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(InputError, match="line 3 is not numeric"):
        read_array(tmp_path / "bad.csv")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(InputError, match="same number of columns"):
        read_array(tmp_path / "ragged.csv")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors", ".csv"])
def test_corrupt_and_truncated_files(tmp_path, z, suffix):
    good = tmp_path / f"good{suffix}"
    if suffix == ".npy":
        np.save(good, z)
    elif suffix == ".npz":
        np.savez(good, z=z)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(z), good)
    elif suffix == ".safetensors":
        save_safetensors_np({"z": z}, str(good))
    else:
        good.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    data = good.read_bytes()
    bad = tmp_path / f"trunc{suffix}"
    bad.write_bytes(data[: len(data) // 2] if suffix != ".csv" else data)
    with pytest.raises(InputError, match="trunc"):
        read_array(bad)
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(b"\x00\x01not an array at all\xff" * 3)
    with pytest.raises(InputError, match="junk"):
        read_array(junk)


def test_missing_unknown_and_directory(tmp_path, z):
    with pytest.raises(InputError, match="does not exist"):
        embedding_files(tmp_path / "nope.npy")
    (tmp_path / "x.txt").write_text("1,2\n")
    with pytest.raises(InputError, match=r"unknown extension '\.txt'"):
        embedding_files(tmp_path / "x.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no embeddings files"):
        embedding_files(empty)
    np.save(empty / "b.npy", z)
    np.save(empty / "a.npy", z)
    (empty / "notes.md").write_text("ignored")
    assert [p.name for p in embedding_files(empty)] == ["a.npy", "b.npy"]


def test_shape_and_value_checks():
    with pytest.raises(InputError, match=r"1-D"):
        as_embeddings(np.zeros(5), "v")
    with pytest.raises(InputError, match=r"3-D.*pool or flatten"):
        as_embeddings(np.zeros((4, 3, 2)), "v")
    with pytest.raises(InputError, match="1 row"):
        as_embeddings(np.zeros((1, 3)), "v")
    with pytest.raises(InputError, match="expected real numbers"):
        as_embeddings(np.array([["a", "b"], ["c", "d"]]), "v")
    ints, _ = as_embeddings(np.arange(6).reshape(3, 2), "v")
    assert ints.dtype == np.float64


def test_nonfinite_rows_counted_and_dropped(tmp_path):
    z = np.random.default_rng(0).normal(size=(10, 4))
    z[2, 1] = np.nan
    z[5, 0] = np.inf
    z[7, 3] = -np.inf
    np.save(tmp_path / "nf.npy", z)
    with pytest.raises(
        InputError, match=r"3 of 10 rows contain NaN or Inf \(first at row 2\).*--drop-nonfinite"
    ):
        load_embeddings(tmp_path / "nf.npy")
    emb = load_embeddings(tmp_path / "nf.npy", drop_nonfinite=True)
    assert emb.dropped == 3 and emb.rows_in_file == 10
    np.testing.assert_array_equal(emb.values, np.delete(z, [2, 5, 7], axis=0))
    np.testing.assert_array_equal(np.flatnonzero(~emb.kept), [2, 5, 7])
    allbad = np.full((3, 2), np.nan)
    allbad[0] = 1.0
    with pytest.raises(InputError, match="after dropping 2 rows"):
        as_embeddings(allbad, "v", drop_nonfinite=True)


def test_labels_formats_and_checks(tmp_path):
    y = np.array([0, 3, 1, 1, 2])
    np.save(tmp_path / "y.npy", y)
    np.testing.assert_array_equal(load_labels(tmp_path / "y.npy", 5), y)
    (tmp_path / "y.txt").write_text("\n".join(map(str, y)) + "\n")
    np.testing.assert_array_equal(load_labels(tmp_path / "y.txt", 5), y)
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(map(str, y)))
    np.testing.assert_array_equal(load_labels(tmp_path / "y.csv", 5), y)
    with pytest.raises(InputError, match="has 5 labels but the embeddings have 6 rows"):
        load_labels(tmp_path / "y.npy", 6)
    (tmp_path / "f.txt").write_text("0\n1.5\n")
    with pytest.raises(InputError, match="non-integer"):
        load_labels(tmp_path / "f.txt", 2)
    with pytest.raises(InputError, match="does not exist"):
        load_labels(tmp_path / "none.npy", 2)
