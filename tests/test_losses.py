"""Golden values of every loss on seeded tiny tensors, each checked against a hand computation."""

from __future__ import annotations

import pytest
import torch

from xbench.builtin import MaskedCrossEntropy


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)


def test_masked_cross_entropy_golden():
    s, _ = _logits()
    y = torch.tensor([0, 3, 1])
    mask = torch.tensor([True, False, True])
    nll = [-(s[i, y[i]] - s[i].logsumexp(0)) for i in range(3)]
    assert float(MaskedCrossEntropy()(s, y, mask)) == pytest.approx(float((nll[0] + nll[2]) / 2), rel=1e-6)
    assert float(MaskedCrossEntropy()(s, y, mask)) == pytest.approx(0.9579787, rel=1e-5)
    # a batch with no labelled example contributes zero, not NaN
    assert float(MaskedCrossEntropy()(s, y, torch.zeros(3, dtype=torch.bool))) == 0.0
