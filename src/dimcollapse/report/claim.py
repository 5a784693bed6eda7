"""One claim of a paper: ``metric`` of group ``a`` stands in ``relation`` to group ``b``, the groups being
rows of a study's results chosen by field values. The table of the papers' claims is ``claim_table.py``;
the verdicts are computed in ``claims.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Relation = Literal["greater", "less", "close"]


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
