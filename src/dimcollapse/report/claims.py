"""The papers' claims as data, and verdicts computed from a study's results (never written by hand).

A result row is a flat dict with at least ``objective``, ``projector``, ``regularizers`` (names
joined by "+", "" for none), ``seed`` and metric columns (``erank_r``, ``knn_k200_top1``, ...).
A claim compares a metric between two groups of rows chosen by those fields.

1. Like with like: when the runs of the two groups differ in what they trained (steps, planned steps,
   batch size, dataset, image size) or in how they were evaluated (``COMPARE_KEYS``), the verdict is
   "not comparable" and says which setting differs; so is a group that mixes runs of different
   regularizer coefficients (``GROUP_KEYS``), which are different methods, not seeds.
2. With >= 2 seeds on both sides the difference of means must exceed ``z`` Welch standard errors.
3. With one seed on a side the verdict is labelled "single seed" and the difference must exceed ``z``
   standard errors computed from the seed-to-seed spread the project measured for that metric
   (report/seed_spread.py); a metric without a measured spread gives "inconclusive".
4. Claims a study lists under ``longer_training`` (too short to test them) get "needs longer training"
   with the command and measured result of the longer study, and no verdict from these runs.

The papers' claims are data (``claim_table.py:CLAIM_TABLE``, bound by ``paper_claims``); the claim type is
``claim.py:Claim``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Literal, TypedDict

from dimcollapse.records.accuracy import settings_keys
from dimcollapse.records.row import Row, as_finite, finite
from dimcollapse.records.schema import JsonValue
from dimcollapse.report.claim import Claim, Relation
from dimcollapse.report.claim_table import paper_claims
from dimcollapse.report.seed_spread import SOURCE, seed_spread

Verdict = Literal[
    "holds", "does not hold", "inconclusive", "not covered", "not comparable", "needs longer training"
]

# settings that must be equal in every run of both groups (a key no row records is not checked)
TRAINING_KEYS = ("steps", "planned_steps", "batch_size", "dataset", "image_size")
EVAL_KEYS = ("eval_dataset", "eval_train_size", "eval_test_size", "eval_knn_temperature")
COMPARE_KEYS = TRAINING_KEYS + EVAL_KEYS
# settings that must be equal within each group (they differ between groups by design): runs of one
# regularizer at several coefficients are different methods, never seeds to pool
GROUP_KEYS = ("regularizer_weights",)


@dataclass
class ClaimResult:
    """A claim with the numbers behind it and the computed verdict."""

    claim: Claim
    verdict: Verdict
    a_values: list[float]
    b_values: list[float]
    detail: str

    @property
    def seeds(self) -> str:
        """'single seed' when a group has one run, else 'n_a + n_b seeds' ('' when a group is empty)."""
        na, nb = len(self.a_values), len(self.b_values)
        if not na or not nb:
            return ""
        return "single seed" if min(na, nb) < 2 else f"{na} + {nb} seeds"

    def as_dict(self) -> ClaimRow:
        """Flat JSON-able view (a row of report.json's ``claims``)."""
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
            "seeds": self.seeds,
            "verdict": self.verdict,
            "detail": self.detail,
        }


class ClaimRow(TypedDict):
    """A computed claim as report.json writes it and the claims table reads it."""

    id: str
    paper: str
    claim: str
    metric: str
    a: str
    b: str
    a_mean: float | None
    a_std: float | None
    a_n: int
    b_mean: float | None
    b_std: float | None
    b_n: int
    seeds: str
    verdict: Verdict
    detail: str


def _fmt_group(sel: Mapping[str, str]) -> str:
    regs = sel.get("regularizers", "")
    text = f"{sel.get('objective', '*')} / projector {sel.get('projector', '*')}"
    return text + (f" + {regs}" if regs else "")


def _mean(v: list[float]) -> float | None:
    return mean(v) if v else None


def _std(v: list[float]) -> float | None:
    return stdev(v) if len(v) >= 2 else None


def _matches(row: Row, sel: Mapping[str, str]) -> bool:
    return all(str(row.get(k, "")) == v for k, v in sel.items())


def _rows(rows: Iterable[Row], sel: Mapping[str, str], metric: str) -> list[Row]:
    """The rows of group ``sel`` that have a finite value of ``metric``."""
    return [r for r in rows if _matches(r, sel) and finite(r, metric) is not None]


def _values(rows: Iterable[Row], metric: str) -> list[float]:
    """The finite values of ``metric`` in ``rows``."""
    return [v for r in rows if (v := finite(r, metric)) is not None]


def _setting(v: JsonValue) -> str:
    if v is None or v == "":
        return "not recorded"
    number = as_finite(v)
    return f"{number:g}" if number is not None else str(v)


