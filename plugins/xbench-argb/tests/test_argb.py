"""Golden values of the augmented-RGB method's losses (atomic contrast, GCR, ABS)."""

from __future__ import annotations

import math

import pytest
import torch
from xbench_argb import ABSOptions, AtomicContrast, AtomicOptions, BoundarySaliency, relation_loss

from xbench.testing import seeded_randn as randn


def test_atomic_contrast_golden():
    loss = AtomicContrast(AtomicOptions(tau=0.5, dim=3), {"student": 3, "teacher": 3})
    with torch.no_grad():  # identity projections, so the hand computation needs no weights
        for lin in (loss.student, loss.teacher):
            lin.weight.copy_(torch.eye(3))
            lin.bias.zero_()
    s, t = randn(1, 3, 3, seed=4), randn(1, 3, 3, seed=5)
    value = float(loss(s, t).detach())

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    su, tu = [unit(r) for r in s[0].tolist()], [unit(r) for r in t[0].tolist()]
    total = 0.0
    for i in range(3):
        z = [sum(a * b for a, b in zip(su[i], tu[j])) / 0.5 for j in range(3)]
        total -= z[i] - math.log(sum(math.exp(x) for x in z))
    assert value == pytest.approx(total / 3, rel=1e-5)
    assert value == pytest.approx(1.1723326, rel=1e-5)


def test_gcr_and_abs_golden():
    s, t = randn(1, 4, 3, seed=6), randn(1, 4, 3, seed=7)

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    def gram(f):
        u = [unit(r) for r in f[0].tolist()]
        return [[sum(a * b for a, b in zip(u[i], u[j])) for j in range(4)] for i in range(4)]

    gs, gt = gram(s), gram(t)
    # summed over each snippet's 4 relations, mean over the 4 snippets
    expected = sum((gs[i][j] - gt[i][j]) ** 2 for i in range(4) for j in range(4)) / 4
    assert float(relation_loss(s, t)) == pytest.approx(expected, rel=1e-5)
    assert float(relation_loss(s, t)) == pytest.approx(1.9952273, rel=1e-5)

    def curve(f):
        rows = f[0].tolist()
        d = [sum(abs(a - b) for a, b in zip(rows[k + 1], rows[k])) / 3 for k in range(3)]
        m = sum(d) / 3
        z = [x / m for x in d]
        norm = math.log(sum(math.exp(x) for x in z))
        return [x - norm for x in z]

    ls, lt = curve(s), curve(t)
    kl = sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
    assert float(BoundarySaliency(ABSOptions())(s, t)) == pytest.approx(kl, rel=1e-5)
    assert float(BoundarySaliency(ABSOptions())(s, t)) == pytest.approx(0.1927731, rel=1e-5)
