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

The papers' claims are data: ``CLAIM_TABLE`` holds one ``ClaimRule`` per claim (id, paper, text, metric,
groups a and b, relation, "close" margin) under the scope that binds its ``{obj}`` / ``{proj}``
placeholders; ``paper_claims`` keeps the bound claims whose two groups the study ran. Metric keys of
catalogue metrics come from the catalogue (``_r``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Literal, TypedDict

from dimcollapse.diagnostics import catalogue
from dimcollapse.records import accuracy_key, knn_stem
from dimcollapse.records.accuracy import settings_keys
from dimcollapse.records.row import Row, as_finite, finite
from dimcollapse.records.schema import JsonValue
from dimcollapse.report.seed_spread import SOURCE, seed_spread

Relation = Literal["greater", "less", "close"]
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
    tolerance: float = 0.1  # "close": |a - b| <= tolerance * |b| (part of the claim, not a margin)


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


# ---- the papers' claims as a table -------------------------------------------------------------------
Group = tuple[str, str, str]  # (objective, projector, regularizers); "{obj}" / "{proj}" filled per binding
GROUP_FIELDS = ("objective", "projector", "regularizers")
Scope = Callable[[set[Group]], list[dict[str, str]]]


def _present(rows: Iterable[Row]) -> set[Group]:
    return {(str(r.get("objective")), str(r.get("projector")), str(r.get("regularizers", ""))) for r in rows}


def _r(key: str) -> str:
    """The result column of catalogue metric ``key`` on the representations r (KeyError if unknown)."""
    return f"{catalogue.spec(key).key}_r"


ERANK_R, LID_R = _r("erank"), _r("lid_mle_gmean")
KNN = accuracy_key(knn_stem(200))  # evaluation (training/evaluate_run.py)
WEIGHT_ERANK, TAIL_EIG_R = "weight_erank_mean", "tail_eig_r"  # artifacts (study/artifacts.py)


@dataclass(frozen=True)
class ClaimRule:
    """One claim of a paper as data: ``metric`` of group ``a`` stands in ``relation`` to group ``b``.

    ``{obj}`` / ``{proj}`` in the id, the text and the groups are filled by the bindings of the rule's
    scope; ``tolerance`` (the "close" margin) defaults to 0.02 for kNN accuracies and 0.1 otherwise.
    """

    claim_id: str
    paper: str
    text: str
    metric: str
    a: Group
    b: Group
    relation: Relation = "greater"
    tolerance: float | None = None

    def bind(self, names: Mapping[str, str]) -> Claim:
        """The concrete claim for one binding of the placeholders."""
        tol = self.tolerance
        if tol is None:
            tol = 0.02 if self.metric.startswith("knn") else 0.1
        a, b = (
            {f: v.format(**names) for f, v in zip(GROUP_FIELDS, g, strict=True)} for g in (self.a, self.b)
        )
        fields = (self.claim_id.format(**names), self.paper, self.text.format(**names), self.metric)
        return Claim(*fields, a, b, self.relation, tol)


def _once(present: set[Group]) -> list[dict[str, str]]:
    return [{}]


def _unregularized_pairs(present: set[Group]) -> list[dict[str, str]]:
    """Every (objective, projector) the study ran without a regularizer."""
    return [{"obj": o, "proj": p} for o, p in sorted({(o, p) for o, p, r in present if r == ""})]


def _byol_projectors(present: set[Group]) -> list[dict[str, str]]:
    return [{"proj": p} for p in sorted({p for o, p, _ in present if o == "byol"})]


def _reg(reg: str, paper: str, metric: str, relation: Relation, text: str) -> ClaimRule:
    """A regularizer's claim: ``obj`` / ``proj`` with ``reg`` against the same pair without it."""
    return ClaimRule(
        f"{reg}-{metric}-{{obj}}-{{proj}}",
        paper,
        f"{text} ({{obj}}, projector {{proj}})",
        metric,
        ("{obj}", "{proj}", reg),
        ("{obj}", "{proj}", ""),
        relation,
    )


DC, DC1, OR, LD, LL = (
    "DirectCLR (Jing et al. 2022)",
    "DirectCLR (Jing et al. 2022), table 1",
    "OR (He et al. 2024)",
    "LDReg (Huang et al. 2024)",
    "LL (last-layer regularization)",
)
SIMCLR_MLP, SIMCLR_NONE = ("simclr", "mlp", ""), ("simclr", "none", "")
DIRECT = tuple(("directclr", p, "") for p in ("none", "fixed_lowrank_diagonal"))
# (scope, rules): for each binding of the scope, every rule whose two groups the study ran, in this order
CLAIM_TABLE: tuple[tuple[Scope, tuple[ClaimRule, ...]], ...] = (
    (
        _once,
        (
            ClaimRule(
                "DC-noproj-collapse",
                DC,
                "SimCLR without projector collapses r more than with an MLP projector",
                ERANK_R,
                SIMCLR_NONE,
                SIMCLR_MLP,
                "less",
            ),
            ClaimRule(
                "DC-proj-accuracy",
                DC1,
                "an MLP projector gives SimCLR better kNN accuracy than no projector",
                KNN,
                SIMCLR_MLP,
                SIMCLR_NONE,
            ),
            ClaimRule(
                "DC-linear-vs-none",
                DC1,
                "a linear projector gives SimCLR better kNN accuracy than no projector",
                KNN,
                ("simclr", "linear", ""),
                SIMCLR_NONE,
            ),
            *(
                rule
                for direct in DIRECT
                for rule in (
                    ClaimRule(
                        "DC-directclr-erank",
                        "DirectCLR (Jing et al. 2022), section 6",
                        "DirectCLR keeps r's effective rank close to SimCLR with an MLP projector "
                        "(within 25%)",
                        ERANK_R,
                        direct,
                        SIMCLR_MLP,
                        "close",
                        0.25,
                    ),
                    ClaimRule(
                        "DC-directclr-vs-none",
                        DC1,
                        "DirectCLR beats SimCLR without projector in kNN accuracy",
                        KNN,
                        direct,
                        SIMCLR_NONE,
                    ),
                )
            ),
        ),
    ),
    (
        _unregularized_pairs,
        (
            _reg("so", OR, ERANK_R, "greater", "SO raises the effective rank of r"),
            _reg("so", OR, WEIGHT_ERANK, "greater", "SO raises the effective rank of the encoder weights"),
            _reg("so", OR, KNN, "greater", "SO improves kNN accuracy"),
            _reg("srip", OR, ERANK_R, "greater", "SRIP raises the effective rank of r"),
            _reg("ldreg", LD, ERANK_R, "greater", "LDReg raises the effective rank of r"),
            _reg("ldreg", LD, LID_R, "greater", "LDReg raises the local intrinsic dimension of r"),
            _reg("minlid", f"{LD}, table 13", ERANK_R, "less", "MinLID collapses r"),
            _reg(
                "last_layer",
                LL,
                TAIL_EIG_R,
                "greater",
                "last-layer regularization raises the smallest singular values of r",
            ),
            _reg("werank", LL, ERANK_R, "greater", "WeRank raises the effective rank of r"),
        ),
    ),
    (
        _byol_projectors,
        (
            ClaimRule(
                "OR-so-vs-whitening-{proj}",
                f"{OR}, table 2",
                "BYOL + SO beats BYOL + feature whitening in kNN accuracy",
                KNN,
                ("byol", "{proj}", "so"),
                ("byol", "{proj}", "whitening"),
            ),
        ),
    ),
)


def paper_claims(rows: Iterable[Row]) -> list[Claim]:
    """The claims of ``CLAIM_TABLE`` (the four papers) that the combinations present in ``rows`` can test."""
    present = _present(rows)
    out: list[Claim] = []
    for scope, rules in CLAIM_TABLE:
        for names in scope(present):
            for rule in rules:
                claim = rule.bind(names)
                if all(tuple(sel[f] for f in GROUP_FIELDS) in present for sel in (claim.a, claim.b)):
                    out.append(claim)
    return out
