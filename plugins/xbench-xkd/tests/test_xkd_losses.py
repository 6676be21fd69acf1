"""Golden values of XKD's losses."""

from __future__ import annotations

import math

import pytest
import torch
from xbench_xkd import dino_ce, masked_patch_mse, refine_tokens

from xbench.testing import seeded_randn as randn


def test_dino_cross_entropy_with_centring_golden():
    s1, s2, t = randn(3, 4, seed=2), randn(3, 4, seed=3), randn(3, 4, seed=4)
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
    pred, target = randn(2, 3, 4, seed=5), randn(2, 3, 4, seed=6)
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
    tok, other = randn(1, 3, 4, seed=7), randn(1, 5, 4, seed=8)
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
