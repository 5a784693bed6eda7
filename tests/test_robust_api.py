"""The Python API refuses bad input with one-line errors and is unchanged by a rejected update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimcollapse.diagnostics import covariance_spectrum, effective_rank, rankme
from dimcollapse.errors import ConfigError, DimCollapseError, InputError
from dimcollapse.track import CollapseMetrics, CollapseMonitor, Tracker

BAD_BATCHES = [
    ("0-d tensor", torch.tensor(1.0), r"shape \(batch, dim\), got \(\)"),
    ("1-D list", [1.0, 2.0], r"got \(2,\)\. Add a batch dimension"),
    ("no features", torch.zeros(5, 0), "no features"),
    ("strings", np.array([["a", "b"], ["c", "d"]]), "must be numeric"),
    ("complex tensor", torch.randn(5, 8, dtype=torch.complex64), "complex"),
    ("complex array", np.ones((5, 8)) + 1j, "complex"),
    (
        "near 1e300",
        torch.full((5, 8), 1e300, dtype=torch.float64) * torch.rand(5, 8, dtype=torch.float64),
        "overflow",
    ),
    ("NaN", torch.full((3, 8), float("nan")), "NaN"),
    ("other dim", torch.randn(4, 16), r"dim \[8, 16\]"),
]


def _one_line(e: pytest.ExceptionInfo[DimCollapseError]) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize(("what", "batch", "match"), BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
def test_a_rejected_update_is_one_line_and_leaves_the_metric_as_it_was(
    what: str, batch: object, match: str
) -> None:
    z = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    ref = CollapseMetrics(k=3)
    ref.update(z)
    m = CollapseMetrics(k=3)
    m.update(z)
    with pytest.raises(InputError, match=match) as e:
        m.update(batch)
    _one_line(e)
    got, want = m.compute(), ref.compute()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)


def test_a_rejected_first_update_does_not_fix_the_dimension() -> None:
    m = CollapseMetrics()
    with pytest.raises(InputError):
        m.update(torch.zeros(16))  # 1-D: refused before the dim is taken from it
    z = torch.randn(12, 8, dtype=torch.float64)
    m.update(z)
    assert m.dim == 8 and float(m.compute()["erank"]) == pytest.approx(
        effective_rank(covariance_spectrum(z.numpy())), rel=1e-9
    )


def test_an_empty_batch_adds_nothing() -> None:
    m = CollapseMetrics(k=3)
    m.update(torch.zeros(0, 8))
    with pytest.raises(InputError, match="0 row"):
        m.compute()
    z = torch.randn(9, 8, dtype=torch.float64)
    m.update(z)
    m.update(torch.zeros(0, 8))
    assert float(m.compute()["n"]) == 9


def test_a_list_of_rows_is_accepted_like_the_array() -> None:
    rows = [[1.0, 2.0, 0.5], [3.0, 4.5, 1.0], [1.0, 1.0, 2.0], [0.0, 2.0, 1.0]]
    m = CollapseMetrics(k=0)
    m.update(rows)
    assert float(m.compute()["rankme"]) == pytest.approx(rankme(np.array(rows)), rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": float("nan")}, "k .*integer"),
        ({"k": "a"}, "k .*integer"),
        ({"k": 1}, "k .*>= 2 or 0"),
        ({"dim": 0}, "dim must be an integer >= 1"),
        ({"dim": -3}, "dim must be an integer >= 1"),
        ({"reservoir_size": float("nan")}, "reservoir_size"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        CollapseMetrics(**kwargs)
    _one_line(e)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: Tracker(torch.nn.Linear(3, 3), p, every="abc"), "every .*'abc'"),
        (lambda p: Tracker(torch.nn.Linear(3, 3), p, patience="x"), "patience .*'x'"),
        (lambda p: Tracker(torch.nn.Linear(3, 3), p, lid_k="x"), "lid_k"),
        (lambda p: Tracker(torch.nn.Linear(3, 3), p, warn_fraction="x"), "warn_fraction"),
        (lambda p: Tracker(torch.nn.Linear(3, 3), p, n_views=1), "n_views"),
        (lambda p: CollapseMonitor(p, every_n_steps="abc"), "every_n_steps .*'abc'"),
        (lambda p: CollapseMonitor(p, patience=2.5), "patience .*2.5"),
    ],
)
def test_bad_monitor_options_are_config_errors(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match) as e:
        make(torch.randn(6, 3))
    _one_line(e)


def test_wide_embeddings_use_the_gram_path_not_d_by_d_moments() -> None:
    """Five rows of D = 100,000: the (D + 2, D) moments would be 80 GB; the N x N Gram path gives the
    same spectrum as the functional API, with the D - N zero eigenvalues."""
    d = 100_000
    z = torch.randn(5, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for k in (0, 3):
        m = CollapseMetrics(k=k)
        m.update(z[:3])
        m.update(z[3:])
        out = m.compute()
        assert m.keeps_rows and out["spectrum"].shape == (d,)
        ref = covariance_spectrum(z.numpy())
        np.testing.assert_allclose(out["spectrum"].numpy()[:5], ref[:5], rtol=1e-9, atol=1e-12 * ref[0])
        assert float(out["erank"]) == pytest.approx(effective_rank(ref), rel=1e-9)
        assert float(out["rankme"]) == pytest.approx(rankme(z.numpy()), rel=1e-9)


def test_wide_embeddings_beyond_the_limit_are_refused_with_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIMCOLLAPSE_MAX_ALLOC_GB", "0.01")  # 10 MiB: 20 rows of D = 100,000 need 15 MiB
    m = CollapseMetrics(k=0)
    m.update(torch.randn(5, 100_000))
    with pytest.raises(InputError, match=r"20 rows of dim 100000 .* above the limit of 0\.0 GiB") as e:
        m.update(torch.randn(15, 100_000))
    _one_line(e)
    assert float(m.compute()["n"]) == 5
    with pytest.raises(InputError, match="LiDAR"):
        CollapseMetrics(dim=100_000, lidar=True)


def test_a_model_output_object_gives_its_one_batch_by_dim_field() -> None:
    from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling

    tokens = torch.randn(6, 5, 8, dtype=torch.float64)
    pooled = torch.randn(6, 8, dtype=torch.float64)
    m = CollapseMetrics(k=0)
    m.update(BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=pooled))
    assert float(m.compute()["erank"]) == pytest.approx(effective_rank(covariance_spectrum(pooled.numpy())))
    with pytest.raises(InputError, match=r"last_hidden_state\[:, 0\].*mean\(1\)") as e:
        CollapseMetrics().update(BaseModelOutput(last_hidden_state=tokens))
    _one_line(e)
    with pytest.raises(InputError, match="several"):
        CollapseMetrics().update({"a": pooled, "b": pooled})


def test_views_alone_give_lidar_not_zero_rows() -> None:
    from dimcollapse.diagnostics.lidar import lidar

    views = torch.randn(20, 3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    m = CollapseMetrics(lidar=True)
    m.update(views=views)
    out = m.compute()
    assert float(out["n"]) == 0 and float(out["d"]) == 8
    assert float(out["lidar"]) == pytest.approx(lidar(views), rel=1e-9)
    assert math.isfinite(float(out["lidar"]))
