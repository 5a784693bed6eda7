"""Size guards: decompression bombs (PIL's pixel limit, gzip output limit for IDX files) and impossible
allocations are refused with the size asked for and the limit; N < D spectra go through the N x N Gram;
a full disk is a one-line error that keeps the previous file."""

from __future__ import annotations

import errno
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimcollapse import diagnostics as dg
from dimcollapse.data.idx import read_bytes, read_idx
from dimcollapse.data.image_folder import load_image
from dimcollapse.errors import DiskFullError, InputError
from dimcollapse.utils.atomic import atomic_write_text, remove_stale_temp_files
from robust_helpers import idx_gzip_bomb, png_header_only


def test_png_decompression_bomb_is_refused_with_its_size(tmp_path: Path) -> None:
    png_header_only(tmp_path / "big.png", 14000, 14000)
    with pytest.raises(InputError) as err:
        load_image(tmp_path / "big.png", 8, 1)
    msg = str(err.value)
    assert "196000000 pixels" in msg and str(Image.MAX_IMAGE_PIXELS) in msg and "MAX_IMAGE_PIXELS" in msg


def test_image_between_one_and_two_times_the_limit_is_refused_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("L", (20, 10)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 200 pixels: PIL only warns below 2x the limit
    with pytest.raises(InputError, match=r"too large to decode safely.*limit is 150 pixels"):
        load_image(tmp_path / "a.png", 8, 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(tmp_path / "a.png", 8, 1).shape == (1, 8, 8)


def test_idx_gzip_bomb_stops_at_the_size_its_header_announces(tmp_path: Path) -> None:
    idx_gzip_bomb(tmp_path / "bomb.gz", 64 * 2**20)  # announces 47 MB, holds 64 MiB more
    with pytest.raises(InputError, match=r"decompresses to more than 48088592 bytes \(its header announces"):
        read_idx(tmp_path / "bomb.gz", ndim=3)
    (tmp_path / "plain.gz").write_bytes(gzip.compress(b"\0" * 5000))
    with pytest.raises(InputError, match=r"more than 4096 bytes"):
        read_bytes(tmp_path / "plain.gz", max_bytes=4096)
    assert read_bytes(tmp_path / "plain.gz", max_bytes=5000) == b"\0" * 5000
    multi = gzip.compress(b"ab") + gzip.compress(b"cd")  # several members, as gzip concatenates them
    (tmp_path / "multi.gz").write_bytes(multi)
    assert read_bytes(tmp_path / "multi.gz") == b"abcd"


def test_wide_embedding_uses_the_gram_and_matches_the_covariance() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 300)) * np.linspace(3, 0.1, 300)
    ref = np.sort(np.linalg.eigvalsh(np.cov(z.T, bias=True)))[::-1]
    got = dg.covariance_spectrum(z)
    assert got.shape == (300,)
    np.testing.assert_allclose(got, ref, atol=1e-10 * ref[0])
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert dg.rankme(z) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)


def test_5_by_200000_embedding_is_analysed_without_a_d_by_d_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIMCOLLAPSE_MAX_ALLOC_GB", "1")
    z = torch.randn(5, 200_000, generator=torch.Generator().manual_seed(0))
    stats = dg.summarize(z, k=2)
    assert stats["d"] == 200_000 and 3.5 < stats["erank"] <= 4.0  # 5 centred rows span 4 dimensions
    with pytest.raises(InputError) as err:  # the D x D path is refused with the size and the limit
        dg.covariance_matrix(z)
    msg = str(err.value)
    assert "200000 x 200000" in msg and "298.0 GiB" in msg and "1.0 GiB" in msg


def test_full_disk_is_one_error_naming_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=f"no space left on the device while writing '{target}'"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".last.ckpt.999999999.x1y2z3.tmp"
    live = tmp_path / f".last.ckpt.{os.getpid()}.x1y2z3.tmp"
    other = tmp_path / "keep.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path) == [dead]
    assert live.exists() and other.exists()
