"""Loss functions more than one plugin uses (part of the public API plugins may import).

``mmd2`` is the multi-kernel maximum mean discrepancy of Gretton et al. (2012) with the bandwidths
of Long et al. (2015): the ``mmd`` baseline aligns student and teacher features with it, and XKD
aligns the two modalities' features with it."""

from __future__ import annotations

import torch

#: the kernel bandwidths (gamma of exp(-gamma ||a - b||^2)) of the multi-kernel MMD
GAMMAS = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)


def mmd2(x: torch.Tensor, y: torch.Tensor, gammas: tuple[float, ...] | None = None) -> torch.Tensor:
    """Biased estimate of the squared MMD between samples x (n, d) and y (m, d) under the sum of
    Gaussian kernels exp(-gamma ||a - b||^2)."""
    gammas = GAMMAS if gammas is None else gammas

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-g * d2) for g in gammas)

    x, y = x.float(), y.float()
    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()
