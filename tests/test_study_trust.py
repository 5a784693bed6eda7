"""Studies compare like with like: no hidden time cap, equal-length demo runs, theory switch, stop reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dimcollapse.cli import pipeline
from dimcollapse.errors import ConfigError
from dimcollapse.report.claims import paper_claims
from dimcollapse.study.grid import load_study, theory_options
from dimcollapse.study.results import describe_config
from dimcollapse.study.runner import StudyRun, resolve_configs, run_study
from dimcollapse.training.config import RunConfig, to_dict
from dimcollapse.training.module import NonFiniteLossError

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"


def _study_file(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "base.yaml").write_text("data: {name: synthetic}\noptim: {epochs: 1}\n")
    f = tmp_path / "study.yaml"
    f.write_text("name: t\nbase: base.yaml\nruns:\n  - {name: a}\n" + extra)
    return f


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_default_studies_have_no_time_cap(path: Path) -> None:
    """A time cap stops each run at a load-dependent step; no shipped study may have one."""
    for spec, cfg in resolve_configs(load_study(path)):
        assert cfg.optim.max_time_minutes is None, f"{path.name}: run {spec.run_id} has a time cap"


def test_demo_runs_are_of_equal_length_and_its_deferred_claims_exist() -> None:
    study = load_study(STUDIES / "demo.yaml")
    plan = resolve_configs(study)
    steps = {cfg.optim.max_steps for _, cfg in plan}
    assert len(steps) == 1 and None not in steps, "every demo run must train the same fixed step count"
    assert len({cfg.trainer.seed for _, cfg in plan}) == 1
    assert len({(cfg.data.batch_size, cfg.data.name, cfg.eval.max_train) for _, cfg in plan}) == 1
    rows = [describe_config(to_dict(cfg)) for _, cfg in plan]
    ids = {c.claim_id for c in paper_claims(rows)}
    deferred = [e["claim"] for e in study.options["longer_training"]]
    assert deferred and set(deferred) <= ids, f"unknown claim ids in longer_training: {set(deferred) - ids}"
    assert all(e["command"] and e["measured"] for e in study.options["longer_training"])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (None, None),
        (False, None),
        (True, {}),
        ({"enabled": False}, None),
        ({"enabled": False, "steps": 10}, None),
        ({"enabled": True, "steps": 10}, {"steps": 10}),
        ({"steps": 10}, {"steps": 10}),
    ],
)
def test_theory_options(option: Any, expected: Any) -> None:
    assert theory_options(option) == expected


def test_malformed_theory_entry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="theory"):
        load_study(_study_file(tmp_path, "theory: {enabled: 'no'}\n"))
    with pytest.raises(ConfigError, match="theory"):
        load_study(_study_file(tmp_path, "theory: yes please\n"))


@pytest.mark.parametrize(("entry", "runs"), [("{enabled: false}", False), ("{enabled: true}", True)])
def test_theory_enabled_false_disables_the_toy_theory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, runs: bool
) -> None:
    """Before the fix any non-empty dict (also {enabled: false}) ran `simulate all`."""
    import dimcollapse.theory.summary as summary

    calls: list[Path] = []
    monkeypatch.setattr(summary, "run_all", lambda out, **kw: calls.append(Path(out)))
    monkeypatch.setattr(pipeline, "run_study", lambda study, out, **kw: StudyRun(Path(out), []))
    study = load_study(_study_file(tmp_path, f"theory: {entry}\n"))
    pipeline.run_pipeline(study, tmp_path / "out", baselines=False, report=False)
    assert bool(calls) is runs


def test_longer_training_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="longer_training"):
        load_study(_study_file(tmp_path, "longer_training: [{claim: DC-noproj-collapse}]\n"))
    ok = "longer_training: [{claim: X, command: 'dimcollapse train a.yaml', measured: '1 vs 2'}]\n"
    assert load_study(_study_file(tmp_path, ok)).options["longer_training"][0]["claim"] == "X"


def test_results_show_steps_and_stop_reason(tmp_path: Path) -> None:
    """results.csv lists steps, epochs and the stop reason of every run, failed ones included."""

    def fake(cfg: RunConfig, out: Path, resume: bool) -> dict[str, Any]:
        if cfg.name.startswith("b"):
            raise NonFiniteLossError("the loss became non-finite at step 3")
        out.mkdir(parents=True, exist_ok=True)
        m = {"steps": 7, "epochs": 0.5, "planned_steps": 10, "stop_reason": "time cap", "erank_r": 1.0}
        (out / "metrics.json").write_text(json.dumps(m))
        return m

    f = _study_file(tmp_path, "")
    f.write_text(f.read_text() + "  - {name: b}\n")
    run_study(load_study(f), tmp_path / "out", train_fn=fake)
    header, *lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
    cols = header.split(",")
    assert cols[:11] == [
        "run_id",
        "variant",
        "status",
        "objective",
        "projector",
        "regularizers",
        "seed",
        "steps",
        "epochs",
        "planned_steps",
        "stop_reason",
    ]
    rows = {line.split(",")[0]: dict(zip(cols, line.split(","), strict=False)) for line in lines}
    assert rows["a"]["steps"] == "7" and rows["a"]["stop_reason"] == "time cap"
    assert rows["b"]["stop_reason"] == "non-finite loss"
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results[0]["dataset"] == "synthetic" and results[0]["batch_size"] == 256
