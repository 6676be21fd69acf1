"""DIST against a loop-by-loop numpy computation of the paper's formula, its behaviour at the
limits, and xbench's conformance kit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from xbench_dist import DISTLoss


def reference(zs: np.ndarray, zt: np.ndarray, tau: float, beta: float, gamma: float) -> float:
    def softmax(z):
        e = np.exp(z / tau - (z / tau).max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def pearson(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (np.sqrt((a * a).sum()) * np.sqrt((b * b).sum()) + 1e-8))

    ys, yt = softmax(zs), softmax(zt)
    inter = np.mean([1 - pearson(ys[i], yt[i]) for i in range(ys.shape[0])])
    intra = np.mean([1 - pearson(ys[:, j], yt[:, j]) for j in range(ys.shape[1])])
    return tau ** 2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize("tau, beta, gamma", [(1.0, 1.0, 1.0), (4.0, 2.0, 2.0), (2.0, 0.5, 3.0)])
def test_golden_values(tau, beta, gamma):
    g = np.random.default_rng(0)
    zs, zt = g.normal(size=(6, 5)), g.normal(size=(6, 5)) * 3
    value = DISTLoss(tau, beta, gamma)(torch.tensor(zs), torch.tensor(zt)).item()
    assert value == pytest.approx(reference(zs, zt, tau, beta, gamma), rel=1e-5)


def test_limits():
    z = torch.randn(8, 10)
    # the same logits: every correlation is 1, the loss 0
    assert DISTLoss()(z, z).item() == pytest.approx(0.0, abs=1e-6)
    # softmax is shift-invariant: logits shifted by a constant give the same probabilities
    assert DISTLoss()(z, z + 3.0).item() == pytest.approx(0.0, abs=1e-6)
    # reversed relations cost the most: correlation -1 in every row and column gives 2 (beta + gamma)
    assert DISTLoss()(z, -z).item() > 1.0


def test_gradient_reaches_the_student_only():
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6, requires_grad=True)
    DISTLoss()(s, t.detach()).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None


def test_conformance(xbench_check):
    # builds, runs on every task it declares, obeys the budget, selects on val only, never
    # shows the student a privileged modality, leaves the frozen teacher unchanged, deterministic
    results = xbench_check(plugin="dist")
    assert results and all(r.ok for r in results)
