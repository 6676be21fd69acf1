"""Golden values of the xkd and mnf-csc loss terms on seeded tiny tensors, each checked against a
hand computation written with plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from xbench_mnf_csc import cosine_triplet, csc_loss
from xbench_xkd import GAMMAS, dino_ce, masked_patch_mse, mmd2, refine_tokens


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_mmd_golden():
    x, y = _randn(4, 3, seed=0) * 0.3, _randn(5, 3, seed=1) * 0.3 + 0.2
    value = float(mmd2(x, y))

    def k(a, b):
        d2 = sum((p - q) ** 2 for p, q in zip(a, b))
        return sum(math.exp(-g * d2) for g in GAMMAS)

    xs, ys = x.tolist(), y.tolist()
    mean = lambda A, B: sum(k(a, b) for a in A for b in B) / (len(A) * len(B))
    expected = mean(xs, xs) + mean(ys, ys) - 2 * mean(xs, ys)
    assert value == pytest.approx(expected, rel=1e-4)
    assert value == pytest.approx(1.7949104, rel=1e-4)
    assert float(mmd2(x, x.clone())) == pytest.approx(0.0, abs=1e-5)


def test_dino_cross_entropy_with_centring_golden():
    s1, s2, t = _randn(3, 4, seed=2), _randn(3, 4, seed=3), _randn(3, 4, seed=4)
    center = torch.tensor([[0.1, -0.2, 0.0, 0.3]])
    value = float(dino_ce([s1, s2], t, center, 0.1, 0.07))
    expected = 0.0
    for s in (s1, s2):
        for i in range(3):
            pt = [math.exp((t[i, c] - center[0, c]).item() / 0.07) for c in range(4)]
            pt = [p / sum(pt) for p in pt]
            z = [v / 0.1 for v in s[i].tolist()]
            log_norm = math.log(sum(math.exp(v) for v in z))
            expected -= sum(p * (v - log_norm) for p, v in zip(pt, z)) / 3
    expected /= 2
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(4.9534249, rel=1e-5)
    # centring matters: subtracting a different centre changes the target
    assert float(dino_ce([s1, s2], t, torch.zeros(1, 4), 0.1, 0.07)) != pytest.approx(value)


def test_masked_patch_mse_golden():
    pred, target = _randn(2, 3, 4, seed=5), _randn(2, 3, 4, seed=6)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    value = float(masked_patch_mse(pred, target, mask))
    total, n = 0.0, 0
    for i in range(2):
        for j in range(3):
            if not mask[i, j]:
                continue
            row = target[i, j].tolist()
            mu = sum(row) / 4
            var = sum((v - mu) ** 2 for v in row) / 3  # unbiased, as torch.var
            norm = [(v - mu) / math.sqrt(var + 1e-6) for v in row]
            total += sum((p - q) ** 2 for p, q in zip(pred[i, j].tolist(), norm)) / 4
            n += 1
    assert value == pytest.approx(total / n, rel=1e-5)
    assert value == pytest.approx(1.4679785, rel=1e-5)


def test_refine_tokens_golden():
    tok, other = _randn(1, 3, 4, seed=7), _randn(1, 5, 4, seed=8)
    value = refine_tokens(tok, other, heads=2)[0]
    # A[h, j] = |group h of token j| / sum_j; w_j = mean_h A[h, j] * mean(A_other[h]) / mean(A[h])
    rows = tok[0].tolist()
    att = [[math.hypot(*r[2 * h: 2 * h + 2]) for r in rows] for h in range(2)]
    att = [[a / sum(hr) for a in hr] for hr in att]
    ratio = (1 / 5) / (1 / 3)  # attention normalised over tokens has mean 1/N
    w = [sum(att[h][j] * ratio for h in range(2)) / 2 for j in range(3)]
    pooled = [sum(w[j] * rows[j][d] for j in range(3)) / 3 for d in range(4)]
    plain = [sum(rows[j][d] for j in range(3)) / 3 for d in range(4)]
    c = math.sqrt(sum(v * v for v in plain)) / math.sqrt(sum(v * v for v in pooled))
    assert value.tolist() == pytest.approx([c * v for v in pooled], rel=1e-5)
    assert float(value.norm()) == pytest.approx(math.sqrt(sum(v * v for v in plain)), rel=1e-5)
    assert value.tolist() == pytest.approx([0.6588029, -0.5040645, 0.2221660, 0.1791326], rel=1e-5)


def test_cosine_triplet_golden():
    a, p, n = _randn(4, 3, seed=9), _randn(4, 3, seed=10), _randn(4, 3, seed=11)
    value = float(cosine_triplet(a, p, n, 0.2))
    expected = sum(max(0.0, _cos(a[i].tolist(), n[i].tolist()) - _cos(a[i].tolist(), p[i].tolist()) + 0.2)
                   for i in range(4)) / 4
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(1.0027524, rel=1e-5)


def test_csc_loss_per_pair_temperature_golden():
    fv, fg, fa = _randn(4, 3, seed=12), _randn(4, 3, seed=13), _randn(4, 3, seed=14)
    y = torch.tensor([0, 1, 0, 1])
    mask = torch.tensor([True, True, True, False])
    value = float(csc_loss(fv, fg, fa, y, mask, 0.07, 0.01))
    v, g, a = fv.tolist(), fg.tolist(), fa.tolist()
    total, anchors = 0.0, 0
    for i in range(4):
        if not mask[i]:
            continue
        tau = [max(_cos(v[i], a[k]) + 0.07, 0.01) for k in range(4)]
        logits = [_cos(v[i], g[k]) / tau[k] for k in range(4)]
        log_norm = math.log(sum(math.exp(z) for z in logits))
        pos = [j for j in range(4) if y[j] == y[i] and mask[j]]
        total += -sum(logits[j] - log_norm for j in pos) / len(pos)
        anchors += 1
    assert value == pytest.approx(total / anchors, rel=1e-5)
    assert value == pytest.approx(0.8357666, rel=1e-5)


def test_csc_temperature_is_clamped_and_stops_gradient():
    fv = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    fa = torch.tensor([[-1.0, 0.0], [0.0, -1.0]], requires_grad=True)  # cos = -1: tau would be -0.93
    fg = torch.tensor([[1.0, 0.1], [0.1, 1.0]])
    value = csc_loss(fv, fg, fa, torch.tensor([0, 1]), None, 0.07, 0.01)
    assert math.isfinite(float(value.detach()))
    value.backward()
    assert fa.grad is None or float(fa.grad.abs().sum()) == 0.0  # tau is a stop-gradient
    # every pair has cos(v_i, a_k) = 0 or -1, so tau = 0.07 or the clamp 0.01 (never -0.93)
    cos_vg = F.cosine_similarity(fv.detach()[:, None], fg[None], dim=-1)
    tau = torch.tensor([[0.01, 0.07], [0.07, 0.01]])
    expected = -torch.log_softmax(cos_vg / tau, dim=1).diagonal().mean()
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-5)
