"""Claims: verdicts follow the seed spread, and only covered claims are generated."""

from __future__ import annotations

from dimcollapse.report.claims import decide, evaluate_claims, paper_claims


def _row(obj: str, proj: str, regs: str, seed: int, **metrics: float) -> dict[str, object]:
    return {"objective": obj, "projector": proj, "regularizers": regs, "seed": seed, **metrics}


def test_decide_with_seeds() -> None:
    assert decide([10.0, 10.2, 9.9], [5.0, 5.1, 4.9], "greater")[0] == "holds"
    assert decide([10.0, 10.2, 9.9], [5.0, 5.1, 4.9], "less")[0] == "does not hold"
    # overlapping noisy groups: inconclusive
    assert decide([10.0, 2.0, 6.0], [5.0, 9.0, 3.0], "greater")[0] == "inconclusive"
    assert decide([10.0, 10.1], [10.05, 10.0], "close", 0.1)[0] == "holds"


def test_decide_single_seed_uses_margin() -> None:
    assert decide([12.0], [10.0], "greater", 0.1)[0] == "holds"
    assert decide([10.2], [10.0], "greater", 0.1)[0] == "inconclusive"
    assert decide([8.0], [10.0], "greater", 0.1)[0] == "does not hold"
    assert "single seed" in decide([8.0], [10.0], "greater")[1]


def test_not_covered_when_group_missing() -> None:
    assert decide([], [1.0], "greater")[0] == "not covered"


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
    assert d["a_n"] == 3 and abs(d["a_mean"] - 11.0) < 1e-9


def test_regularizer_claims_per_objective() -> None:
    rows = [_row("byol", "mlp", "", 0, erank_r=20.0), _row("byol", "mlp", "minlid", 0, erank_r=2.0)]
    res = evaluate_claims(rows)
    minlid = [r for r in res if r.claim.claim_id.startswith("minlid-erank_r")]
    assert len(minlid) == 1 and minlid[0].verdict == "holds"
