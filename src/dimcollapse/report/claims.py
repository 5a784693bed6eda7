"""The papers' claims as data, and verdicts computed from a study's results (never written by hand).

A result row is a flat dict with at least ``objective``, ``projector``, ``regularizers`` (names
joined by "+", "" for none), ``seed`` and metric columns (``erank_r``, ``knn_k200_top1``, ...).
A claim compares a metric between two groups of rows chosen by those fields. With >= 2 seeds on
both sides the verdict uses the seed spread: the difference of means must exceed ``z`` standard
errors (Welch); with one seed per side a relative margin decides and the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Any, Literal

Relation = Literal["greater", "less", "close"]
Verdict = Literal["holds", "does not hold", "inconclusive", "not covered"]


@dataclass(frozen=True)
class Claim:
    """``metric`` of group ``a`` stands in ``relation`` to group ``b`` (rows matched by field values)."""

    claim_id: str
    paper: str
    text: str
    metric: str
    a: Mapping[str, str]
    b: Mapping[str, str]
    relation: Relation = "greater"
    tolerance: float = 0.1  # "close": |a - b| <= tolerance * |b|; single seed: relative margin


@dataclass
class ClaimResult:
    """A claim with the numbers behind it and the computed verdict."""

    claim: Claim
    verdict: Verdict
    a_values: list[float]
    b_values: list[float]
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-able view."""
        return {
            "id": self.claim.claim_id,
            "paper": self.claim.paper,
            "claim": self.claim.text,
            "metric": self.claim.metric,
            "a": _fmt_group(self.claim.a),
            "b": _fmt_group(self.claim.b),
            "a_mean": _mean(self.a_values),
            "a_std": _std(self.a_values),
            "a_n": len(self.a_values),
            "b_mean": _mean(self.b_values),
            "b_std": _std(self.b_values),
            "b_n": len(self.b_values),
            "verdict": self.verdict,
            "detail": self.detail,
        }


def _fmt_group(sel: Mapping[str, str]) -> str:
    regs = sel.get("regularizers", "")
    text = f"{sel.get('objective', '*')} / projector {sel.get('projector', '*')}"
    return text + (f" + {regs}" if regs else "")


def _mean(v: list[float]) -> float | None:
    return mean(v) if v else None


def _std(v: list[float]) -> float | None:
    return stdev(v) if len(v) >= 2 else None


def _matches(row: Mapping[str, Any], sel: Mapping[str, str]) -> bool:
    return all(str(row.get(k, "")) == v for k, v in sel.items())


def _values(rows: Iterable[Mapping[str, Any]], sel: Mapping[str, str], metric: str) -> list[float]:
    out = []
    for r in rows:
        if _matches(r, sel):
            v = r.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                out.append(float(v))
    return out


def decide(
    a: list[float], b: list[float], relation: Relation, tolerance: float = 0.1, z: float = 2.0
) -> tuple[Verdict, str]:
    """Verdict for ``a relation b`` from the samples; see the module docstring for the rule."""
    if not a or not b:
        return "not covered", "the study has no runs for one of the two groups"
    ma, mb = mean(a), mean(b)
    diff = ma - mb
    scale = max(abs(mb), 1e-12)
    if len(a) >= 2 and len(b) >= 2:
        se = math.sqrt(stdev(a) ** 2 / len(a) + stdev(b) ** 2 / len(b))
        basis = f"diff {diff:+.4g}, Welch s.e. {se:.3g} over {len(a)}+{len(b)} seeds"
        if relation == "close":
            if abs(diff) <= tolerance * scale:
                return "holds", basis + f"; |diff| <= {tolerance:.0%} of b"
            if abs(diff) - z * se > tolerance * scale:
                return "does not hold", basis + f"; |diff| beyond {tolerance:.0%} of b by > {z} s.e."
            return "inconclusive", basis
        sign = 1.0 if relation == "greater" else -1.0
        if sign * diff > z * se and se >= 0:
            return ("holds" if sign * diff > 0 else "inconclusive"), basis + f" (> {z} s.e.)"
        if sign * diff < -z * se:
            return "does not hold", basis + f" (opposite by > {z} s.e.)"
        return "inconclusive", basis + f" (within {z} s.e.: seed spread too large)"
    basis = f"diff {diff:+.4g} ({diff / scale:+.1%} of b), single seed: no spread estimate"
    if relation == "close":
        return ("holds" if abs(diff) <= tolerance * scale else "does not hold"), basis
    sign = 1.0 if relation == "greater" else -1.0
    rel = sign * diff / scale
    if rel > tolerance / 2:
        return "holds", basis
    if rel < -tolerance / 2:
        return "does not hold", basis
    return "inconclusive", basis + f"; within +/-{tolerance / 2:.0%}"


def evaluate_claims(
    rows: Sequence[Mapping[str, Any]], claims: Iterable[Claim] | None = None
) -> list[ClaimResult]:
    """Evaluate ``claims`` (default: the papers' claims the rows can cover) on result rows."""
    claims = list(claims) if claims is not None else paper_claims(rows)
    results = []
    for c in claims:
        a, b = _values(rows, c.a, c.metric), _values(rows, c.b, c.metric)
        verdict, detail = decide(a, b, c.relation, c.tolerance)
        results.append(ClaimResult(c, verdict, a, b, detail))
    return results


