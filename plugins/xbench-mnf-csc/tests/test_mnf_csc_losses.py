"""Golden values of MNF+CSC's losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from xbench_mnf_csc import cosine_triplet, csc_loss

from xbench.testing import seeded_randn as randn


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_cosine_triplet_golden():
    a, p, n = randn(4, 3, seed=9), randn(4, 3, seed=10), randn(4, 3, seed=11)
    value = float(cosine_triplet(a, p, n, 0.2))
    expected = sum(max(0.0, _cos(a[i].tolist(), n[i].tolist()) - _cos(a[i].tolist(), p[i].tolist()) + 0.2)
                   for i in range(4)) / 4
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(1.0027524, rel=1e-5)


def test_csc_loss_per_pair_temperature_golden():
    fv, fg, fa = randn(4, 3, seed=12), randn(4, 3, seed=13), randn(4, 3, seed=14)
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
