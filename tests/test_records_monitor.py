"""The monitor record: a Tracker's records are plain JSON objects (monitor.json holds them unchanged) and
the typed reads (step, layers, spectra, logger scalars) agree with what was measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.diagnostics import covariance_spectrum
from dimcollapse.records.monitor import layers_json, record_layers, record_spectra, record_step
from dimcollapse.track import Tracker
from dimcollapse.track.recorder import scalar_items


def test_tracker_records_read_back_typed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))
    probe = torch.randn(40, 12)
    tracker = Tracker(model, probe, every=1, lid_k=5, out_path=tmp_path / "monitor.json")
    rec = tracker.step(1)
    assert rec is not None and record_step(rec) == 1
    spectra = record_spectra(rec)
    assert list(spectra) == ["spectrum_z"]  # a plain model's output is z
    with torch.no_grad():
        z = model(probe)
    expected = covariance_spectrum(z)
    got = np.asarray(spectra["spectrum_z"])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * expected[0])
    layers = record_layers(rec)
    assert set(layers) == {"0", "2"} and all("erank" in s for s in layers.values())
    scalars = scalar_items(rec)
    assert scalars["monitor/layer_erank/0"] == layers["0"]["erank"]
    assert "monitor/step" not in scalars and all(isinstance(v, float) for v in scalars.values())
    tracker.close()
    saved = json.loads((tmp_path / "monitor.json").read_text())["history"]
    assert saved == json.loads(json.dumps(tracker.history))  # plain JSON objects, written as they are


def test_layers_json_and_bad_records() -> None:
    view = {"a": {"erank": 2.5, "sigma_max": 1.0}}
    assert layers_json(view) == view and record_layers({"layers": layers_json(view)}) == view
    assert record_layers({"step": 1}) == {} and record_layers({"layers": [1, 2]}) == {}
    with pytest.raises(TypeError, match="step"):
        record_step({"step": "one"})
