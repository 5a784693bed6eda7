"""One page renderer for `analyze`, `analyze --compare`, `analyze --model` and `report A B`: it renders rows
of result records; `analyze` hands it the records it has just built and never reads its own JSON back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dimcollapse.cli.main import run
from dimcollapse.diagnostics import catalogue
from dimcollapse.records import EmbeddingRecord
from dimcollapse.report import compare_inputs
from dimcollapse.report.compare import collect_records, render_comparison


def _embeddings(path: Path, rank: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((60, rank)) @ rng.standard_normal((rank, 12))
    np.save(path, z.astype(np.float32))
    return path


def test_the_renderer_takes_records_held_in_memory(tmp_path: Path) -> None:
    """A record that exists nowhere on disk: the page shows its numbers (the folder does not exist)."""
    rec = EmbeddingRecord.from_fields({"name": "mine", "n": 40, "d": 8, "erank": 3.25, "collapsed_dims": 5,
                                       "spectrum": [4.0, 2.0, 1.0, 0.5, 0, 0, 0, 0]})  # fmt: skip
    got = collect_records([("mine", tmp_path / "nowhere", rec)])
    page = render_comparison(got, tmp_path / "page", "in memory")
    text = page.read_text()
    assert catalogue.fmt("erank", 3.25) in text and ">mine<" in text
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(Exception, match="nothing to compare"):
        collect_records([])


def _no_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object) -> object:
        raise AssertionError(f"the page re-read {path}")

    monkeypatch.setattr(compare_inputs, "read_record", refuse)


def test_analyze_pages_show_their_records_without_reading_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_rereads(monkeypatch)
    one = _embeddings(tmp_path / "low.npy", 3, 0)
    two = _embeddings(tmp_path / "full.npy", 12, 1)
    out = tmp_path / "a"
    assert run(["analyze", str(one), "--out", str(out), "--k", "5", "--map", "none"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    page = (out / "report" / "index.html").read_text()
    assert catalogue.fmt("erank", m["erank"]) in page and m["verdict"].split(" (")[0] in page
    cmp_out = tmp_path / "cmp"
    assert run(["analyze", str(one), str(two), "--compare", "--out", str(cmp_out), "--k", "5"]) == 0
    page = (cmp_out / "report" / "index.html").read_text()
    for name in ("low", "full"):
        m = json.loads((cmp_out / name / "metrics.json").read_text())
        assert f">{name}<" in page and catalogue.fmt("erank", m["erank"]) in page
    assert run(["analyze", str(one), "--out", str(tmp_path / "b"), "--k", "5", "--no-figures"]) == 0
    assert not (tmp_path / "b" / "report").exists()  # --no-figures: JSON only
