"""The monitor's scalars and spectra reach W&B (offline mode, read back from the run's files) and MLflow
(a local file store, read back through its client), next to CSV, through ``trainer.loggers`` names."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dimcollapse import CollapseMonitor
from dimcollapse.errors import ConfigError
from dimcollapse.training.loggers import build_loggers

pytest.importorskip("wandb")
pytest.importorskip("mlflow")


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: object, idx: int) -> torch.Tensor:
        (x,) = batch  # type: ignore[misc]
        return self(x).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_monitor_values_reach_wandb_offline_and_mlflow_file_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    (tmp_path / "wandb").mkdir()
    loggers = build_loggers(["csv", "wandb", "mlflow"], tmp_path, "tiny")
    torch.manual_seed(0)
    monitor = CollapseMonitor(torch.randn(40, 6), every_n_steps=2, lid_k=5)
    trainer = L.Trainer(
        max_steps=4,
        logger=loggers,
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
    )
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(64, 6)), batch_size=16))
    import wandb

    wandb.finish()
    final = monitor.history[-1]
    # MLflow: every measurement's erank as a metric history, the spectra as JSON artifacts
    from mlflow.tracking import MlflowClient

    mlf = loggers[2]
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    hist = client.get_metric_history(mlf.run_id, "monitor/erank_z")  # type: ignore[attr-defined]
    assert [m.step for m in hist] == [h["step"] for h in monitor.history]
    assert hist[-1].value == pytest.approx(final["erank_z"], rel=1e-6)
    local = Path(client.download_artifacts(mlf.run_id, "monitor"))  # type: ignore[attr-defined]
    spectra = json.loads((local / f"spectra_step{final['step']:08d}.json").read_text())
    assert spectra["monitor/spectrum_z"] == pytest.approx(final["spectrum_z"])
    # W&B offline: the run file holds each history item as protobuf (key, value_json) fields
    # wandb's writer is a separate service process: its file can lag finish() by a moment, so read it
    # until the history items are there (bounded; a value that never arrives still fails below)
    want = len(monitor.history)
    deadline = time.monotonic() + 60
    while True:
        raw = b"".join(p.read_bytes() for p in (tmp_path / "wandb").rglob("run-*.wandb"))
        values = _wandb_values(raw, "monitor/erank_z")  # history items (and the run summary's copies)
        if len(set(values)) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(set(values)) == pytest.approx(sorted(h["erank_z"] for h in monitor.history), rel=1e-9)
    assert all(v["_type"] == "histogram" for v in _wandb_values(raw, "monitor/spectrum_z"))


def _wandb_values(raw: bytes, key: str) -> list:  # type: ignore[type-arg]
    """The JSON values logged under ``key``: field 2 (key) then field 16 (value_json) of a history item."""
    tag = b"\x12" + bytes([len(key)]) + key.encode() + b"\x82\x01"
    out, i = [], raw.find(tag)
    while i >= 0:
        j = i + len(tag)
        n, shift, length = 0, 0, 0
        while True:  # a protobuf varint: the value's length
            byte = raw[j + n]
            length |= (byte & 0x7F) << shift
            n, shift = n + 1, shift + 7
            if byte < 0x80:
                break
        out.append(json.loads(raw[j + n : j + n + length]))
        i = raw.find(tag, j + n + length)
    return out


def test_unknown_or_missing_logger_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown logger.*valid: csv, tensorboard, wandb, mlflow"):
        build_loggers(["csv", "neptune"], tmp_path, "x")
