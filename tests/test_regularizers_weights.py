"""SO, SRIP, last-layer, WeRank: values against numpy, gradients, convergence, layer selection, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.errors import ConfigError
from dimcollapse.registry import build, get
from dimcollapse.regularizers.gram import gram_deviation_norm, gram_deviation_sq
from dimcollapse.regularizers.srip import power_sigma_max


class TinyBackbone(nn.Module):
    """Stand-in backbone with the contract's weight_layers() / last_layer_name."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)
        self.out_dim = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.conv(x).mean(dim=(2, 3)))))

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        return [("conv", self.conv), ("fc1", self.fc1), ("fc2", self.fc2)]

    @property
    def last_layer_name(self) -> str:
        return "fc2"


class TinySSL(nn.Module):
    """Stand-in for the training module's SSLModel: children backbone, projector, objective."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = TinyBackbone()
        self.projector = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        self.objective = nn.Module()
        self.objective.predictor = nn.Linear(3, 3)


def np_so(w: np.ndarray) -> float:
    """||G - I||_F^2 with G the smaller Gram, in float64 numpy."""
    m = w.reshape(w.shape[0], -1).astype(np.float64)
    g = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float(((g - np.eye(g.shape[0])) ** 2).sum())


@pytest.mark.parametrize("shape", [(5, 12), (12, 5), (6, 2, 3, 3), (40, 3, 1, 1)])
def test_so_matches_numpy(shape: tuple[int, ...]) -> None:
    w = torch.randn(*shape, dtype=torch.float64) * 0.3
    assert gram_deviation_sq(w).item() == pytest.approx(np_so(w.numpy()), rel=1e-10)


def test_channels_last_conv_weight_same_terms_and_gradient_layout() -> None:
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    wc = w.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert gram_deviation_sq(wc).item() == pytest.approx(np_so(w.numpy()), rel=1e-10)
    gram_deviation_sq(wc).backward()
    assert wc.grad is not None and wc.grad.stride() == wc.stride()
    w_std = w.clone().requires_grad_(True)
    gram_deviation_sq(w_std).backward()
    torch.testing.assert_close(wc.grad, w_std.grad, rtol=1e-10, atol=1e-12)
    tall = torch.randn(40, 2, 2, 2, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert gram_deviation_sq(tall).item() == pytest.approx(np_so(tall.numpy()), rel=1e-10)


def test_so_module_sums_layers_and_holds_no_weight() -> None:
    model = TinyBackbone().double()
    reg = build("regularizer", "so")
    want = sum(np_so(m.weight.detach().numpy()) for _, m in model.weight_layers())
    assert reg(model).item() == pytest.approx(want, rel=1e-10)
    assert reg.last_stats["raw"].item() == pytest.approx(want, rel=1e-10)
    with pytest.raises(ConfigError, match="unknown option"):  # the weight is the run's, not the term's
        build("regularizer", "so", weight=0.5)


@pytest.mark.parametrize("shape", [(5, 12), (12, 5)])
def test_so_gradient_same_for_both_gram_forms(shape: tuple[int, int]) -> None:
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    (g_fast,) = torch.autograd.grad(gram_deviation_sq(w), w)
    eye_r, eye_c = torch.eye(shape[0], dtype=torch.float64), torch.eye(shape[1], dtype=torch.float64)
    (g_rows,) = torch.autograd.grad(((w @ w.t() - eye_r) ** 2).sum(), w)
    (g_cols,) = torch.autograd.grad(((w.t() @ w - eye_c) ** 2).sum(), w)
    torch.testing.assert_close(g_rows, g_cols, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_fast, g_rows, rtol=1e-10, atol=1e-10)
    # the two forms differ by the constant |rows - cols|
    diff = ((w @ w.t() - eye_r) ** 2).sum() - ((w.t() @ w - eye_c) ** 2).sum()
    assert diff.item() == pytest.approx(shape[0] - shape[1], abs=1e-9)


@pytest.mark.parametrize("shape", [(4, 9), (9, 4), (6, 6)])
def test_so_zero_for_orthonormal(shape: tuple[int, int]) -> None:
    q, _ = torch.linalg.qr(torch.randn(max(shape), min(shape), dtype=torch.float64))
    w = q if shape[0] >= shape[1] else q.t()  # column- or row-orthonormal
    assert gram_deviation_sq(w).item() == pytest.approx(0.0, abs=1e-20)
    assert gram_deviation_sq(w.float()).item() < 1e-10


def test_last_layer_uses_rows_form_and_only_last_layer() -> None:
    model = TinyBackbone().double()
    reg = build("regularizer", "last_layer")
    w = model.fc2.weight.detach().numpy()
    want = float(((w @ w.T - np.eye(w.shape[0])) ** 2).sum())
    assert reg(model).item() == pytest.approx(want, rel=1e-10)
    # a tall layer: W W^T value (includes the rows - cols constant)
    tall = build("regularizer", "last_layer", layer="fc1")
    w1 = model.fc1.weight.detach().numpy()
    assert tall(model).item() == pytest.approx(float(((w1 @ w1.T - np.eye(16)) ** 2).sum()), rel=1e-10)


def test_werank_sums_rows_form_over_layers() -> None:
    model = TinyBackbone().double()
    want = 0.0
    for _, m in model.weight_layers():
        w = m.weight.detach().reshape(m.weight.shape[0], -1).numpy()
        want += float(((w @ w.T - np.eye(w.shape[0])) ** 2).sum())
    assert build("regularizer", "werank")(model).item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("shape", [(6, 20), (20, 6)])
def test_srip_power_iteration_matches_numpy(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(*shape, generator=gen, dtype=torch.float64) / np.sqrt(shape[1])
    m = w.numpy()
    g = m @ m.T if shape[0] <= shape[1] else m.T @ m
    want = np.linalg.svd(g - np.eye(g.shape[0]), compute_uv=False)[0]
    reg = build("regularizer", "srip", power_steps=60, persistent=False)
    model = nn.Linear(shape[1], shape[0], bias=False).double()
    model.weight.data.copy_(w)
    assert abs(reg(model).item() - want) < 1e-3
    sq = build("regularizer", "srip", power_steps=60, persistent=False, squared=True)
    assert abs(sq(model).item() - want**2) < 2e-3 * want


@pytest.mark.parametrize("shape", [(5, 3, 2, 2), (14, 5)])
def test_srip_hand_gradient_matches_autograd(shape: tuple[int, ...]) -> None:
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    m = w.reshape(shape[0], -1)
    small = min(m.shape)
    v = torch.nn.functional.normalize(torch.randn(small, dtype=torch.float64), dim=0)
    norm, unit = gram_deviation_norm(w, v)
    (fast,) = torch.autograd.grad(3.0 * norm, w)
    g = m @ m.t() if m.shape[0] <= m.shape[1] else m.t() @ m
    u = (g - torch.eye(small, dtype=torch.float64)) @ v
    (slow,) = torch.autograd.grad(3.0 * u.norm(), w)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(unit, (u / u.norm()).detach(), rtol=1e-12, atol=1e-12)


def test_srip_persistent_vector_converges_over_calls() -> None:
    w = torch.randn(8, 30, dtype=torch.float64) / np.sqrt(30)
    m = w.numpy()
    want = np.linalg.svd(m @ m.T - np.eye(8), compute_uv=False)[0]
    model = nn.Linear(30, 8, bias=False).double()
    model.weight.data.copy_(w)
    reg = build("regularizer", "srip", power_steps=2, persistent=True)
    values = [reg(model).item() for _ in range(40)]
    assert abs(values[-1] - want) < 1e-3
    assert all(v <= want + 1e-9 for v in values)  # ||D v|| never exceeds sigma_max


def test_srip_vectors_travel_with_the_state_dict() -> None:
    model = nn.Sequential(nn.Linear(30, 8, bias=False)).double()
    reg = build("regularizer", "srip", power_steps=2, persistent=True)
    for _ in range(5):
        reg(model)
    state = reg.state_dict()
    assert set(state) == {"_extra_state"} and set(state["_extra_state"]) == {"0"}
    copy = build("regularizer", "srip", power_steps=2, persistent=True)
    copy.load_state_dict(state)
    assert reg(model).item() == copy(model).item()  # same warm start, same value
    fresh = build("regularizer", "srip", power_steps=2, persistent=True)
    with pytest.raises(ConfigError, match="SRIP state is not a mapping"):
        fresh.load_state_dict({"_extra_state": [1.0]})


def test_srip_wide_weight_gradient_nonzero_with_smaller_gram() -> None:
    # wide W = U diag(s) V^T with all s^2 in (0.2, 1.8): the larger Gram W^T W - I has eigenvalue -1
    # (n - m of them) which dominates, and its top direction is in the null space of W: zero gradient.
    u, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(20, 5, dtype=torch.float64))
    s = torch.sqrt(torch.linspace(0.2, 1.8, 5, dtype=torch.float64))
    w = (u * s) @ v.t()
    w.requires_grad_(True)
    sigma, _ = power_sigma_max(w, steps=30)
    (grad,) = torch.autograd.grad(sigma, w)
    assert sigma.item() == pytest.approx(0.8, abs=1e-3)
    assert grad.norm().item() > 0.1
    # the larger Gram's top singular value is 1 (the -1 eigenvalue) and its power-iteration gradient vanishes
    big = w.t() @ w - torch.eye(20, dtype=torch.float64)
    null = torch.linalg.svd(w.detach()).Vh[5:].t()[:, 0]  # a null-space direction of W
    big_sigma = (big @ null).norm()
    (big_grad,) = torch.autograd.grad(big_sigma, w)
    assert big_sigma.item() == pytest.approx(1.0, abs=1e-9)
    assert big_grad.norm().item() < 1e-9


def test_so_optimisation_drives_w_to_orthogonal() -> None:
    model = nn.Linear(12, 6, bias=False)
    with torch.no_grad():
        model.weight.mul_(3.0)
    reg = build("regularizer", "so")
    before = gram_deviation_sq(model.weight).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        reg(model).backward()
        opt.step()
    after = gram_deviation_sq(model.weight).item()
    svals = torch.linalg.svdvals(model.weight.detach())
    assert after < 1e-3 * before
    torch.testing.assert_close(svals, torch.ones(6), atol=0.02, rtol=0)


def test_layer_selection_patterns_and_ssl_model() -> None:
    ssl = TinySSL()
    reg = build("regularizer", "so")
    assert [n for n, _ in reg.selected(ssl)] == ["backbone.conv", "backbone.fc1", "backbone.fc2"]
    fc = build("regularizer", "so", layers="fc*")
    assert [n for n, _ in fc.selected(ssl)] == ["backbone.fc1", "backbone.fc2"]
    rx = build("regularizer", "so", layers=["re:conv$"], include_projector=True)
    assert [n for n, _ in rx.selected(ssl)] == ["backbone.conv"]
    allp = build("regularizer", "werank", include_projector=True, include_predictor=True)
    names = [n for n, _ in allp.selected(ssl)]
    assert names == [
        "backbone.conv",
        "backbone.fc1",
        "backbone.fc2",
        "projector.0",
        "projector.2",
        "objective.predictor",
    ]
    ll = build("regularizer", "last_layer")
    assert [n for n, _ in ll.selected(ssl)] == ["backbone.fc2"]
    # gradient reaches only the selected layers
    fc(ssl).backward()
    assert ssl.backbone.conv.weight.grad is None and ssl.backbone.fc1.weight.grad is not None


def test_schedule_step_decay_warmup_and_off() -> None:
    from dimcollapse.training.schedules import coefficient_schedule

    options = {"weight": 0.1, "schedule": "step", "milestones": [20, 50, 70],
               "multipliers": [1e-3, 1e-4, 1e-6], "off_epoch": 120, "warmup_epochs": 2}  # fmt: skip
    c = coefficient_schedule(get("regularizer", "so"), options)
    expected = {0: 0.0, 1: 0.05, 2: 0.1, 19.9: 0.1, 20: 1e-4, 55: 1e-5, 70: 1e-7, 119: 1e-7, 120: 0.0}
    for epoch, want in expected.items():
        assert c(epoch) == pytest.approx(want, rel=1e-12, abs=1e-15)
    ld = coefficient_schedule(get("regularizer", "ldreg"), {"warmup_epochs": 3})  # off, not ramped
    assert ld(2.9) == 0.0
    assert ld(3) == pytest.approx(0.01)
    assert coefficient_schedule(get("regularizer", "so"), {})(0.0) == 1e-4  # the class's default weight


def test_bad_input_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown regularizer 'sox'.*so, srip"):
        build("regularizer", "sox")
    with pytest.raises(ConfigError, match=r"matches no weight layer\. Layer names: backbone\.conv, "):
        build("regularizer", "so", layers="layer9.*")(TinySSL())
    with pytest.raises(ConfigError, match="no weight layers"):
        build("regularizer", "srip")(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
    with pytest.raises(ConfigError, match="no weight layers"):
        build("regularizer", "last_layer")(nn.Sequential(nn.ReLU()))
    from dimcollapse.training.schedules import coefficient_schedule

    for name in ("so", "srip", "last_layer", "werank", "ldreg", "minlid", "whitening"):
        with pytest.raises(ConfigError, match=">= 0"):
            coefficient_schedule(get("regularizer", name), {"weight": -1.0})
    with pytest.raises(ConfigError, match="multiplier"):
        coefficient_schedule(
            get("regularizer", "so"), {"schedule": "step", "milestones": [1], "multipliers": [-1e-3]}
        )
    with pytest.raises(ConfigError, match="same non-zero length"):
        coefficient_schedule(
            get("regularizer", "so"), {"schedule": "step", "milestones": [1, 2], "multipliers": [1e-3]}
        )
    with pytest.raises(ConfigError, match=r"not a weight layer.*conv, fc1, fc2"):
        build("regularizer", "last_layer", layer="head")(TinyBackbone())
    with pytest.raises(ConfigError, match="power_steps"):
        build("regularizer", "srip", power_steps=-1)


def test_real_backbone_layers_and_last_layer() -> None:
    net = build("backbone", "small_resnet", in_channels=1)
    names = [n for n, _ in net.weight_layers()]
    so = build("regularizer", "so")
    assert [n for n, _ in so.selected(net)] == names
    want = sum(np_so(m.weight.detach().numpy()) for _, m in net.weight_layers())
    assert so(net).item() == pytest.approx(want, rel=1e-4)
    ll = build("regularizer", "last_layer")
    assert [n for n, _ in ll.selected(net)] == [net.last_layer_name]
    deep = build("regularizer", "srip", layers="layer4.*")
    assert [n for n, _ in deep.selected(net)] == [n for n in names if n.startswith("layer4.")]


def _encoder() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6)
    )


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_last_layer_never_picks_a_head_in_any_layout() -> None:
    """LL's W is the encoder's last layer: lightly-style, named-child and Sequential layouts."""

    class LightlyStyle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.projection_head = _encoder(), _head()

    class NoEncoderName(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.body = nn.Conv2d(1, 4, 3), nn.Linear(4, 6)
            self.projection_head = _head()

    ll = build("regularizer", "last_layer")
    m = LightlyStyle()
    want = ((m.backbone[4].weight @ m.backbone[4].weight.T - torch.eye(6)) ** 2).sum()
    assert ll(m).item() == pytest.approx(want.item(), rel=1e-6)
    n = NoEncoderName()
    want = ((n.body.weight @ n.body.weight.T - torch.eye(6)) ** 2).sum()
    assert build("regularizer", "last_layer")(n).item() == pytest.approx(want.item(), rel=1e-6)
    seq = nn.Sequential(_encoder(), _head())
    with pytest.raises(ConfigError, match="encoder='0'"):
        build("regularizer", "last_layer")(seq)
    named = build("regularizer", "last_layer", encoder="0")
    want = ((seq[0][4].weight @ seq[0][4].weight.T - torch.eye(6)) ** 2).sum()
    assert named(seq).item() == pytest.approx(want.item(), rel=1e-6)


def test_any_head_can_be_included_by_name_or_pattern() -> None:
    class LightlyStyle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.projection_head, self.prediction_head = _encoder(), _head(), _head()

    m = LightlyStyle()
    so = build("regularizer", "so")
    base = {n for n, _ in so.selected(m)}
    assert base == {"backbone.0", "backbone.4"}
    with_proj = build("regularizer", "so", include_projector=True)
    assert {n for n, _ in with_proj.selected(m)} == base | {"projection_head.0", "projection_head.2"}
    with_pred = build("regularizer", "so", include_predictor=True)
    assert {n for n, _ in with_pred.selected(m)} == base | {"prediction_head.0", "prediction_head.2"}
    by_name = build("regularizer", "so", include_projector=["projection_head"])
    assert {n for n, _ in by_name.selected(m)} == base | {"projection_head.0", "projection_head.2"}
    by_pattern = build("regularizer", "so", layers="projection_head.*")
    assert [n for n, _ in by_pattern.selected(m)] == ["projection_head.0", "projection_head.2"]
