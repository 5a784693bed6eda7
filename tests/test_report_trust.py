"""The report shows what each run trained, its monitor warnings, the random level of alignment and the
layers whose rank is limited by construction (checked against the runs' own files)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dimcollapse.report.build import build_report
from dimcollapse.report.sections import monitor_warnings
from study_helpers import RUN_IDS, TinyStudy, copy_study
from test_report_build import parse_page, table_dicts

pytest_plugins = ["conftest_study"]


def _metrics(study: TinyStudy, run_id: str) -> dict[str, object]:
    return dict(json.loads((study.folder / "runs" / run_id / "metrics.json").read_text()))


def test_runs_table_shows_steps_epochs_and_stop_reason(tiny_study: TinyStudy, tiny_report: Path) -> None:
    runs = {r["run"]: r for r in table_dicts(parse_page(tiny_report).tables["runs"])}
    assert set(runs) == set(RUN_IDS)
    for rid in RUN_IDS:
        m = _metrics(tiny_study, rid)
        assert runs[rid]["steps"] == str(m["steps"]) and runs[rid]["planned"] == str(m["planned_steps"])
        assert m["stop_reason"] == "completed" and m["stopped_early"] is False
        assert runs[rid]["stopped"] == "completed"
    accuracy = {r["variant"]: r for r in table_dicts(parse_page(tiny_report).tables["accuracy"])}
    assert all(accuracy[rid]["steps"] == str(_metrics(tiny_study, rid)["steps"]) for rid in RUN_IDS)


def test_monitor_warnings_and_deferred_claims_in_the_report(tiny_study: TinyStudy, tmp_path: Path) -> None:
    """A run whose monitor warned gets its warnings in the runs table (the others say 'none'); a claim
    the study lists under longer_training is shown with its command and measured result, no verdict."""
    study = copy_study(tiny_study, tmp_path / "s")
    spec = (study / "study.yaml").read_text()
    (study / "study.yaml").write_text(
        spec + "longer_training:\n  - {claim: DC-noproj-collapse, command: 'dimcollapse train long.yaml', "
        "measured: 'erank 53.7 vs 24.5 at 2,311 steps'}\n"
    )
    mon_path = study / "runs" / "simclr_so" / "monitor.json"
    mon = json.loads(mon_path.read_text())
    history = [
        {**mon["history"][0], "step": 1, "erank_r": 10.0, "warning": False},
        {**mon["history"][0], "step": 2, "erank_r": 12.0, "warning": False},
        {**mon["history"][0], "step": 3, "erank_r": 4.0, "warning": True},
    ]
    mon_path.write_text(json.dumps({**mon, "warn_fraction": 0.5, "history": history}))
    assert monitor_warnings(study / "runs" / "simclr_so") == ["step 3: erank r 4 < 0.5 × best 12"]
    page = build_report(study, map_method="pca")
    runs = {r["run"]: r for r in table_dicts(parse_page(page).tables["runs"])}
    assert runs["simclr_so"]["monitor warnings"] == "step 3: erank r 4 < 0.5 × best 12"
    longer = table_dicts(parse_page(page).tables["claims-longer"])
    assert [r["measured"] for r in longer] == ["erank 53.7 vs 24.5 at 2,311 steps"]
    assert longer[0]["command"] == "dimcollapse train long.yaml"
    computed = table_dicts(parse_page(page).tables["claims"])
    assert longer[0]["claim"] not in {c["claim"] for c in computed}
    for rid in ("simclr_mlp", "simclr_none"):
        flagged = [h for h in json.loads((study / "runs" / rid / "monitor.json").read_text())["history"]]
        if not any(h.get("warning") for h in flagged):
            assert runs[rid]["monitor warnings"] == "none"


def test_alignment_is_drawn_against_random_bases(tiny_study: TinyStudy, tiny_report: Path) -> None:
    page = parse_page(tiny_report)
    assert any(a.get("id") == "fig-alignment_vs_random" for _, a in page.tags)
    text = tiny_report.read_text(encoding="utf-8")
    assert "random orthonormal bases of the same sizes" in text
    for rid in RUN_IDS:
        art = json.loads((tiny_study.folder / "runs" / rid / "artifacts.json").read_text())
        low, mean, high = (art[f"alignment_random_{k}"] for k in ("low", "mean", "high"))
        assert 0 < low <= mean <= high < 1
        assert f"{mean:.2f} (5-95% {low:.2f}-{high:.2f})" in text


def _limited_backbone_layers(run_dir: Path) -> set[str]:
    """Backbone weights with in * k * k < out, read from the checkpoint's state dict (no library code)."""
    state = torch.load(run_dir / "checkpoints" / "final.ckpt", map_location="cpu", weights_only=False)
    out = set()
    for key, w in state["state_dict"].items():
        if key.startswith("model.backbone.") and key.endswith(".weight") and w.ndim >= 2:
            fan_in = int(torch.tensor(w.shape[1:]).prod())
            if fan_in < w.shape[0]:
                out.add(key[len("model.") : -len(".weight")])
    return out


def test_rank_limited_layers_are_marked(tiny_study: TinyStudy, tiny_report: Path) -> None:
    expected = _limited_backbone_layers(tiny_study.folder / "runs" / "simclr_mlp")
    assert expected, "the tiny ResNet's strided 1x1 shortcuts (8 -> 16 channels) are rank-limited"
    table = table_dicts(parse_page(tiny_report).tables["rank-limited"])
    weights = {r["layer"]: r for r in table if r["weight / feature"] == "weight"}
    assert set(weights) == expected
    for r in weights.values():
        assert int(r["max rank"]) < int(r["width"]) and "not collapse" in r["note"]
    assert "rank-limited by construction" in tiny_report.read_text(encoding="utf-8")


def test_accuracy_table_shows_knn_gain_over_baselines(tiny_study: TinyStudy, tiny_report: Path) -> None:
    base = {b["variant"]: b for b in json.loads((tiny_study.folder / "baselines.json").read_text())["rows"]}
    table = {r["variant"]: r for r in table_dicts(parse_page(tiny_report).tables["accuracy"])}
    for rid in RUN_IDS:
        knn = float(_metrics(tiny_study, rid)["knn_k200_top1"])  # type: ignore[arg-type]
        for col, name in (
            ("kNN k=200 vs raw pixels", "raw pixels"),
            ("kNN k=200 vs random init", "random init"),
        ):
            assert table[rid][col] == f"{100 * (knn - base[name]['knn_k200_top1']):+.1f}"
    assert table["raw pixels"]["kNN k=200 vs raw pixels"] == ""
