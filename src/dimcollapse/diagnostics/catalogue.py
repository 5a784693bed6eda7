"""The metric catalogue: every scalar collapse metric, once, with its label, format and direction.

A metric is a :class:`MetricSpec` whose ``fn`` reads a :class:`Context` (the spectra and LID values of
one embedding, computed once and shared by every metric). ``summarize``, ``analyze``, the stateful
``CollapseMetrics``, the collapse monitor / tracker and the CLI tables all evaluate this list, so a new
metric is one spec in ``METRICS`` plus one function. Where a metric is shown is part of its spec:
``headline`` (comparison tables), ``run`` (the outputs, r / z, whose value is a column of the study report
and a line of ``dimcollapse train``), ``curve`` (drawn against the training step in the report) and
``monitor`` (recorded by the collapse monitor by default). Every reader asks this module at call time
(``METRICS``, ``spec``, the functions below), never copies the list at import.

``COLLAPSE_THRESHOLD`` is the relative floor below which an eigenvalue counts as collapsed (lambda_k <
1e-6 lambda_max) and is excluded from the alpha-ReQ fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from dimcollapse.diagnostics.alpha_req import AlphaReQ, alpha_req
from dimcollapse.diagnostics.lid import lid_summary
from dimcollapse.diagnostics.rank import (
    collapsed_dimensions,
    effective_rank,
    explained_variance_dims,
    rankme_from_singular_values,
)
from dimcollapse.diagnostics.threshold import COLLAPSE_THRESHOLD, THRESHOLD_TEXT

EMBEDDINGS, LABELS, VIEWS, MODEL = "embeddings", "labels", "views", "model"


@dataclass
class Context:
    """What the metric functions read: spectra and (optionally) pointwise LIDs and the LiDAR spectrum.

    ``eig``: centred covariance spectrum (descending, float64); ``gram_eig``: spectrum of the uncentred
    Z^T Z / N (RankMe); ``lid_mle`` / ``lid_mom``: pointwise LIDs (None when not computed);
    ``lidar_eig``: eigenvalues of the LDA matrix of view groups (None without views); ``cov``: the
    covariance matrix when the caller keeps it (figures).
    """

    eig: np.ndarray
    gram_eig: np.ndarray | None = None
    n: int = 0
    lid_mle: np.ndarray | None = None
    lid_mom: np.ndarray | None = None
    lidar_eig: np.ndarray | None = None
    cov: np.ndarray | None = None
    lidar_eps: float = 1e-8
    threshold: float = COLLAPSE_THRESHOLD
    extra: dict[str, float] = field(default_factory=dict)

    @cached_property
    def alpha_fit(self) -> AlphaReQ:
        """The alpha-ReQ power-law fit of ``eig`` (collapsed eigenvalues excluded)."""
        return alpha_req(self.eig, rel_floor=self.threshold)

    @cached_property
    def lid_mle_stats(self) -> dict[str, float] | None:
        """lid_summary of the MLE LIDs."""
        return None if self.lid_mle is None else lid_summary(self.lid_mle)

    @cached_property
    def lid_mom_stats(self) -> dict[str, float] | None:
        """lid_summary of the MoM LIDs."""
        return None if self.lid_mom is None else lid_summary(self.lid_mom)


@dataclass(frozen=True)
class MetricSpec:
    """One catalogue entry: ``key`` in every dict/JSON, ``fn(ctx) -> float | None`` (None: not available)."""

    key: str
    fn: Callable[[Context], float | None]
    label: str
    fmt: str = "{:.2f}"
    higher_is_better: bool | None = None
    needs: frozenset[str] = frozenset({EMBEDDINGS})
    centred: bool | None = True
    definition: str = ""
    headline: bool = False
    short: str = ""  # column header in compact tables (the label when empty)
    abbrev: str = ""  # terminal column header (``analyze`` comparison; the header when empty)
    run: tuple[str, ...] = ()  # outputs ("r", "z") shown per training run (report table, `train` summary)
    curve: bool = False  # drawn against the training step in the report (from the monitor's history)
    monitor: bool = False  # recorded by the collapse monitor / tracker by default
    record: str = ""  # the name in monitor records, ``<record>_<output>`` (the key when empty)

    @property
    def header(self) -> str:
        """Short column header (``short`` or the label)."""
        return self.short or self.label

    @property
    def column(self) -> str:
        """Terminal column header (``abbrev`` or the header)."""
        return self.abbrev or self.header

    @property
    def record_name(self) -> str:
        """Name of the metric in monitor records (``record`` or the key)."""
        return self.record or self.key

    @property
    def integer(self) -> bool:
        """True for counts (formatted as whole numbers)."""
        return "d}" in self.fmt

    def format(self, value: object) -> str:
        """The value as text ('-' when missing or NaN)."""
        if value is None or (isinstance(value, float) and value != value):
            return "-"
        try:
            return self.fmt.format(int(value) if self.integer else value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return str(value)


def _rankme(ctx: Context) -> float | None:
    if ctx.gram_eig is None:
        return None
    lam = np.clip(ctx.gram_eig, 0.0, None)[: min(ctx.n, ctx.gram_eig.size) if ctx.n else None]
    return rankme_from_singular_values(np.sqrt(lam))


def _lid(which: str, stat: str) -> Callable[[Context], float | None]:
    def fn(ctx: Context) -> float | None:
        s = ctx.lid_mle_stats if which == "mle" else ctx.lid_mom_stats
        return None if s is None else s[stat]

    fn.__doc__ = f"{stat} of the pointwise {which.upper()} LID."
    return fn


def _lidar(ctx: Context) -> float | None:
    if ctx.lidar_eig is None:
        return None
    from dimcollapse.diagnostics.lidar import lidar_from_eigenvalues

    return lidar_from_eigenvalues(ctx.lidar_eig, ctx.lidar_eps)


_LID = frozenset({EMBEDDINGS})
METRICS: list[MetricSpec] = [
    MetricSpec(
        "erank",
        lambda c: effective_rank(c.eig),
        "effective rank",
        "{:.2f}",
        True,
        definition=(
            "Roy & Vetterli 2007 on the covariance spectrum; reptrix's RankMe = effective_rank(eig, eps=1e-7)"
        ),
        headline=True,
        short="erank",
        run=("r", "z"),
        curve=True,
        monitor=True,
    ),
    MetricSpec(
        "rankme",
        _rankme,
        "RankMe",
        "{:.2f}",
        True,
        centred=False,
        definition=(
            "Garrido et al. 2023, singular values of the raw Z, eps=1e-7; "
            "stable-pretraining's RankMe: eps=1e-5"
        ),
        headline=True,
        run=("r",),
        curve=True,
        monitor=True,
    ),
    MetricSpec(
        "alpha",
        lambda c: c.alpha_fit.alpha,
        "alpha-ReQ",
        "{:.3f}",
        None,
        definition=(
            "Agrawal et al. 2022: lambda_k ~ k^-alpha, least squares in log-log; "
            "reptrix: ranks 6-100, 1/k weights"
        ),
        headline=True,
        abbrev="alpha",
    ),
    MetricSpec("alpha_r2", lambda c: c.alpha_fit.r2, "alpha-ReQ fit R^2", "{:.3f}", None),
    MetricSpec(
        "collapsed_dims",
        lambda c: float(collapsed_dimensions(c.eig, c.threshold)),
        f"collapsed dims (< {THRESHOLD_TEXT} max)",
        "{:d}",
        False,
        definition=f"count of lambda_k < {THRESHOLD_TEXT} lambda_max",
        headline=True,
        short="collapsed dims",
        abbrev="dead",
        run=("r",),
        curve=True,
    ),
    MetricSpec(
        "dims_90",
        lambda c: float(explained_variance_dims(c.eig, 0.9)),
        "dims for 90% variance",
        "{:d}",
        True,
        headline=True,
        abbrev="d90%",
    ),
    MetricSpec(
        "dims_99",
        lambda c: float(explained_variance_dims(c.eig, 0.99)),
        "dims for 99% variance",
        "{:d}",
        True,
        headline=True,
        abbrev="d99%",
    ),
    MetricSpec("eig_max", lambda c: float(c.eig[0]), "largest eigenvalue", "{:.4g}"),
    MetricSpec("eig_min", lambda c: float(c.eig[-1]), "smallest eigenvalue", "{:.4g}"),
    MetricSpec("total_variance", lambda c: float(np.clip(c.eig, 0, None).sum()), "total variance", "{:.4g}"),
    MetricSpec(
        "lid_mle_gmean",
        _lid("mle", "gmean"),
        "LID MLE (geometric mean)",
        "{:.2f}",
        True,
        needs=_LID,
        centred=None,
        definition="Levina & Bickel 2004 (k neighbours, mean of log ratios over k)",
        headline=True,
        short="LID",
        run=("r",),
        curve=True,
        monitor=True,
        record="lid",
    ),
    MetricSpec(
        "lid_mle_median", _lid("mle", "median"), "LID MLE (median)", "{:.2f}", True, needs=_LID, centred=None
    ),
    MetricSpec(
        "lid_mom_gmean",
        _lid("mom", "gmean"),
        "LID MoM (geometric mean)",
        "{:.2f}",
        True,
        needs=_LID,
        centred=None,
        definition="Amsaleg et al. 2015 method of moments",
    ),
    MetricSpec(
        "lid_mom_median", _lid("mom", "median"), "LID MoM (median)", "{:.2f}", True, needs=_LID, centred=None
    ),
    MetricSpec(
        "lidar",
        _lidar,
        "LiDAR",
        "{:.2f}",
        True,
        needs=frozenset({VIEWS}),
        definition="Thilak et al. 2023; stable-pretraining's LiDAR (delta=1e-4, eps=1e-8)",
        headline=True,
    ),
]

BY_KEY: dict[str, MetricSpec] = {m.key: m for m in METRICS}


def spec(key: str) -> MetricSpec:
    """The catalogue entry of ``key`` (KeyError names the valid keys)."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no metric '{key}' in the catalogue; known: {', '.join(BY_KEY)}") from None