def _present(rows: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    return {(str(r.get("objective")), str(r.get("projector")), str(r.get("regularizers", ""))) for r in rows}


def paper_claims(rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """The claims of the four papers that the combinations present in ``rows`` can test."""
    present = _present(rows)
    out: list[Claim] = []

    def g(obj: str, proj: str, regs: str = "") -> dict[str, str]:
        return {"objective": obj, "projector": proj, "regularizers": regs}

    def have(*groups: dict[str, str]) -> bool:
        return all((x["objective"], x["projector"], x["regularizers"]) in present for x in groups)

    simclr_mlp, simclr_none = g("simclr", "mlp"), g("simclr", "none")
    if have(simclr_none, simclr_mlp):
        out.append(
            Claim(
                "DC-noproj-collapse",
                "DirectCLR (Jing et al. 2022)",
                "SimCLR without projector collapses r more than with an MLP projector",
                "erank_r",
                simclr_none,
                simclr_mlp,
                "less",
            )
        )
        out.append(
            Claim(
                "DC-proj-accuracy",
                "DirectCLR (Jing et al. 2022), table 1",
                "an MLP projector gives SimCLR better kNN accuracy than no projector",
                "knn_k200_top1",
                simclr_mlp,
                simclr_none,
                "greater",
                0.02,
            )
        )
    if have(g("simclr", "linear"), simclr_none):
        out.append(
            Claim(
                "DC-linear-vs-none",
                "DirectCLR (Jing et al. 2022), table 1",
                "a linear projector gives SimCLR better kNN accuracy than no projector",
                "knn_k200_top1",
                g("simclr", "linear"),
                simclr_none,
                "greater",
                0.02,
            )
        )
    for dproj in ("none", "fixed_lowrank_diagonal"):
        direct = g("directclr", dproj)
        if have(direct, simclr_mlp):
            out.append(
                Claim(
                    "DC-directclr-erank",
                    "DirectCLR (Jing et al. 2022), section 6",
                    "DirectCLR keeps r's effective rank close to SimCLR with an MLP projector (within 25%)",
                    "erank_r",
                    direct,
                    simclr_mlp,
                    "close",
                    0.25,
                )
            )
        if have(direct, simclr_none):
            out.append(
                Claim(
                    "DC-directclr-vs-none",
                    "DirectCLR (Jing et al. 2022), table 1",
                    "DirectCLR beats SimCLR without projector in kNN accuracy",
                    "knn_k200_top1",
                    direct,
                    simclr_none,
                    "greater",
                    0.02,
                )
            )
    objectives_projs = {(o, p) for o, p, r in present if r == ""}
    for obj, proj in sorted(objectives_projs):
        base = g(obj, proj)
        for reg, paper, metric, rel, text in (
            ("so", "OR (He et al. 2024)", "erank_r", "greater", "SO raises the effective rank of r"),
            (
                "so",
                "OR (He et al. 2024)",
                "weight_erank_mean",
                "greater",
                "SO raises the effective rank of the encoder weights",
            ),
            ("so", "OR (He et al. 2024)", "knn_k200_top1", "greater", "SO improves kNN accuracy"),
            ("srip", "OR (He et al. 2024)", "erank_r", "greater", "SRIP raises the effective rank of r"),
            (
                "ldreg",
                "LDReg (Huang et al. 2024)",
                "erank_r",
                "greater",
                "LDReg raises the effective rank of r",
            ),
            (
                "ldreg",
                "LDReg (Huang et al. 2024)",
                "lid_mle_gmean_r",
                "greater",
                "LDReg raises the local intrinsic dimension of r",
            ),
            ("minlid", "LDReg (Huang et al. 2024), table 13", "erank_r", "less", "MinLID collapses r"),
            (
                "last_layer",
                "LL (last-layer regularization)",
                "tail_eig_r",
                "greater",
                "last-layer regularization raises the smallest singular values of r",
            ),
            (
                "werank",
                "LL (last-layer regularization)",
                "erank_r",
                "greater",
                "WeRank raises the effective rank of r",
            ),
        ):
            other = g(obj, proj, reg)
            if have(base, other):
                out.append(
                    Claim(
                        f"{reg}-{metric}-{obj}-{proj}",
                        paper,
                        f"{text} ({obj}, projector {proj})",
                        metric,
                        other,
                        base,
                        rel,  # type: ignore[arg-type]
                        0.02 if metric.startswith("knn") else 0.1,
                    )
                )
    for proj in sorted({p for o, p, r in present if o == "byol"}):
        if have(g("byol", proj, "so"), g("byol", proj, "whitening")):
            out.append(
                Claim(
                    f"OR-so-vs-whitening-{proj}",
                    "OR (He et al. 2024), table 2",
                    "BYOL + SO beats BYOL + feature whitening in kNN accuracy",
                    "knn_k200_top1",
                    g("byol", proj, "so"),
                    g("byol", proj, "whitening"),
                    "greater",
                    0.02,
                )
            )
    return out
