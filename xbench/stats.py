"""Statistics of a leaderboard cell: runs of one configuration over seeds, and the same seeds of
the task's baseline (``student``).

Seeds are few and seed noise on synth is 3-4 points, so everything comes from the runs
themselves:

- the interval of a cell is a percentile bootstrap of the mean over seeds;
- a method against the baseline is compared on the paired differences per seed (same seed = same
  data order and student init): their mean, a paired-bootstrap 95% interval of it (an interval
  to read, not a test), and the exact two-sided sign-flip p over all 2^n sign patterns, which
  assumes nothing but that the differences are symmetric about zero under the null;
- the star is that test after Holm's correction over every comparison in the table (a table
  compares many methods with one baseline; uncorrected, one of 18 null methods would be starred
  more often than not). A gain is starred when its Holm-adjusted p < ``ALPHA``.

The exact test cannot go below 2 / 2^n, and Holm multiplies the smallest p of m comparisons by
m: with 5 seeds (0.0625) no comparison can ever be starred, and 18 comparisons need 10 seeds.
:func:`seeds_needed` says how many, and a cell with fewer says so instead of looking "not
significant". Resampling is seeded: the same runs always give the same table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

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
    its 95% paired-bootstrap interval, the exact two-sided sign-flip p, and that p Holm-adjusted
    over the ``comparisons`` of its table (1 until a table adjusts it)."""

    diff: float
    low: float
    high: float
    p: float
    n: int
    p_holm: float
    comparisons: int = 1

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA

    @property
    def reachable(self) -> bool:
        """Whether n seeds can reach an adjusted p below ALPHA at all among this many comparisons."""
        return self.comparisons * min_p(self.n) < ALPHA


#: the level of the star: the Holm-adjusted (family-wise) error rate of a table
ALPHA = 0.05


def min_p(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give with n paired differences."""
    return 2.0 / 2 ** n


def seeds_needed(comparisons: int) -> int:
    """The fewest seeds with which one of ``comparisons`` can be starred: m * 2 / 2^n < ALPHA."""
    n = 1
    while comparisons * min_p(n) >= ALPHA:
        n += 1
    return n


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest p times
    (m - i + 1), made monotone, capped at 1. It controls the family-wise error rate at any
    level without assuming the tests independent."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


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
    import scipy.stats  # here: ``xbench run`` prints a mean, and scipy costs a second to import

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
    p = sign_flip_p(list(diffs))
    return Paired(float(diffs.mean()), float(low), float(high), p, len(seeds), p_holm=p)
