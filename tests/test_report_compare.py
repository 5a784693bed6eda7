"""`dimcollapse report A B C`: one page comparing analyze output, a tracked plain loop and a run folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dimcollapse import Tracker
from dimcollapse.analysis import analyze_embeddings
from dimcollapse.cli.main import run
from dimcollapse.diagnostics import catalogue


def test_report_compares_folders_from_anywhere(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = rng.normal(size=(200, 12))
    collapsed = full[:, :3] @ rng.normal(size=(3, 12))
    analyze_embeddings(full, out=tmp_path / "full", k=5, figures=False)
    m_col = analyze_embeddings(collapsed, out=tmp_path / "collapsed", k=5, figures=False)
    model = nn.Linear(12, 4)
    tracker = Tracker(
        model, torch.randn(40, 12), every=1, out_path=tmp_path / "collapsed" / "monitor.json", lid_k=5
    )
    for step in (1, 2, 3):
        tracker.step(step)
    tracker.write()
    run_dir = tmp_path / "engine_run"  # what `dimcollapse train` writes: metrics of the representation r
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(
        json.dumps({"erank_r": 7.25, "rankme_r": 8.5, "d_r": 16, "n_test": 99})
    )
    out = tmp_path / "page"
    code = run(
        ["report", str(tmp_path / "full"), str(tmp_path / "collapsed"), str(run_dir), "--out", str(out)]
    )
    assert code == 0
    page = (out / "index.html").read_text()
    for name in ("full", "collapsed", "engine_run", "7.25", "r (run)", "not equalised"):
        assert name in page, name
    assert catalogue.fmt("erank", m_col["erank"]) in page and m_col["collapsed_dims"] == 9
    assert re.search(r"collapsed</td>.*?<td[^>]*>file</td>", page, re.S)
    assert (out / "figures" / "spectra.png").is_file() and (out / "figures" / "history.png").is_file()


def test_report_of_one_analyze_folder_and_a_wrong_folder(tmp_path: Path) -> None:
    analyze_embeddings(np.random.default_rng(1).normal(size=(50, 4)), out=tmp_path / "a", k=5, figures=False)
    assert run(["report", str(tmp_path / "a")]) == 0
    assert (tmp_path / "compare" / "index.html").is_file()
    (tmp_path / "empty").mkdir()
    assert run(["report", str(tmp_path / "a"), str(tmp_path / "empty"), "--out", str(tmp_path / "c")]) == 2
