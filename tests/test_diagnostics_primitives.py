"""One of each primitive: one exact moments merge, one layer-name grammar, one weight-as-matrix helper,
shared by the monitor, `analyze --layers`, CollapseMetrics, the streamed covariance and the regularizers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.diagnostics.engine.matrices import as_matrix
from dimcollapse.diagnostics.engine.moments import merge_moments_into
from dimcollapse.diagnostics.layer_names import name_matches
from dimcollapse.errors import ConfigError


def _moments(x: np.ndarray) -> tuple[int, torch.Tensor, torch.Tensor]:
    t = torch.from_numpy(x)
    mean = t.mean(0)
    return x.shape[0], mean, (t - mean).T @ (t - mean)


def test_the_merge_equals_the_moments_of_all_rows() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 2.0, size=(37, 5)), rng.normal(-1.0, 0.5, size=(11, 5))
    na, ma, m2a = _moments(a)
    nb, mb, m2b = _moments(b)
    m2 = m2a.clone()
    mean = merge_moments_into(m2, na, ma, nb, mb, m2b)
    n, mean_ref, m2_ref = _moments(np.concatenate([a, b]))
    assert n == na + nb == 48
    assert mean is not None
    # float64 sums of ~50 rows: errors far below 1e-12 of the norms
    assert torch.allclose(mean, mean_ref, rtol=0, atol=1e-12 * float(mean_ref.abs().max()))
    assert torch.allclose(m2, m2_ref, rtol=0, atol=1e-12 * float(m2_ref.abs().max()))


def test_collapse_metrics_and_the_streamed_covariance_merge_alike() -> None:
    from dimcollapse.diagnostics.engine.covariance_sums import Moments
    from dimcollapse.track.metrics import batch_moments, merge_moments

    rng = np.random.default_rng(1)
    parts = [torch.from_numpy(rng.normal(size=(n, 4)) + 10.0) for n in (5, 9, 3)]
    packed = merge_moments(torch.stack([batch_moments(p) for p in parts]))
    streamed = Moments()
    for p in parts:
        n, mean, m2 = _moments(p.numpy())
        streamed.merge(n, mean, m2)
    assert streamed.m2 is not None and streamed.mean is not None
    assert int(packed[0, 0]) == streamed.n == 17
    assert torch.equal(packed[1], streamed.mean) and torch.equal(packed[2:], streamed.m2)  # one definition


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3))
        self.projection_head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("backbone.*", ["backbone.0", "backbone.2"]),
        ("2", ["backbone.2"]),  # a backbone layer matches without its prefix
        ("re:head\\.[02]$", ["projection_head.0", "projection_head.2"]),
        ("projection_head.?", ["projection_head.0", "projection_head.2"]),
    ],
)
def test_the_monitor_analyze_and_the_regularizers_read_one_grammar(pattern: str, expected: list[str]) -> None:
    from dimcollapse.regularizers.layers import select_weight_layers
    from dimcollapse.track.layers import layer_view, select_layers

    net = _Net()
    assert list(select_layers(net, [pattern])) == expected  # the monitor and `analyze --layers`
    assert list(layer_view(net, [pattern])) == expected
    assert [n for n, _ in select_weight_layers(net, pattern, include_projector=True)] == expected


def test_a_bad_regex_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no valid regular expression"):
        name_matches("layer1", "re:(")
    assert not name_matches("backbone", "x") and name_matches("backbone", "back*")


def test_one_weight_as_matrix_for_diagnostics_monitor_and_regularizers() -> None:
    from dimcollapse.diagnostics.weights import weight_matrix
    from dimcollapse.regularizers.gram import weight_matrix as reg_matrix
    from dimcollapse.track.layers import parameter_matrices

    conv = nn.Conv2d(3, 6, 3)
    assert torch.equal(weight_matrix(conv), conv.weight.reshape(6, -1))  # contiguous: the plain reshape
    assert reg_matrix is as_matrix
    assert torch.equal(parameter_matrices(nn.Sequential(conv))["0"], weight_matrix(conv))
    cl = conv.to(memory_format=torch.channels_last)
    m = weight_matrix(cl)
    assert m.shape == (6, 27) and m.data_ptr() == cl.weight.data_ptr()  # a view in the weight's own layout
    ref = torch.linalg.svdvals(conv.weight.detach().reshape(6, -1).double())
    got = torch.linalg.svdvals(m.detach().double())  # a column permutation keeps the spectrum
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12 * float(ref[0]))
