"""The one-line verdict ("collapsing: yes/no (why)") and the N <= D warning on every surface: `analyze`
(terminal, metrics.json, the page of `analyze --model`), `dimcollapse report` (terminal lines and a
column per row, an N <= D flag on the row) and the torchmetrics-style `CollapseMetrics`."""

from __future__ import annotations

import html
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse import Tracker
from dimcollapse.analysis import analyze_embeddings
from dimcollapse.track.metrics import CollapseMetrics, ProbeSizeWarning
from study_helpers import run_cli


def _low_rank(n: int, d: int, rank: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))


def test_embedding_verdict_counts_only_what_the_rows_can_resolve() -> None:
    lost = analyze_embeddings(_low_rank(100, 16, 4), figures=False, k=5)
    assert np.linalg.matrix_rank(_low_rank(100, 16, 4)) == 4
    assert lost["collapsed_dims"] == 12
    assert lost["verdict"].startswith("collapsing: yes (12 of 16 resolvable dims carry no variance")
    full = analyze_embeddings(_low_rank(100, 16, 16), figures=False, k=5)
    assert full["verdict"].startswith("collapsing: no (all 16 resolvable dims carry variance")
    # 10 rows in 16 dims: 7 eigenvalues are zero because of the rows, not the model: no collapse, a caution
    few = analyze_embeddings(_low_rank(10, 16, 16), figures=False, k=5)
    assert few["collapsed_dims"] == 16 - 9
    assert few["verdict"].startswith("collapsing: no (all 9 resolvable dims")
    assert "caution: 10 rows <= 16 dims" in few["verdict"]
    # ... but 10 rows spanning 3 directions: 6 of the 9 the rows could show are lost
    few_low = analyze_embeddings(_low_rank(10, 16, 3), figures=False, k=5)
    assert few_low["verdict"].startswith("collapsing: yes (6 of 9 resolvable dims")
    # a LayerNorm output (rows centred over the features) always loses one direction: not collapse
    ln = _low_rank(200, 32, 32)
    ln = analyze_embeddings(ln - ln.mean(1, keepdims=True), figures=False, k=5)
    assert ln["collapsed_dims"] == 1
    assert ln["verdict"].startswith("collapsing: no (1 of 32 resolvable dims carry no variance")
    assert "under the 10% that counts as collapse" in ln["verdict"]
    one = analyze_embeddings(_low_rank(50, 8, 1), figures=False, k=5)
    assert one["verdict"].startswith("collapsing: yes (complete: the rows span ~1 direction")


def test_analyze_cli_prints_the_verdict_and_the_n_le_d_warning(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", _low_rank(12, 16, 16).astype(np.float32))
    np.save(tmp_path / "lowrank.npy", _low_rank(80, 16, 3).astype(np.float32))
    out = tmp_path / "out"
    status, text = run_cli(
        ["analyze", str(tmp_path / "wide.npy"), str(tmp_path / "lowrank.npy"), "--out", str(out),
         "--no-figures", "--k", "5"]
    )  # fmt: skip
    assert status == 0, text
    lines = text.splitlines()
    for name in ("wide", "lowrank"):
        written = json.loads((out / name / "metrics.json").read_text())
        assert f"{name}: {written['verdict']}" in lines, text  # the same line on the terminal and on disk
    assert json.loads((out / "lowrank" / "metrics.json").read_text())["verdict"].startswith("collapsing: yes")
    wide = json.loads((out / "wide" / "metrics.json").read_text())
    assert any(w.startswith("only 12 rows for 16 dimensions (N <= D)") for w in wide["warnings"])
    assert any(x.startswith("warning: wide: only 12 rows for 16 dimensions") for x in lines), text
    assert not any(x.startswith("warning: lowrank") for x in lines)


def test_analyze_model_page_shows_the_verdict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.jit.script(nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24)))
    model.save(str(tmp_path / "net.pt"))
    torch.save(torch.randn(20, 6), tmp_path / "x.pt")
    out = tmp_path / "out"
    argv = ["analyze", "--model", str(tmp_path / "net.pt"), "--data", str(tmp_path / "x.pt")]
    status, text = run_cli([*argv, "--out", str(out), "--k", "5", "--map", "none"])
    assert status == 0, text
    m = json.loads((out / "metrics.json").read_text())
    # 20 rows, 24 dims: the verdict's caution, the warning, and the N <= D flag on the page's row
    assert m["verdict"].startswith("collapsing: ") and "caution: 20 rows <= 24 dims" in m["verdict"]
    assert m["verdict"] in text.splitlines() and "warning: only 20 inputs for 24 dimensions" in text
    page = (out / "report" / "index.html").read_text()
    assert re.search(r"<td[^>]*small-probe[^>]*>20 \(N &lt;= D\)</td>", page)
    assert ">" + html.escape(m["verdict"]) + "</td>" in page


def _tracked(folder: Path) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))
    tracker = Tracker(model, torch.randn(60, 12), every=1, out_path=folder / "monitor.json", lid_k=5)
    for step in (1, 2, 3):
        tracker.step(step)
    tracker.write()
    return json.loads((folder / "monitor.json").read_text())


def test_report_rows_carry_the_verdict_and_an_n_le_d_flag(tmp_path: Path) -> None:
    analyze_embeddings(_low_rank(10, 16, 16), out=tmp_path / "small", figures=False, k=5)
    analyze_embeddings(_low_rank(80, 16, 3), out=tmp_path / "lowrank", figures=False, k=5)
    mon = _tracked(tmp_path / "tracked")
    out = tmp_path / "page"
    folders = [str(tmp_path / n) for n in ("small", "lowrank", "tracked")]
    status, text = run_cli(["report", *folders, "--out", str(out)])
    assert status == 0, text
    lines = text.splitlines()
    small = json.loads((tmp_path / "small" / "metrics.json").read_text())
    assert f"small: {small['verdict']}" in lines
    assert any(x.startswith("lowrank: collapsing: yes (13 of 16 resolvable dims") for x in lines), text
    assert f"tracked: {mon['verdict']}" in lines  # a monitor's verdict over its history, as monitor.json says
    assert [x for x in lines if x.startswith("warning:")] == [
        "warning: small: N <= D (10 rows for 16 dims): collapsed dims and the rank measures are bounded by "
        "N - 1; measure on more rows."
    ]
    page = (out / "index.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page.split('id="compare"')[1].split("</table>")[0], re.S)
    tds = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    cells = {t[0]: t for t in tds if t}
    assert cells["small"][3] == "10 (N &lt;= D)" and cells["lowrank"][3] == "80"
    assert cells["tracked"][3] == "60"  # a monitor's probe size is its N
    assert cells["lowrank"][-1].startswith("collapsing: yes") and cells["tracked"][-1] == mon["verdict"]
    assert "collapse-yes" in page


def test_collapse_metrics_warns_when_rows_le_dims() -> None:
    metric = CollapseMetrics()
    metric.update(torch.randn(10, 16))
    with pytest.warns(ProbeSizeWarning, match=r"10 rows for 16 dimensions \(N <= D\)"):
        small = metric.compute()
    assert float(small["rows_le_dims"]) == 1.0 and float(small["collapsed_dims"]) == 16 - 9
    metric.reset()
    metric.update(torch.randn(40, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeSizeWarning)
        enough = metric.compute()
    assert float(enough["rows_le_dims"]) == 0.0