def evaluate(ctx: Context, keys: Iterable[str] | None = None) -> dict[str, float]:
    """{key: fn(ctx)} for every catalogue metric (or ``keys``) that ``ctx`` can provide."""
    out: dict[str, float] = {}
    for m in METRICS if keys is None else [spec(k) for k in keys]:
        value = m.fn(ctx)
        if value is not None:
            out[m.key] = float(value)
    return out


def label(key: str) -> str:
    """Human label of a catalogue key (the key itself when it is not in the catalogue)."""
    return BY_KEY[key].label if key in BY_KEY else key


def fmt(key: str, value: object) -> str:
    """``value`` formatted as the catalogue says for ``key``."""
    if key in BY_KEY:
        return BY_KEY[key].format(value)
    return "-" if value is None else str(value)


def headline_keys() -> list[str]:
    """Keys of the metrics shown in compact tables (comparison rows, monitors)."""
    return [m.key for m in METRICS if m.headline]


def run_columns(output: str) -> list[tuple[str, MetricSpec]]:
    """(result key ``<key>_<output>``, spec) of the metrics shown per training run for ``output`` (r, z)."""
    return [(f"{m.key}_{output}", m) for m in METRICS if output in m.run]


def monitored_keys() -> tuple[str, ...]:
    """Keys the collapse monitor / tracker record when not told otherwise."""
    return tuple(m.key for m in METRICS if m.monitor)


def curve_specs() -> list[MetricSpec]:
    """The metrics drawn against the training step in the report."""
    return [m for m in METRICS if m.curve]


__all__ = [
    "BY_KEY",
    "COLLAPSE_THRESHOLD",
    "METRICS",
    "THRESHOLD_TEXT",
    "Context",
    "MetricSpec",
    "curve_specs",
    "evaluate",
    "fmt",
    "headline_keys",
    "label",
    "monitored_keys",
    "run_columns",
    "spec",
]
