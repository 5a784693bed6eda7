"""Evaluation at device speed: the tiled kNN (float32 / float16 bank) against a brute-force numpy
reference, and the papers' SGD probe inside a run's evaluation (augmented crops drawn every epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.data.views import ViewAugment
from dimcollapse.errors import InputError
from dimcollapse.objectives.simclr import NTXent
from dimcollapse.training.evaluation import knn_accuracies
from dimcollapse.training.knn_eval import device_knn_accuracies, knn_neighbours, knn_vote_scores, prepare_bank


def _brute(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, k: int, c: int, t: float) -> np.ndarray:
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    scores = np.zeros((len(xte), c))
    for i, q in enumerate(b):
        sim = a @ q
        for j in np.argsort(-sim, kind="stable")[:k]:
            scores[i, ytr[j]] += np.exp(sim[j] / t)
    return scores


def test_tiled_knn_matches_brute_force_and_the_untiled_search() -> None:
    """Class scores equal numpy's brute force for any tile and block size (running top-k over tiles)."""
    rng = np.random.default_rng(0)
    xtr, ytr, xte = rng.normal(size=(300, 7)), rng.integers(0, 6, 300), rng.normal(size=(50, 7))
    expected = _brute(xtr, ytr, xte, 20, 6, 0.07)
    bank, rows = prepare_bank(torch.tensor(xtr))
    for block, tile in ((16, 7), (64, 300), (1024, None)):
        sims, idx = knn_neighbours(torch.tensor(xte), bank, rows, 20, block=block, tile=tile)
        assert bool((sims[:, :-1] >= sims[:, 1:]).all())  # nearest first
        got = knn_vote_scores(sims, idx, torch.tensor(ytr), (20,), 6, 0.07)[20].double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4)  # exp(s / 0.07): float32 s to ~1e-6 -> 1e-4


def test_device_knn_accuracies_equal_the_cpu_path_and_float16_is_close() -> None:
    """Same top-1 / top-5 as the exact CPU kNN; a float16 bank changes similarities by at most its
    rounding (2^-11 relative per coordinate of unit vectors), so the accuracies move by a few rows at most."""
    g = torch.Generator().manual_seed(1)
    means = torch.randn(10, 32, generator=g)
    y = torch.randint(0, 10, (1200,), generator=g)
    x = means[y] * 0.4 + torch.randn(1200, 32, generator=g)
    xtr, ytr, xte, yte = x[:1000], y[:1000], x[1000:], y[1000:]
    ref = knn_accuracies(xtr, ytr, xte, yte, (20, 200), 0.07, 10)
    got = device_knn_accuracies(xtr, ytr, xte, yte, (20, 200), 0.07, 10)
    assert {k: tuple(round(a * 200) for a in v) for k, v in got.items()} == {  # counts of the 200 rows
        k: tuple(round(a * 200) for a in v) for k, v in ref.items()
    }
    half = device_knn_accuracies(xtr, ytr, xte, yte, (20, 200), 0.07, 10, storage="float16")
    for k in (20, 200):
        assert abs(half[k][0] - ref[k][0]) <= 3 / 200 and abs(half[k][1] - ref[k][1]) <= 3 / 200
    with pytest.raises(InputError, match="kNN storage"):
        device_knn_accuracies(xtr, ytr, xte, yte, (20,), 0.07, 10, storage="int8")


class _Model(nn.Module):
    """encode(x) -> (r, z): r the image's mean and spread per channel (crop-invariant for flat images)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = 0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        r = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1) * self.scale
        return r, r


class _Module(nn.Module):
    """A stand-in for SSLModule with the attributes the evaluation uses (views, model, encode_eval)."""

    def __init__(self) -> None:
        super().__init__()
        self.views = ViewAugment("none", image_size=8, channels=1, mean=0.5, std=0.25)
        self.model = _Model()
        self.objective = NTXent()  # embedding_slice() is None: no d0 accuracies

    def encode_eval(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(self.views.eval_transform(x))


def test_sgd_probe_in_the_evaluation_uses_new_crops_every_epoch() -> None:
    """linear_probe_kind = sgd: accuracy keys linear_sgd_*, the probe named in the record, and the
    training images encoded once per epoch through random crops (plus once for the centre crops)."""
    from dimcollapse.training.evaluate_run import EvalData, EvalSettings, evaluate_module
    from dimcollapse.training.probe_sgd import SGDProbeSettings

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 3, (n,), generator=g)
        x = torch.tensor([40, 128, 220])[y].view(-1, 1, 1, 1) + torch.randint(
            -10, 11, (n, 1, 8, 8), generator=g
        )
        return x.clamp(0, 255).to(torch.uint8), y

    (xtr, ytr), (xte, yte) = split(96), split(48)
    train = [(xtr[:48], ytr[:48]), (xtr[48:], ytr[48:])]
    data = EvalData(train, [(xte, yte)], num_classes=3)
    probe = SGDProbeSettings(epochs=5, batch_size=16)
    settings = EvalSettings((5,), 0.07, True, 5, 0.0, 5, "blobs", linear_probe_kind="sgd", sgd_probe=probe)
    module = _Module()
    rec = evaluate_module(module, data, settings)
    m = rec.fields()
    assert m["linear_sgd_top1"] == 1.0 and "linear_top1" not in m
    assert "SGD" in m["eval_linear_probe"] and "random-resized crops" in m["eval_linear_probe"]
    assert module.model.calls == len(train) + 1 + probe.epochs * len(train)
    lbfgs = EvalSettings((5,), 0.07, True, 5, 0.0, 5, "blobs")
    assert (
        "L-BFGS (fast CPU evaluation)"
        in evaluate_module(_Module(), data, lbfgs).fields()["eval_linear_probe"]
    )


def test_probe_dtype_and_tolerance_reach_the_record_and_bad_values_are_refused() -> None:
    """eval.probe_dtype / linear_probe_tolerance go from the config to the L-BFGS probe; the record names
    solver, dtype and the iterations taken (at most the configured number); bad values are one error."""
    from dimcollapse.errors import ConfigError
    from dimcollapse.training.config import load_config
    from dimcollapse.training.evaluate_run import EvalData, EvalSettings, evaluate_module

    cfg = load_config(None, ["eval.probe_dtype=float64", "eval.linear_probe_epochs=7"])
    settings = EvalSettings.from_config(cfg)
    assert settings.lbfgs.dtype == "float64" and settings.lbfgs.iterations == 7
    assert EvalSettings.from_config(load_config(None)).lbfgs.dtype == "float32"  # the default
    for bad in ("eval.probe_dtype=float16", "eval.linear_probe_tolerance=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [bad])
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    x = torch.tensor([40, 128, 220])[y].view(-1, 1, 1, 1) + torch.randint(-30, 31, (90, 1, 8, 8), generator=g)
    batches = [(x[:60].clamp(0, 255).to(torch.uint8), y[:60])]
    data = EvalData(batches, [(x[60:].clamp(0, 255).to(torch.uint8), y[60:])], num_classes=3)
    m = evaluate_module(_Module(), data, settings).fields()
    assert m["eval_linear_probe_solver"] == "lbfgs" and m["eval_linear_probe_dtype"] == "float64"
    assert 1 <= m["eval_linear_probe_iterations"] <= 7 and m["eval_linear_probe_evaluations"] >= 1
    assert "float64, up to 7 iterations" in m["eval_linear_probe"]
