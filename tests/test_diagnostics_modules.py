"""Weight spectra, feature spectra (forward hooks), layer alignment and the summarize() dictionary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.diagnostics import (
    alignment_matrix,
    covariance_spectrum,
    effective_rank,
    feature_spectra,
    summarize,
    weight_spectra,
)
from dimcollapse.errors import ConfigError, InputError


def test_weight_spectra_conv2d_equals_numpy_svd_of_reshaped_weight() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3)
    got = weight_spectra(nn.Sequential(conv))
    w = conv.weight.detach().numpy().astype(np.float64)
    expected = np.linalg.svd(w.reshape(8, 27), compute_uv=False)
    assert list(got) == ["0"]
    np.testing.assert_allclose(got["0"], expected, rtol=1e-10)


def test_weight_spectra_names_linear_conv1d_and_attention() -> None:
    model = nn.ModuleDict(
        {
            "enc": nn.Sequential(nn.Conv1d(2, 4, 5), nn.ReLU(), nn.Linear(6, 3)),
            "att": nn.MultiheadAttention(8, 2),
            "cross": nn.MultiheadAttention(8, 2, kdim=5, vdim=7),
        }
    )
    got = weight_spectra(model)
    assert set(got) == {
        "enc.0",
        "enc.2",
        "att.in_proj",
        "att.out_proj",
        "cross.q_proj",
        "cross.k_proj",
        "cross.v_proj",
        "cross.out_proj",
    }
    assert (
        got["enc.0"].shape == (4,) and got["att.in_proj"].shape == (8,) and got["cross.k_proj"].shape == (5,)
    )
    w = model["att"].in_proj_weight.detach().double().numpy()
    np.testing.assert_allclose(got["att.in_proj"], np.linalg.svd(w, compute_uv=False), rtol=1e-10)
    assert weight_spectra(nn.Linear(3, 2)).keys() == {"root"}


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def test_feature_spectra_default_layer_names_and_values() -> None:
    net = _Net().train()
    batches = [torch.randn(40, 2, 5, 5) for _ in range(3)]
    got = feature_spectra(net, batches)
    assert list(got) == ["input", "conv", "act", "pool", "head", "output"]
    assert net.training  # mode restored
    x = torch.cat(batches)
    with torch.no_grad():
        conv = net.conv(x)
        out = net(x)
    np.testing.assert_allclose(got["input"], covariance_spectrum(x.reshape(120, -1)), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(got["conv"], covariance_spectrum(conv.mean((2, 3))), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(got["output"], covariance_spectrum(out), rtol=1e-6, atol=1e-10)
    assert got["input"].shape == (50,)


def test_feature_spectra_pooling_options_and_labelled_batches() -> None:
    net = _Net()
    x = torch.randn(30, 2, 4, 4)
    batches = [(x[:15], torch.zeros(15)), (x[15:], torch.ones(15))]
    with torch.no_grad():
        conv = net.conv(x)
    pos = feature_spectra(net, batches, layers=["conv"], pool="positions")["conv"]
    rows = conv.permute(0, 2, 3, 1).reshape(-1, 6)
    np.testing.assert_allclose(pos, covariance_spectrum(rows), rtol=1e-6, atol=1e-10)
    flat = feature_spectra(net, batches, layers=["conv"], pool="flatten")["conv"]
    assert flat.shape == (96,)
    custom = feature_spectra(net, batches, layers=["conv"], pool=lambda t: t.amax((2, 3)))["conv"]
    np.testing.assert_allclose(custom, covariance_spectrum(conv.amax((2, 3))), rtol=1e-6, atol=1e-10)


def test_feature_spectra_errors() -> None:
    net = _Net()
    batches = [torch.randn(8, 2, 4, 4)]
    with pytest.raises(ConfigError, match="conv"):
        feature_spectra(net, batches, layers=["nope"])
    with pytest.raises(ConfigError):
        feature_spectra(net, batches, pool="median")
    with pytest.raises(ConfigError, match="max_dim"):
        feature_spectra(net, batches, layers=["conv"], pool="flatten", max_dim=10)
    bad = torch.randn(8, 2, 4, 4)
    bad[3] = float("nan")
    with pytest.raises(InputError, match="1 of 8 rows"):
        feature_spectra(net, [bad], layers=["input"])


def test_alignment_of_w2_built_from_w1_left_vectors_is_identity() -> None:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((12, 20))
    u1, _, _ = np.linalg.svd(w1, full_matrices=False)
    u, _ = np.linalg.qr(rng.standard_normal((9, 9)))
    s = np.linspace(5.0, 1.0, 9)
    w2 = u @ np.diag(s) @ u1[:, :9].T  # W2 = U S V^T with V = W1's first left singular vectors
    al = alignment_matrix(w1, torch.from_numpy(w2))
    np.testing.assert_allclose(al.matrix, np.eye(9, 12), atol=1e-10)
    assert al.mean_diag == pytest.approx(1.0, abs=1e-10)
    assert al.mean_diag_distinct == pytest.approx(1.0, abs=1e-10) and al.n_distinct == 9


def test_alignment_of_random_layers_is_low_and_ties_are_excluded() -> None:
    rng = np.random.default_rng(1)
    w1, w2 = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    assert alignment_matrix(w1, w2).mean_diag < 0.3
    # W2 with two equal singular values: those two directions are not "distinct"
    u1, _, _ = np.linalg.svd(w1)
    w2 = np.diag([3.0, 2.0, 2.0, 1.0] + [0.5 - 0.001 * i for i in range(60)]) @ u1.T
    al = alignment_matrix(w1, w2)
    assert al.n_distinct == 62
    with pytest.raises(InputError, match=r"W2\.shape"):
        alignment_matrix(w1, rng.standard_normal((5, 7)))


def test_summarize_is_consistent_with_the_individual_metrics() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((800, 16)) * np.r_[np.ones(4), np.full(12, 1e-5)]
    s = summarize(z, k=10)
    eig = covariance_spectrum(z)
    assert s["n"] == 800 and s["d"] == 16
    assert s["erank"] == pytest.approx(effective_rank(eig))
    assert 3.5 < s["erank"] < 4.1 and s["collapsed_dims"] == 12 and s["dims_90"] <= 4
    assert 3.0 < s["lid_mle_gmean"] < 6.0
    assert all(isinstance(v, float) for v in s.values())
    sub = summarize(z, k=10, lid_max_points=100)
    assert sub["lid_points"] == 100 and sub["erank"] == s["erank"]
    assert math.isfinite(summarize(np.ones((50, 3)), k=5)["lid_mle_gmean"])


class _Tokens(nn.Module):
    """Transformer-style encoder: (N, T, E) tokens through a block, then a Conv1d (channels first)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.conv1d = nn.Conv1d(32, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.block(x)
        return self.conv1d(t.transpose(1, 2)).mean(2)


def test_feature_spectra_pools_transformer_tokens_over_tokens_not_features() -> None:
    """(N, T, E) token outputs give an E-long spectrum of the token mean (a 32-wide layer: 32 values)."""
    net = _Tokens()
    x = torch.randn(60, 5, 32)
    got = feature_spectra(net, [x], layers=["block", "conv1d"])
    with torch.no_grad():
        tokens = net.block(x)
        conv = net.conv1d(tokens.transpose(1, 2))
    assert got["block"].shape == (32,)
    np.testing.assert_allclose(got["block"], covariance_spectrum(tokens.mean(1)), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(got["conv1d"], covariance_spectrum(conv.mean(2)), rtol=1e-6, atol=1e-10)
    cls = feature_spectra(net, [x], layers=["block"], pool="cls")["block"]
    np.testing.assert_allclose(cls, covariance_spectrum(tokens[:, 0]), rtol=1e-6, atol=1e-10)
    pos = feature_spectra(net, [x], layers=["block"], pool="positions")["block"]
    np.testing.assert_allclose(pos, covariance_spectrum(tokens.reshape(-1, 32)), rtol=1e-6, atol=1e-10)
