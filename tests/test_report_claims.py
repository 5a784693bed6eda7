"""Claims: like is compared with like, single seeds are labelled and judged by the measured seed spread."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dimcollapse.report.claims import comparability, decide, evaluate_claims, paper_claims
from dimcollapse.report.seed_spread import SEED_SPREAD, seed_spread, single_seed_margin


def _row(obj: str, proj: str, regs: str, seed: int, **metrics: Any) -> dict[str, Any]:
    return {"objective": obj, "projector": proj, "regularizers": regs, "seed": seed, **metrics}


def test_decide_with_seeds() -> None:
    assert decide([10.0, 10.2, 9.9], [5.0, 5.1, 4.9], "greater")[0] == "holds"
    assert decide([10.0, 10.2, 9.9], [5.0, 5.1, 4.9], "less")[0] == "does not hold"
    # overlapping noisy groups: inconclusive
    assert decide([10.0, 2.0, 6.0], [5.0, 9.0, 3.0], "greater")[0] == "inconclusive"
    assert decide([10.0, 10.1], [10.05, 10.0], "close", 0.1)[0] == "holds"


def test_single_seed_margin_is_the_measured_spread() -> None:
    """One run per side: the verdict turns exactly at z * sqrt(2) * the measured spread of the metric."""
    spread = SEED_SPREAD["knn_k200_top1"]
    margin = 2.0 * math.sqrt(2.0) * spread
    assert single_seed_margin("knn_k200_top1") == pytest.approx(margin)
    base = 0.80
    assert decide([base + 1.05 * margin], [base], "greater", spread=spread)[0] == "holds"
    assert decide([base + 0.95 * margin], [base], "greater", spread=spread)[0] == "inconclusive"
    assert decide([base - 1.05 * margin], [base], "greater", spread=spread)[0] == "does not hold"
    # a relative margin no longer decides: +10% of b is inconclusive when the spread is larger
    assert decide([11.0], [10.0], "greater", spread=0.5)[0] == "inconclusive"
    assert decide([11.0], [10.0], "greater", spread=0.3)[0] == "holds"


def test_single_seed_is_labelled_and_needs_a_measured_spread() -> None:
    verdict, detail = decide([12.0], [10.0], "greater", spread=0.1)
    assert verdict == "holds" and detail.startswith("single seed")
    # without a measured spread for the metric a single seed decides nothing, however large the gap
    verdict, detail = decide([100.0], [1.0], "greater")
    assert verdict == "inconclusive" and "single seed" in detail and "no measured" in detail
    rows = [_row("byol", "mlp", "", 0, erank_r=3.0), _row("byol", "mlp", "so", 0, erank_r=6.0)]
    res = {r.claim.claim_id: r for r in evaluate_claims(rows)}
    so = res["so-erank_r-byol-mlp"]
    assert so.seeds == "single seed" and so.as_dict()["seeds"] == "single seed"
    assert so.verdict == "holds"  # 3.0 > 2 * sqrt(2) * 0.445
    assert seed_spread("erank_r") is not None and seed_spread("no_such_metric") is None


def test_not_covered_when_group_missing() -> None:
    assert decide([], [1.0], "greater")[0] == "not covered"


def test_unequal_steps_are_not_comparable() -> None:
    """Groups that trained different numbers of steps get 'not comparable' and the reason, whatever
    the numbers say (here a huge difference with 3 seeds a side)."""
    rows = [_row("byol", "mlp", "", s, erank_r=3.0 + 0.01 * s, steps=150) for s in range(3)]
    rows += [_row("byol", "mlp", "so", s, erank_r=9.0 + 0.01 * s, steps=84 + s) for s in range(3)]
    res = {r.claim.claim_id: r for r in evaluate_claims(rows)}["so-erank_r-byol-mlp"]
    assert res.verdict == "not comparable"
    assert "steps differs" in res.detail and "150" in res.detail and "84" in res.detail
    # the same rows with equal steps do compare
    for r in rows:
        r["steps"] = 150
    res = {r.claim.claim_id: r for r in evaluate_claims(rows)}["so-erank_r-byol-mlp"]
    assert res.verdict == "holds"


@pytest.mark.parametrize(
    ("key", "a", "b"),
    [
        ("eval_train_size", 10000, 20000),
        ("eval_knn_temperature", 0.07, 0.1),
        ("dataset", "fashion_mnist", "cifar10"),
        ("batch_size", 256, 128),
        ("planned_steps", 500, 1000),
    ],
)
def test_differing_data_or_eval_settings_are_not_comparable(key: str, a: Any, b: Any) -> None:
    rows_a = [_row("simclr", "mlp", "so", 0, knn_k200_top1=0.9, steps=100, **{key: a})]
    rows_b = [_row("simclr", "mlp", "", 0, knn_k200_top1=0.5, steps=100, **{key: b})]
    why = comparability(rows_a, rows_b, "knn_k200_top1")
    assert why is not None and key in why
    res = {r.claim.claim_id: r for r in evaluate_claims(rows_a + rows_b)}["so-knn_k200_top1-simclr-mlp"]
    assert res.verdict == "not comparable"


def test_setting_recorded_on_one_side_only_is_not_comparable() -> None:
    a = [_row("simclr", "mlp", "", 0, steps=100)]
    b = [_row("simclr", "none", "", 0)]
    assert comparability(a, b) is not None
    assert comparability([_row("simclr", "mlp", "", 0)], b) is None  # recorded nowhere: not checked


def test_linear_probe_epochs_only_matter_for_linear_metrics() -> None:
    a = [_row("simclr", "mlp", "", 0, steps=100, eval_linear_probe_epochs=30)]
    b = [_row("simclr", "none", "", 0, steps=100, eval_linear_probe_epochs=100)]
    assert comparability(a, b, "knn_k200_top1") is None
    why = comparability(a, b, "linear_top1")
    assert why is not None and "eval_linear_probe_epochs" in why


def test_deferred_claims_get_no_verdict() -> None:
    rows = [_row("simclr", "mlp", "", 0, erank_r=20.0), _row("simclr", "none", "", 0, erank_r=50.0)]
    later = {"DC-noproj-collapse": {"command": "dimcollapse train X", "measured": "53.7 vs 24.5"}}
    res = {r.claim.claim_id: r for r in evaluate_claims(rows, deferred=later)}
    assert res["DC-noproj-collapse"].verdict == "needs longer training"
    assert "53.7 vs 24.5" in res["DC-noproj-collapse"].detail
    assert "dimcollapse train X" in res["DC-noproj-collapse"].detail
    assert res["DC-proj-accuracy"].verdict != "needs longer training"


def test_paper_claims_only_for_present_groups() -> None:
    rows = [
        _row("simclr", "mlp", "", s, erank_r=40.0 + s, knn_k200_top1=0.80 + 0.001 * s) for s in range(3)
    ] + [_row("simclr", "none", "", s, erank_r=10.0 + s, knn_k200_top1=0.70 + 0.001 * s) for s in range(3)]
    ids = {c.claim_id for c in paper_claims(rows)}
    assert "DC-noproj-collapse" in ids and "DC-proj-accuracy" in ids
    assert not any(i.startswith("so-") for i in ids)
    results = {r.claim.claim_id: r for r in evaluate_claims(rows)}
    assert results["DC-noproj-collapse"].verdict == "holds"
    d = results["DC-noproj-collapse"].as_dict()
    assert d["a_n"] == 3 and abs(d["a_mean"] - 11.0) < 1e-9 and d["seeds"] == "3 + 3 seeds"


def test_regularizer_claims_per_objective() -> None:
    rows = [_row("byol", "mlp", "", 0, erank_r=20.0), _row("byol", "mlp", "minlid", 0, erank_r=2.0)]
    res = evaluate_claims(rows)
    minlid = [r for r in res if r.claim.claim_id.startswith("minlid-erank_r")]
    assert len(minlid) == 1 and minlid[0].verdict == "holds"


def test_runs_of_one_regularizer_at_several_coefficients_are_not_pooled_as_seeds() -> None:
    """The OR study runs SO at 1e-5, 1e-6 and 1e-7: three methods, not three seeds of one."""
    from dimcollapse.study.results import describe_config

    def cfg(weight: float, seed: int) -> dict[str, Any]:
        reg = [{"name": "so", "kwargs": {"weight": weight}}]
        return {"objective": {"name": "simclr"}, "regularizers": reg, "trainer": {"seed": seed}}

    rows = [{**describe_config(cfg(w, 0)), "erank_r": 10.0} for w in (1e-5, 1e-6, 1e-7)]
    assert rows[0]["regularizer_weights"] == "so=1e-05" and rows[0]["regularizers"] == "so"
    base = [{**describe_config({"objective": {"name": "simclr"}, "trainer": {"seed": 0}}), "erank_r": 9.0}]
    why = comparability(rows, base, "erank_r")
    assert why is not None and "group a mixes regularizer_weights" in why
    assert comparability(rows[:1], base, "erank_r") is None  # one coefficient against none: comparable