def comparability(a_rows: Sequence[Row], b_rows: Sequence[Row], metric: str = "") -> str | None:
    """Why runs ``a_rows`` and ``b_rows`` do not compare (the settings that differ), or None if they do.

    Each key of ``COMPARE_KEYS`` (+ the accuracy kind's settings for an accuracy metric, e.g. the probe's
    epochs: ``records.accuracy.settings_keys``) must have one value over all
    runs of both groups; a key that no run records is skipped, one recorded by some runs only differs.
    """
    keys = COMPARE_KEYS + tuple(k for k in settings_keys(metric) if k not in COMPARE_KEYS)
    reasons = []
    for key in keys:
        values = [r.get(key) for r in (*a_rows, *b_rows)]
        if all(v is None or v == "" for v in values):
            continue
        if len({_setting(v) for v in values}) > 1:
            side_a = ", ".join(sorted({_setting(r.get(key)) for r in a_rows}))
            side_b = ", ".join(sorted({_setting(r.get(key)) for r in b_rows}))
            reasons.append(f"{key} differs (a: {side_a}; b: {side_b})")
    for key in GROUP_KEYS:
        for side, rows in (("a", a_rows), ("b", b_rows)):
            mixed = {_setting(r.get(key)) for r in rows if r.get(key) not in (None, "")}
            if len(mixed) > 1:
                reasons.append(f"group {side} mixes {key} {', '.join(sorted(mixed))} (select one)")
    return "; ".join(reasons) or None


def decide(
    a: list[float],
    b: list[float],
    relation: Relation,
    tolerance: float = 0.1,
    z: float = 2.0,
    spread: float | None = None,
) -> tuple[Verdict, str]:
    """Verdict for ``a relation b`` from the samples (see the module docstring).

    ``spread`` is the measured seed-to-seed standard deviation of the metric, used when a side has a single
    run: s.e. = spread * sqrt(1/n_a + 1/n_b).
    """
    if not a or not b:
        return "not covered", "the study has no runs for one of the two groups"
    ma, mb = mean(a), mean(b)
    diff = ma - mb
    if len(a) >= 2 and len(b) >= 2:
        se = math.sqrt(stdev(a) ** 2 / len(a) + stdev(b) ** 2 / len(b))
        basis = f"diff {diff:+.4g}, Welch s.e. {se:.3g} over {len(a)}+{len(b)} seeds"
    elif spread is None:
        return "inconclusive", (
            f"single seed: diff {diff:+.4g}, and no measured seed-to-seed spread for this metric to "
            "judge it by; run >= 2 seeds per group (grid: {trainer.seed: [0, 1, 2]})"
        )
    else:
        se = spread * math.sqrt(1 / len(a) + 1 / len(b))
        basis = (
            f"single seed: diff {diff:+.4g}, s.e. {se:.3g} from the measured seed spread "
            f"{spread:.3g} ({SOURCE})"
        )
    return _verdict(diff, se, mb, relation, tolerance, z, basis)


def _verdict(
    diff: float, se: float, mb: float, relation: Relation, tolerance: float, z: float, basis: str
) -> tuple[Verdict, str]:
    if relation == "close":
        bound = tolerance * max(abs(mb), 1e-12)
        if abs(diff) <= bound:
            return "holds", basis + f"; |diff| <= {tolerance:.0%} of b"
        if abs(diff) - z * se > bound:
            return "does not hold", basis + f"; |diff| beyond {tolerance:.0%} of b by > {z:g} s.e."
        return "inconclusive", basis + f"; |diff| beyond {tolerance:.0%} of b by < {z:g} s.e."
    sign = 1.0 if relation == "greater" else -1.0
    if sign * diff > z * se:
        return "holds", basis + f" (> {z:g} s.e.)"
    if sign * diff < -z * se:
        return "does not hold", basis + f" (opposite by > {z:g} s.e.)"
    return "inconclusive", basis + f" (within {z:g} s.e.: seed spread too large)"


def evaluate_claims(
    rows: Sequence[Row],
    claims: Iterable[Claim] | None = None,
    deferred: Mapping[str, Mapping[str, str]] | None = None,
) -> list[ClaimResult]:
    """Evaluate ``claims`` (default: the papers' claims the rows can cover) on result rows.

    ``deferred`` maps claim ids the study is too short to test to ``{"command", "measured"}`` of the
    longer study; those get the verdict "needs longer training" and no comparison of these rows.
    """
    claims = list(claims) if claims is not None else paper_claims(rows)
    results = []
    for c in claims:
        a_rows, b_rows = _rows(rows, c.a, c.metric), _rows(rows, c.b, c.metric)
        a, b = _values(a_rows, c.metric), _values(b_rows, c.metric)
        later = (deferred or {}).get(c.claim_id)
        why = comparability(a_rows, b_rows, c.metric) if a and b else None
        if later is not None:
            verdict: Verdict = "needs longer training"
            detail = f"longer study: {later.get('measured', '?')}; run: {later.get('command', '?')}"
        elif why is not None:
            verdict, detail = "not comparable", f"the groups' runs differ: {why}"
        else:
            verdict, detail = decide(a, b, c.relation, c.tolerance, spread=seed_spread(c.metric))
        results.append(ClaimResult(c, verdict, a, b, detail))
    return results


__all__ = [
    "Claim",
    "ClaimResult",
    "ClaimRow",
    "Relation",
    "Verdict",
    "comparability",
    "decide",
    "evaluate_claims",
    "paper_claims",
]
