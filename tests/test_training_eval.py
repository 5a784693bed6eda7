"""Weighted kNN against a brute-force numpy computation; linear probe; top-k; LARS and the LR schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives.simclr import NTXent
from dimcollapse.training.evaluation import knn_accuracy, knn_predict_scores, linear_probe, topk_accuracy
from dimcollapse.training.optim import LARS, param_groups, warmup_cosine


def brute_force_knn(train_x, train_y, test_x, k, c, t):
    """Independent numpy weighted kNN: cosine similarity, k largest, votes exp(sim / t)."""
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    scores = np.zeros((len(test_x), c))
    for i, q in enumerate(b):
        sim = a @ q
        nn_idx = np.argsort(-sim, kind="stable")[:k]
        for j in nn_idx:
            scores[i, train_y[j]] += np.exp(sim[j] / t)
    return scores


def test_knn_scores_match_brute_force_numpy() -> None:
    rng = np.random.default_rng(0)
    xtr, ytr = rng.normal(size=(300, 7)), rng.integers(0, 6, 300)
    xte = rng.normal(size=(50, 7))
    expected = brute_force_knn(xtr, ytr, xte, 20, 6, 0.07)
    got = knn_predict_scores(
        torch.tensor(xtr, dtype=torch.float64), torch.tensor(ytr), torch.tensor(xte, dtype=torch.float64),
        k=20, num_classes=6, temperature=0.07, block_size=16,
    ).double().numpy()  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    yte = rng.integers(0, 6, 50)
    top1, top5 = knn_accuracy(
        torch.tensor(xtr), torch.tensor(ytr), torch.tensor(xte), torch.tensor(yte), k=20
    )
    assert top1 == pytest.approx(np.mean(expected.argmax(1) == yte))
    top5_np = np.mean([yte[i] in np.argsort(-expected[i])[:5] for i in range(50)])
    assert top5 == pytest.approx(top5_np)


def test_knn_separated_clusters_and_k_larger_than_bank() -> None:
    centres = torch.eye(4) * 10
    y = torch.arange(4).repeat_interleave(5)
    x = centres[y] + 0.1 * torch.randn(20, 4)
    top1, _ = knn_accuracy(x, y, x + 0.05 * torch.randn(20, 4), y, k=3)
    assert top1 == 1.0
    top1_all, _ = knn_accuracy(x, y, x, y, k=1000)  # k clipped to the bank, still weighted by similarity
    assert top1_all == 1.0


def test_topk_accuracy_hand_case() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(scores, torch.tensor([2, 0, 0]), ks=(1, 2))
    assert acc[1] == pytest.approx(1 / 3)
    assert acc[2] == pytest.approx(2 / 3)


def test_linear_probe_separable_data_near_perfect_and_chance_on_noise() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(12, 5, generator=g)
    x = torch.randn(600, 12, generator=g) * 3 + 7  # standardisation must handle the offset and scale
    y = (x @ w).argmax(1)
    top1, top5 = linear_probe(x[:400], y[:400], x[400:], y[400:], num_classes=5, epochs=200)
    assert top1 >= 0.97
    assert top5 == 1.0
    noise_y = torch.randint(0, 5, (600,), generator=g)
    chance, _ = linear_probe(x[:400], noise_y[:400], x[400:], noise_y[400:], num_classes=5, epochs=50)
    assert chance < 0.4


def test_eval_rejects_nan_and_shape_mismatch() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(InputError, match="NaN"):
        knn_accuracy(
            x.masked_fill(x > 1, float("nan")), torch.zeros(10, dtype=torch.long), x, torch.zeros(10)
        )
    with pytest.raises(InputError, match="labels"):
        linear_probe(x, torch.zeros(9, dtype=torch.long), x, torch.zeros(10, dtype=torch.long))


def test_lars_step_matches_hand_computation() -> None:
    w0 = torch.tensor([[3.0, 4.0]])
    g = torch.tensor([[0.6, 0.8]])
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(w0)
        layer.bias.fill_(1.0)
    opt = LARS(param_groups(layer, weight_decay=0.1), lr=0.5, momentum=0.9, eta=0.02)
    layer.weight.grad, layer.bias.grad = g.clone(), torch.tensor([2.0])
    opt.step()
    trust = 0.02 * 5.0 / (1.0 + 0.1 * 5.0)
    expected_w = w0 - 0.5 * trust * (g + 0.1 * w0)
    torch.testing.assert_close(layer.weight.detach(), expected_w)
    # bias: plain step, no decay, no trust ratio
    assert float(layer.bias.detach()) == pytest.approx(1.0 - 0.5 * 2.0)
    layer.weight.grad, layer.bias.grad = g.clone(), torch.tensor([2.0])
    w1 = layer.weight.detach().clone()
    opt.step()  # momentum: v = 0.9 v + u
    trust1 = 0.02 * w1.norm() / (1.0 + 0.1 * w1.norm())
    v = 0.9 * trust * (g + 0.1 * w0) + trust1 * (g + 0.1 * w1)
    torch.testing.assert_close(layer.weight.detach(), w1 - 0.5 * v)


def _lars_reference(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: dict[int, torch.Tensor],
                    lr: float, wd: float, exclude: bool) -> None:  # fmt: skip
    """One LARS step written out tensor by tensor from the formula (in place on ``params``, ``bufs``)."""
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        if exclude:
            u = g.clone()
        else:
            wn, gn = float(w.norm()), float(g.norm())
            trust = 0.02 * wn / (gn + wd * wn + 1e-8) if wn > 0 and gn > 0 else 1.0
            u = trust * (g + wd * w)
        bufs[i] = u if i not in bufs else 0.9 * bufs[i] + u
        w -= lr * bufs[i]


def test_fused_lars_matches_per_tensor_reference_over_steps() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Linear(7, 3, bias=False)).double()
    with torch.no_grad():
        net[2].weight[0].zero_()  # a row of zeros does not zero the norm; a zero tensor below does
    extra = nn.Parameter(torch.zeros(4, dtype=torch.float64))  # ||w|| = 0: trust ratio 1
    groups = param_groups(net, weight_decay=0.05)
    groups[0]["params"].append(extra)
    opt = LARS(groups, lr=0.3, momentum=0.9, eta=0.02)
    ref = [[p.detach().clone() for p in g["params"]] for g in groups]
    bufs: list[dict[int, torch.Tensor]] = [{}, {}]
    x = torch.randn(16, 5, dtype=torch.float64)
    for step in range(4):
        opt.zero_grad(set_to_none=True)
        (net(x).pow(2).mean() + (extra - 1.0).pow(2).sum()).backward()
        if step == 1:
            net[1].bias.grad = None  # no gradient this step: the tensor and its buffer are left alone
        for gi, group in enumerate(groups):
            live = [i for i, p in enumerate(group["params"]) if p.grad is not None]
            sub = {j: bufs[gi][i] for j, i in enumerate(live) if i in bufs[gi]}
            ws = [ref[gi][i] for i in live]
            _lars_reference(ws, [group["params"][i].grad for i in live], sub, 0.3, group["weight_decay"],
                            exclude=bool(group.get("lars_exclude")))  # fmt: skip
            bufs[gi].update({i: sub[j] for j, i in enumerate(live)})
        opt.step()
        for gi, group in enumerate(groups):
            for p, want in zip(group["params"], ref[gi], strict=True):
                torch.testing.assert_close(p.detach(), want, rtol=1e-12, atol=1e-14)


def test_no_weight_decay_on_biases_and_norms() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    groups = param_groups(net, 0.5)
    decay_ids = {id(p) for p in groups[0]["params"]}
    assert decay_ids == {id(net[0].weight), id(net[2].weight)}
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 3
    with pytest.raises(ConfigError):
        LARS(net.parameters(), lr=-1.0)


def test_warmup_cosine_schedule_values() -> None:
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(35, 10, 110, 0.2) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_eval_cap_takes_a_random_subset_not_the_first_rows() -> None:
    """A class-sorted dataset capped by eval.max_train must still contain every class."""
    from dimcollapse.training.datamodule import _random_rows

    rows = torch.arange(1000)  # think: 10 classes stored class by class, 100 rows each
    kept = _random_rows(rows, 200, seed=5)
    assert kept.numel() == 200 and torch.equal(kept, kept.sort().values)
    assert len(set((kept // 100).tolist())) == 10  # the first 200 rows would hold only 2 classes
    assert torch.equal(_random_rows(rows, 200, seed=5), kept)  # seeded
    assert torch.equal(_random_rows(rows, None, seed=5), rows)


class _Encoder(nn.Module):
    """A stand-in for SSLModule: encode_eval(x) -> (r, z) with r = flattened images, z = 2 r."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.objective = NTXent()  # the module's objective: embedding_slice() is None, no d0 accuracies

    def encode_eval(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = x.flatten(1).float() * self.scale
        return r, 2 * r


def test_evaluate_module_needs_no_config_and_no_datamodule() -> None:
    """The evaluation stage takes batches and settings only; its kNN equals the brute-force reference."""
    from dimcollapse.diagnostics import effective_rank
    from dimcollapse.training.evaluate_run import EvalData, EvalSettings, evaluate_module

    rng = np.random.default_rng(3)
    centres = rng.integers(0, 255, size=(3, 1, 4, 4))

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, 3, n)
        x = np.clip(centres[y] + rng.integers(-20, 21, size=(n, 1, 4, 4)), 0, 255).astype(np.uint8)
        return torch.from_numpy(x), torch.from_numpy(y)

    (xtr, ytr), (xte, yte) = split(60), split(30)
    data = EvalData([(xtr[:32], ytr[:32]), (xtr[32:], ytr[32:])], [(xte, yte)], num_classes=3)
    settings = EvalSettings((5,), 0.07, False, 0, 0.0, 5, "blobs")
    module = _Encoder().train()
    rec = evaluate_module(module, data, settings)
    m = rec.fields()
    r = rec.output("r")
    assert r is not None and (r.n, r.d) == (30, 16) and r.get("erank") == m["erank_r"]
    assert module.training  # the caller's mode is restored
    scores = brute_force_knn(
        xtr.flatten(1).double().numpy(), ytr.numpy(), xte.flatten(1).double().numpy(), 5, 3, 0.07
    )
    assert m["knn_k5_top1"] == pytest.approx(float(np.mean(scores.argmax(1) == yte.numpy())))
    eig = np.linalg.eigvalsh(np.cov(xte.flatten(1).double().numpy().T, bias=True))[::-1]
    assert m["erank_r"] == pytest.approx(effective_rank(eig), rel=1e-6)
    assert "linear_top1" not in m and m["eval_linear_probe_epochs"] == 0
    assert (m["eval_train_size"], m["eval_test_size"], m["eval_dataset"]) == (60, 30, "blobs")
