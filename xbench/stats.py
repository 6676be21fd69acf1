"""Statistics of a leaderboard cell: runs of one configuration over seeds, and the same seeds of
the ``student`` baseline.

Seeds are few (3-5) and seed noise on synth is 3-4 points, so every interval comes from the runs
themselves: a percentile bootstrap of the mean, and for a method against the baseline the paired
differences per seed (same seed = same data order and student init) with a paired-bootstrap
interval of their mean. A gain is marked significant when that interval excludes zero. The exact
two-sided sign-flip (randomisation) p-value is reported beside it: it makes no assumption, but
cannot go below 2 / 2^n (0.0625 with 5 seeds), so with few seeds it is the more cautious reading.
Resampling is seeded: the same runs always give the same table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import scipy.stats

#: bootstrap resamples; fixed so tables are reproducible
RESAMPLES = 10_000


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, count and a 95% percentile-bootstrap interval of the mean."""

    mean: float
    std: float
    n: int
    low: float
    high: float


@dataclass(frozen=True)
class Paired:
    """A method against the baseline on the seeds both have: the mean of the per-seed differences,
    its 95% paired-bootstrap interval, whether that interval excludes zero (``significant``), and
    the exact two-sided sign-flip p-value."""

    diff: float
    low: float
    high: float
    p: float
    n: int
    significant: bool


def _bootstrap_means(values: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(RESAMPLES, len(values)))
    return values[idx].mean(axis=1)


def summarize(values: list[float], seed: int = 0) -> Summary:
    """One cell's runs -> :class:`Summary` (a single run: std 0 and a zero-width interval)."""
    if not values:
        raise ValueError("no values to summarise")
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    if len(values) == 1:
        return Summary(mean, std, 1, mean, mean)
    low, high = np.percentile(_bootstrap_means(arr, seed), [2.5, 97.5])
    return Summary(mean, std, len(values), float(low), float(high))


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided p of the paired randomisation test (``scipy.stats.permutation_test`` over
    all 2^n sign patterns): the share of patterns whose mean difference is at least as far from
    zero as the observed one. The smallest possible p is 2 / 2^n (0.25 for 3 seeds, 0.0625 for 5,
    0.0078 for 8)."""
    # scores are ratios of counts: two differences equal in exact arithmetic (1.3259668508287277
    # and 1.3259668508287348, both 2.4/181) are one value, or the tie is missed and p comes out
    # too small; rounding at 1e-9 removes the float noise and nothing a score can resolve
    d = np.round(np.asarray(diffs, dtype=float), 9)
    result = scipy.stats.permutation_test(
        (d,), lambda x, axis: np.abs(np.mean(x, axis=axis)), permutation_type="samples",
        alternative="greater", n_resamples=np.inf, vectorized=True)
    return float(result.pvalue)


def paired(method: dict[int, float], baseline: dict[int, float], seed: int = 0) -> Paired | None:
    """Per-seed differences method - baseline over the seeds both have; None with fewer than two."""
    seeds = sorted(set(method) & set(baseline))
    if len(seeds) < 2:
        return None
    diffs = np.asarray([method[s] - baseline[s] for s in seeds], dtype=float)
    low, high = np.percentile(_bootstrap_means(diffs, seed), [2.5, 97.5])
    return Paired(float(diffs.mean()), float(low), float(high), sign_flip_p(list(diffs)), len(seeds),
                  bool(low > 0 or high < 0))
