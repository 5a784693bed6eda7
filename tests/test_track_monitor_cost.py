"""The monitor's cost: weight spectra from the float64 Gram on the weights' device (exact enough for the
erank on ResNet-shaped weights, low-rank ones included) and the time budget that keeps its share of the
training time bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse import Tracker
from dimcollapse.diagnostics.rank import effective_rank
from dimcollapse.diagnostics.weights import singular_values
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.track.budget import TimeBudget


def _np_erank(w: torch.Tensor) -> float:
    sv = np.linalg.svd(w.double().numpy(), compute_uv=False)
    return effective_rank(sv)


@pytest.mark.parametrize(
    ("shape", "rank"),
    [
        ((512, 4608), None),  # ResNet-18/50 layer4 3x3 conv, C_out x C_in*9
        ((512, 4608), 2),  # the same, collapsed to 2 directions
        ((2048, 512), 8),  # ResNet-50 1x1 expansion (taller than wide), low rank
        ((256, 2304), None),  # ResNet layer3 3x3 conv
        ((64, 147), None),  # the 7x7 stem
    ],
)
def test_gram_singular_values_keep_the_erank_of_the_float64_svd(
    shape: tuple[int, int], rank: int | None
) -> None:
    torch.manual_seed(0)
    if rank is None:
        w = torch.randn(*shape) * (2.0 / shape[1]) ** 0.5
    else:
        w = torch.randn(shape[0], rank) @ torch.randn(rank, shape[1]) * 0.01
    sv = singular_values(w)
    ref = np.linalg.svd(w.double().numpy(), compute_uv=False)
    # s_i = sqrt(lambda_i(W W^T)): a float64 Gram's eigenvalue error is ~ n eps64 s_max^2, so a singular
    # value at the noise floor is off by ~ sqrt(n eps64) s_max; the erank moves by far less than 1e-4
    assert effective_rank(sv) == pytest.approx(effective_rank(ref), abs=1e-4)
    assert sv[0] == pytest.approx(ref[0], rel=1e-12)
    assert sv.shape == (min(shape),) and np.all(np.diff(sv) <= 0)
    big = ref > 1e-6 * ref[0]
    np.testing.assert_allclose(sv[big], ref[big], rtol=1e-6)


def test_singular_values_of_a_nan_weight_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="NaN or Inf"):
        singular_values(torch.full((3, 4), float("nan")))


def test_time_budget_skips_what_would_exceed_the_share() -> None:
    b = TimeBudget(0.1)
    b.begin(now=0.0)
    assert b.allows(now=0.0)  # the first measurement always runs (the baseline)
    b.charge(1.0)
    assert not b.allows(now=5.0)  # 1 s spent + 1 s next > 0.1 x (5 - 1) s of training
    assert b.allows(now=21.0)  # 2 <= 0.1 x 20
    b.charge(1.0)
    assert b.skipped == 1 and b.share(now=22.0) == pytest.approx(2.0 / 20.0)
    assert TimeBudget(None).allows(now=0.0)
    with pytest.raises(ConfigError, match="max_share"):
        TimeBudget(0.0)
    with pytest.raises(ConfigError, match="max_share"):
        TimeBudget(True)


def test_tracker_with_a_budget_measures_less_often_than_every_step() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    tracker = Tracker(model, torch.randn(64, 16), every=1, lid_k=5, max_share=0.05)
    for step in range(1, 41):  # a training step far cheaper than a measurement
        model(torch.randn(8, 16)).sum().backward()
        tracker.step(step)
    tracker.close()
    summary = tracker.summary()
    steps = [h["step"] for h in summary["history"]]
    assert steps[0] == 1 and steps[-1] == 40  # the baseline and the final state always
    assert len(steps) < 40 and 40 - len(steps) <= summary["skipped"] <= 41 - len(steps)  # 40: maybe forced
    assert summary["max_share"] == 0.05 and summary["time_share"] > 0
