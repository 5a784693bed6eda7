"""The papers' claims as data: ``CLAIM_TABLE`` holds one ``ClaimRule`` per claim (id, paper, text, metric,
groups a and b, relation, "close" margin) under the scope that binds its ``{obj}`` / ``{proj}``
placeholders; ``paper_claims`` keeps the bound claims whose two groups a study ran. Metric keys of
catalogue metrics come from the catalogue (``_r``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dimcollapse.diagnostics import catalogue
from dimcollapse.records import accuracy_key, knn_stem
from dimcollapse.records.row import Row
from dimcollapse.report.claim import Claim, Relation

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
