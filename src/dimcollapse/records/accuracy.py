"""The accuracy catalogue: every kind of frozen-feature accuracy once, with its key grammar and label.

An accuracy key is ``<stem>_top<t>[_<variant>]``: the stem names the kind and its setting (``knn_k20``,
``linear``), ``t`` is 1 or 5, a variant marks features other than the whole r (``_d0``: DirectCLR's
r[:, :d0]). Evaluation writes keys with :func:`accuracy_key`; every table, summary and claim finds the
accuracies of a result with :func:`accuracy_columns`, so a new ``eval.knn_k`` or a new kind shows
everywhere without a reader being edited. A new kind is one :class:`AccuracyKind` given to
:func:`register_kind` (and the code that computes it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

TOPS = (1, 5)
KEY = re.compile(
    r"^(?P<stem>[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*?)_top(?P<top>[15])(?:_(?P<variant>[a-z0-9]+))?$"
)


@dataclass(frozen=True)
class AccuracyKind:
    """One kind of accuracy: ``stem`` (a regex of the stem, its group ``p`` the setting, e.g. k), a
    label template (``{p}`` the setting), the settings a comparison must hold equal, its table place."""

    name: str
    stem: str
    label: str
    settings: tuple[str, ...] = ()
    order: int = 0

    def match(self, stem: str) -> re.Match[str] | None:
        """The match of ``stem`` against this kind's stem pattern (None: another kind)."""
        return re.fullmatch(self.stem, stem)


@dataclass(frozen=True)
class AccuracyKey:
    """A parsed accuracy key: its kind, stem, setting (e.g. k, '' when none), top-t and variant."""

    key: str
    kind: AccuracyKind
    stem: str
    param: str
    top: int
    variant: str

    @property
    def label(self) -> str:
        """Human label, e.g. 'kNN k=20', 'linear probe', 'kNN k=200 (r[:d0])', '... top-5'."""
        text = self.kind.label.format(p=self.param)
        if self.variant:
            text += f" ({VARIANT_LABELS.get(self.variant, self.variant)})"
        return text if self.top == 1 else f"{text} top-{self.top}"

    def sort_key(self) -> tuple[int, int, float, str, int]:
        """Tables order by variant, kind, numeric setting, then top."""
        try:
            p = float(self.param)
        except ValueError:
            p = 0.0
        return (bool(self.variant), self.kind.order, p, self.variant, self.top)


VARIANT_LABELS = {"d0": "r[:d0]"}
KNN = AccuracyKind("knn", r"knn_k(?P<p>\d+)", "kNN k={p}", ("eval_knn_temperature",), order=10)
# The fast CPU evaluation: full-batch L-BFGS on centre-crop features (training/probe_lbfgs.py).
LINEAR = AccuracyKind(
    "linear",
    r"linear",
    "linear probe (L-BFGS, fast CPU)",
    ("eval_linear_probe_epochs", "eval_linear_probe_dtype"),
    order=20,
)
# The papers' protocol: SGD on augmented crops of the frozen encoder (training/probe_sgd.py).
LINEAR_SGD = AccuracyKind(
    "linear_sgd", r"linear_sgd", "linear probe (SGD, papers' protocol)", ("eval_sgd_probe",), order=21
)
KINDS: list[AccuracyKind] = [KNN, LINEAR, LINEAR_SGD]


def register_kind(kind: AccuracyKind) -> AccuracyKind:
    """Add ``kind`` to the catalogue (its name and stem must be new); returns it."""
    if any(k.name == kind.name for k in KINDS):
        raise ValueError(f"accuracy kind '{kind.name}' is registered already")
    KINDS.append(kind)
    return kind


def knn_stem(k: int) -> str:
    """The stem of the weighted kNN accuracy with k neighbours (``knn_k20``)."""
    return f"knn_k{int(k)}"


def accuracy_key(stem: str, top: int = 1, variant: str = "") -> str:
    """``<stem>_top<top>[_<variant>]``, e.g. accuracy_key(knn_stem(20)) == 'knn_k20_top1'."""
    return f"{stem}_top{int(top)}" + (f"_{variant}" if variant else "")


def parse(key: str) -> AccuracyKey | None:
    """The parsed accuracy key, or None when ``key`` is no accuracy of a registered kind."""
    m = KEY.match(key)
    if m is None:
        return None
    stem = m["stem"]
    for kind in KINDS:
        km = kind.match(stem)
        if km is not None:
            param = km.groupdict().get("p") or ""
            return AccuracyKey(key, kind, stem, param, int(m["top"]), m["variant"] or "")
    return None


def is_accuracy(key: str) -> bool:
    """True for a key of a registered accuracy kind (these values are fractions, shown in %)."""
    return parse(key) is not None


def accuracy_columns(
    keys: Iterable[str], tops: tuple[int, ...] = (1,), variants: bool = False
) -> list[tuple[str, str]]:
    """(key, label) of the accuracies among ``keys`` (top-1 by default, whole-r features unless
    ``variants``), in catalogue order (kind, then numeric setting): the columns of every accuracy table."""
    found = {p.key: p for p in map(parse, dict.fromkeys(keys)) if p is not None}
    chosen = [p for p in found.values() if p.top in tops and (variants or not p.variant)]
    return [(p.key, p.label) for p in sorted(chosen, key=AccuracyKey.sort_key)]


def headline_knn(keys: Iterable[str]) -> str | None:
    """The top-1 kNN key with the largest k among ``keys`` (the accuracy the baselines are compared on)."""
    knn = [p for p in map(parse, keys) if p is not None and p.kind is KNN and p.top == 1 and not p.variant]
    return max(knn, key=lambda p: int(p.param)).key if knn else None


def settings_keys(key: str) -> tuple[str, ...]:
    """The evaluation settings that must be equal before two values of accuracy ``key`` compare."""
    p = parse(key)
    return () if p is None else p.kind.settings
