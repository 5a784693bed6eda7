"""The named paper studies (configs/papers/): every run of every study is resolved and compared field by
field with its paper's settings table (configs/papers/settings/); a field that differs must be a listed
deviation whose reason docs/reproduce.md gives. Scaled variants derive from the faithful runs by name, and
the paper's numbers travel with the runs into the paper-vs-measured table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from dimcollapse.errors import ConfigError
from dimcollapse.study.grid import load_study
from dimcollapse.study.paper import paper_rows
from dimcollapse.study.paper_settings import check_study, load_settings, match_count, same_value
from dimcollapse.study.runner import _row, resolve_configs
from dimcollapse.study.scale import global_batch, scaled_study

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "configs" / "papers"
SETTINGS = sorted((PAPERS / "settings").glob("*.yaml"))
STUDY_FILES = sorted(PAPERS.glob("*.yaml"))
PAIRS = [(s, key) for s in SETTINGS for key in yaml.safe_load(s.read_text())["studies"]]
REPRODUCE = (ROOT / "docs" / "reproduce.md").read_text()


def test_every_named_study_has_a_settings_table() -> None:
    """Each study file under configs/papers/ is checked by exactly one settings table, and vice versa."""
    covered = [key for _, key in PAIRS]
    assert sorted(covered) == sorted(p.name for p in STUDY_FILES)
    expected = {"dc_t1.yaml", "dc_t2.yaml", "ll_t1_cifar10.yaml", "ll_t1_cifar100.yaml", "ll_t2_cifar10.yaml"}
    expected |= {
        "ll_t2_cifar100.yaml",
        "ldreg_t1.yaml",
        "ldreg_t13.yaml",
        "or_imagenet.yaml",
        "or_cifar100.yaml",
    }
    assert expected <= set(covered)


@pytest.mark.parametrize("settings, key", PAIRS, ids=[f"{s.stem}:{k}" for s, k in PAIRS])
def test_every_run_matches_its_paper_field_by_field(settings: Path, key: str) -> None:
    """Every run of the study resolves; every field equals the paper's (or its authors' code's) value,
    or is a deviation listed with its reason in docs/reproduce.md; every run carries paper numbers."""
    table = load_settings(settings)
    checks = check_study(table, key)
    study = load_study(PAPERS / key)
    assert {c.run for c in checks} == {r.run_id for r in study.runs}  # no run left unchecked
    wrong = [f"{c.run}: {c.field} = {c.actual!r}, paper {c.expected!r} ({c.source})" for c in checks]
    assert not [w for w, c in zip(wrong, checks, strict=True) if c.status == "MISMATCH"]
    for c in checks:
        if c.status == "deviation":
            assert f"`{c.field}`" in REPRODUCE, f"deviation {c.field} is not listed in docs/reproduce.md"
    matched, total = match_count(checks)
    assert total >= 3 * len(study.runs) and matched > 0
    assert study.options["paper"]["metric"] and all(r.paper for r in study.runs)


def test_a_changed_setting_is_caught() -> None:
    """The check can fail: a run trained at another learning rate or batch is a MISMATCH named by field."""
    table = load_settings(PAPERS / "settings" / "directclr.yaml")
    study = load_study(PAPERS / "dc_t1.yaml")
    checks = check_study(table, "dc_t1.yaml", study, ["optim.lr=0.3", "data.batch_size=256"])
    bad = {(c.field, c.status) for c in checks if not c.matches}
    assert bad == {("optim.lr", "MISMATCH"), ("global_batch", "MISMATCH")}


def test_same_value_compares_like_a_config() -> None:
    """Numbers to 1e-9 relative, tuples like lists, booleans never equal to numbers."""
    assert same_value(3.394112549695428, 0.075 * math.sqrt(2048))
    assert same_value([0.08, 1.0], (0.08, 1.0)) and not same_value([0.08, 1.0], [0.2, 1.0])
    assert not same_value(True, 1) and not same_value(None, 0) and same_value(None, None)


def test_scaled_variant_derives_from_the_faithful_runs() -> None:
    """dc_t1 one_gpu_short: 10 epochs (warm-up 1), one device, batch 256, lr 4.8 x 256 / 4096; LDReg's
    SimCLR scales by sqrt and its regularizer warm-up shrinks with the epochs."""
    study = load_study(PAPERS / "dc_t1.yaml")
    small = scaled_study(study, "one_gpu_short")
    assert small.name == "dc_t1__one_gpu_short" and len(small.runs) == len(study.runs)
    for (_, big), (_, cfg) in zip(resolve_configs(study), resolve_configs(small), strict=True):
        assert global_batch(big) == 4096 and global_batch(cfg) == 256
        assert cfg.optim.epochs == 10 and math.isclose(cfg.optim.warmup_epochs, 1.0)
        assert math.isclose(cfg.optim.lr, 4.8 * 256 / 4096) and cfg.trainer.strategy == "auto"
        assert cfg.model == big.model and cfg.objective == big.objective  # only the named fields change
    ld = resolve_configs(scaled_study(load_study(PAPERS / "ldreg_t1.yaml"), "one_gpu_short"))
    lr = {spec.variant: cfg.optim.lr for spec, cfg in ld}
    assert math.isclose(lr["simclr"], 0.075 * math.sqrt(2048) * math.sqrt(256 / 2048))
    assert math.isclose(lr["byol"], 3.2 * 256 / 2048)  # each method its own rule (BYOL: linear)
    warm = [dict(cfg.regularizers[0].kwargs)["warmup_epochs"] for _, cfg in ld if cfg.regularizers]
    assert warm and all(math.isclose(w, 1.0) for w in warm)
    with pytest.raises(ConfigError, match="no scaled variant 'nope'"):
        scaled_study(study, "nope")


def test_paper_numbers_reach_the_result_rows() -> None:
    """Each run's paper number becomes a paper_<metric> column; the table sets ours (mean over finished
    seeds, accuracies in percent) beside it."""
    study = load_study(PAPERS / "ldreg_t1.yaml")
    plan = resolve_configs(study)
    metrics = {"simclr": 0.640, "simclr_ldreg": 0.652, "byol": 0.671, "byol_ldreg": 0.690}
    rows = [
        _row(spec, cfg, "done", {"linear_top1": metrics[spec.variant], "erank_r": 480.0})
        for spec, cfg in plan
    ]
    table = {(r.variant, r.metric): r for r in paper_rows(rows)}
    assert table[("simclr", "linear_top1")].paper == 64.3
    assert math.isclose(table[("simclr", "linear_top1")].measured or 0, 64.0)
    assert math.isclose(table[("simclr_ldreg", "linear_top1")].difference or 0, 65.2 - 64.8)
    assert (
        table[("simclr_ldreg", "erank_r")].paper == 530 and table[("simclr_ldreg", "erank_r")].measured == 480
    )
    assert ("byol", "erank_r") not in table  # the paper gives no erank for BYOL: no row is invented
    failed = [{**rows[0], "status": "failed: boom", "linear_top1": 0.9}]
    assert paper_rows(failed)[0].measured is None


pytest_plugins = ["conftest_study"]


def test_study_prints_and_reports_paper_vs_measured(tiny_study: Any, tiny_report: Path) -> None:
    """`dimcollapse study` prints the paper's number beside ours, and the report has the same table."""
    from study_helpers import flat

    text = flat(tiny_study.console)
    assert "paper vs measured (tiny paper table)" in text
    rows = json.loads((tiny_study.folder / "results.json").read_text())
    mlp = next(r for r in rows if r["variant"] == "simclr_mlp")
    ours = 100 * mlp["knn_k20_top1"]
    expect = f"simclr_mlp knn_k20_top1 50.0 {ours:.1f} {ours - 50.0:+.1f}"
    assert expect in text
    assert "simclr_none knn_k20_top1 - " in text and "simclr_so knn" not in text
    page = tiny_report.read_text()
    assert 'id="section-paper"' in page and "tiny paper table" in page and "kNN k = 20" in page
