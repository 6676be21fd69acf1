"""Golden values of the xkd and mnf-csc loss terms on seeded tiny tensors, each checked against a
hand computation written with plain Python loops."""

from __future__ import annotations

import math

import pytest
from xbench_xkd import GAMMAS, mmd2

from xbench.testing import seeded_randn as randn


def test_mmd_golden():
    x, y = randn(4, 3, seed=0) * 0.3, randn(5, 3, seed=1) * 0.3 + 0.2
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


