"""Study runner: each run trains once; reruns skip finished runs, resume killed ones, keep failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.study.grid import load_study
from dimcollapse.study.runner import run_study
from dimcollapse.training.config import RunConfig


def _study(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "base.yaml").write_text("data: {name: synthetic}\noptim: {epochs: 1}\n")
    f = tmp_path / "study.yaml"
    f.write_text(
        "name: t\nbase: base.yaml\n"
        "runs:\n  - {name: mlp, set: {model.projector: mlp}}\n"
        "  - {name: none, set: {model.projector: none}}\n"
        "grid: {trainer.seed: [0, 1]}\n" + extra
    )
    return f


class FakeTrain:
    """Writes what a real run writes (checkpoint, then metrics.json); can die mid-run."""

    def __init__(self, die_on: str | None = None, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.die_on, self.fail_on = die_on, fail_on

    def __call__(self, cfg: RunConfig, out: Path, resume: bool) -> dict[str, Any]:
        self.calls.append((cfg.name, resume))
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "last.ckpt").write_text("ckpt")
        if cfg.name == self.die_on:
            raise KeyboardInterrupt  # the study is killed during this run
        if cfg.name == self.fail_on:
            raise InputError("loss became NaN at step 3")
        m = {"erank_r": 10.0 + cfg.trainer.seed, "knn_k200_top1": 0.5, "projector_seen": cfg.model.projector}
        (out / "metrics.json").write_text(json.dumps(m))
        return m


def test_runs_skip_and_resume(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path))
    out = tmp_path / "out"
    fake = FakeTrain(die_on="none__seed-0")
    with pytest.raises(KeyboardInterrupt):
        run_study(study, out, train_fn=fake)
    assert fake.calls == [("mlp__seed-0", False), ("mlp__seed-1", False), ("none__seed-0", False)]
    partial = json.loads((out / "results.json").read_text())
    assert [r["run_id"] for r in partial] == ["mlp__seed-0", "mlp__seed-1"]

    fake2 = FakeTrain()
    res = run_study(study, out, train_fn=fake2)
    assert fake2.calls == [("none__seed-0", True), ("none__seed-1", False)]
    assert res.skipped == ["mlp__seed-0", "mlp__seed-1"] and res.resumed == ["none__seed-0"]
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4 and {r["projector"] for r in rows} == {"mlp", "none"}
    assert all(r["projector"] == r["projector_seen"] for r in rows)
    assert (out / "results.csv").read_text().splitlines()[0].startswith("run_id,variant,status")

    fake3 = FakeTrain()
    run_study(study, out, train_fn=fake3)
    assert fake3.calls == []


def test_failed_run_is_recorded_and_others_continue(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path))
    res = run_study(study, tmp_path / "o", train_fn=FakeTrain(fail_on="mlp__seed-1"))
    assert list(res.failed) == ["mlp__seed-1"] and "NaN" in res.failed["mlp__seed-1"]
    assert len(res.rows) == 4
    with pytest.raises(InputError):
        run_study(study, tmp_path / "o2", train_fn=FakeTrain(fail_on="mlp__seed-0"), fail_fast=True)


def test_bad_override_fails_before_training(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, "set: {optim.no_such_key: 1}\n"))
    fake = FakeTrain()
    with pytest.raises(ConfigError, match="no_such_key"):
        run_study(study, tmp_path / "o", train_fn=fake)
    assert fake.calls == []
