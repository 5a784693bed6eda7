"""Adding a metric is one spec in the catalogue: a new one shows up everywhere metrics are shown.

The spec below is registered only for these tests (monkeypatch): if any table, curve, record or CLI
output kept its own list of metrics, the new metric would be missing there and a test here fails.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from dimcollapse.diagnostics import catalogue
from dimcollapse.diagnostics.catalogue import MetricSpec

FAKE = MetricSpec(
    "top_share",
    lambda c: float(c.eig[0] / c.eig.sum()),
    "largest eigenvalue share",
    "{:.3f}",
    False,
    headline=True,
    short="top share",
    abbrev="top%",
    run=("r", "z"),
    curve=True,
    monitor=True,
)


@pytest.fixture
def fake_metric(monkeypatch: pytest.MonkeyPatch) -> MetricSpec:
    monkeypatch.setattr(catalogue, "METRICS", [*catalogue.METRICS, FAKE])
    monkeypatch.setitem(catalogue.BY_KEY, FAKE.key, FAKE)
    return FAKE


def top_share(z: np.ndarray) -> float:
    """lambda_1 / sum lambda of the centred covariance, by numpy (the reference)."""
    eig = np.linalg.eigvalsh(np.cov(np.asarray(z, dtype=np.float64).T, bias=True))
    return float(eig.max() / np.clip(eig, 0, None).sum())


def _embeddings(n: int = 80, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.array([4.0, 2.0, 1.0, 0.5, 0.5, 0.1])


def test_summarize_compute_metrics_and_the_stateful_metric_compute_it(fake_metric: MetricSpec) -> None:
    from dimcollapse.analysis.analyze import Options, compute_metrics
    from dimcollapse.diagnostics import summarize
    from dimcollapse.track.metrics import CollapseMetrics

    z = _embeddings()
    expected = top_share(z)
    assert summarize(torch.from_numpy(z), k=5)["top_share"] == pytest.approx(expected, rel=1e-9)
    metrics, _ = compute_metrics(z, Options(k=5))
    assert metrics["top_share"] == pytest.approx(expected, rel=1e-9)
    streamed = CollapseMetrics(k=5)
    streamed.update(torch.from_numpy(z[:40]))
    streamed.update(torch.from_numpy(z[40:]))
    assert float(streamed.compute()["top_share"]) == pytest.approx(expected, rel=1e-6)


def test_the_monitor_records_it_by_default(fake_metric: MetricSpec) -> None:
    from dimcollapse.track.tracker import Tracker

    model = nn.Linear(6, 4).double()
    probe = torch.from_numpy(_embeddings(seed=1))
    rec = Tracker(model, probe, every=1, lid_k=5, weight_spectra=False).step(1)
    assert rec is not None
    with torch.no_grad():
        assert rec["top_share_z"] == pytest.approx(top_share(model(probe).numpy()), rel=1e-9)


def _render(table: Any) -> str:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_cli_tables_show_it(fake_metric: MetricSpec) -> None:
    from dimcollapse.cli.analyze import compare_table, metric_rows, metrics_table
    from dimcollapse.cli.train import summary_keys

    m = {"name": "run", "n": 80, "d": 6, "lid_k": 5, "top_share": 0.61234}
    assert ("top_share", "largest eigenvalue share", "{:.3f}") in metric_rows()
    assert "largest eigenvalue share" in _render(metrics_table(m, None))
    shown = _render(compare_table([m]))
    assert "top%" in shown and "0.612" in shown and "0.61234" not in shown
    assert {"top_share_r", "top_share_z"} <= set(summary_keys())


def test_the_report_table_and_the_training_curves_show_it(fake_metric: MetricSpec) -> None:
    from dimcollapse.report.build import summary_table, table_metrics
    from dimcollapse.report.study_figures import curve_value, training_curves

    columns = table_metrics()
    assert ("top_share_r", "top share r") in columns and ("top_share_z", "top share z") in columns
    rows = [{"run_id": f"a{v}", "variant": "a", "status": "done", "top_share_r": v} for v in (0.5, 0.7)]
    assert summary_table(rows, [])[0]["top_share_r"] == "0.6 ± 0.14"
    # a record without the value: computed from the recorded spectrum (here lambda = 3, 1 -> 0.75)
    history = [{"step": 1, "top_share_r": 0.5}, {"step": 2, "spectrum_r": [3.0, 1.0]}]
    assert [curve_value(h, FAKE) for h in history] == [0.5, 0.75]
    fig = training_curves({"run": history})
    axes = {ax.get_title(): ax for ax in fig.axes}
    line = axes["largest eigenvalue share of r"].get_lines()[0]
    assert list(line.get_ydata()) == [0.5, 0.75]
