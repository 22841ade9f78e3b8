"""The statistics of the detector: median/MAD, robust z, and exact Poisson, negative binomial and
binomial tail probabilities.

Tails are summed term by term in log space (math.lgamma) from the observed value outwards, stopping
once the terms no longer change the sum: exact to double precision, no SciPy needed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

MAD_TO_SIGMA = 1.4826
"""1.4826 × MAD estimates the standard deviation of normally distributed values."""

SMALLEST_P = 1e-300
_NEGLIGIBLE = 1e-17


def median_and_mad(values: Sequence[float]) -> tuple[float, float]:
    """The median of `values` and their median absolute deviation from it (values must not be empty)."""
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


def robust_z(observed: float, median: float, scale: float) -> float | None:
    """(observed − median) / scale, where scale is 1.4826·MAD (or a floor of it); None when scale is 0."""
    return None if scale <= 0 else (observed - median) / scale


def _sum_terms(log_term: Callable[[int], float], start: int, step: int, stop: int) -> float:
    """Σ exp(log_term(k)) for k = start, start + step, ... up to `stop` (inclusive), while terms matter.

    The terms must decrease from `start` in the direction of `step` (the caller starts at or beyond the mode).
    """
    total = 0.0
    first = log_term(start)
    k = start
    while (step > 0 and k <= stop) or (step < 0 and k >= stop):
        term = math.exp(log_term(k) - first)
        total += term
        if term < _NEGLIGIBLE * total:
            break
        k += step
    return math.exp(first + math.log(total))


def _poisson_log_pmf(lam: float) -> Callable[[int], float]:
    log_lam = math.log(lam)
    return lambda k: k * log_lam - lam - math.lgamma(k + 1)


def poisson_cdf(k: int, lam: float) -> float:
    """P(X ≤ k) for X ~ Poisson(lam > 0)."""
    if k < 0:
        return 0.0
    if k >= lam:
        return max(0.0, 1.0 - poisson_sf(k + 1, lam))
    return min(1.0, _sum_terms(_poisson_log_pmf(lam), k, -1, 0))


def poisson_sf(k: int, lam: float) -> float:
    """P(X ≥ k) for X ~ Poisson(lam > 0)."""
    if k <= 0:
        return 1.0
    if k <= lam:
        return max(0.0, 1.0 - poisson_cdf(k - 1, lam))
    return min(1.0, _sum_terms(_poisson_log_pmf(lam), k, 1, k + 10_000_000))


def _negative_binomial_log_pmf(mean: float, dispersion: float) -> Callable[[int], float]:
    """log P(X = k) for the negative binomial with this mean and variance = dispersion × mean (> mean)."""
    r = mean / (dispersion - 1)
    log_p, log_q = -math.log(dispersion), math.log1p(-1 / dispersion)
    lgamma_r = math.lgamma(r)
    return lambda k: math.lgamma(k + r) - lgamma_r - math.lgamma(k + 1) + r * log_p + k * log_q


def count_cdf(k: int, mean: float, dispersion: float = 1.0) -> float:
    """P(X ≤ k) for a count of this mean and variance dispersion × mean: Poisson at 1, else negative binomial."""
    if dispersion <= 1:
        return poisson_cdf(k, mean)
    if k < 0:
        return 0.0
    if k >= mean:
        return max(0.0, 1.0 - count_sf(k + 1, mean, dispersion))
    return min(1.0, _sum_terms(_negative_binomial_log_pmf(mean, dispersion), k, -1, 0))


def count_sf(k: int, mean: float, dispersion: float = 1.0) -> float:
    """P(X ≥ k) for a count of this mean and variance dispersion × mean: Poisson at 1, else negative binomial."""
    if dispersion <= 1:
        return poisson_sf(k, mean)
    if k <= 0:
        return 1.0
    if k <= mean:
        return max(0.0, 1.0 - count_cdf(k - 1, mean, dispersion))
    return min(1.0, _sum_terms(_negative_binomial_log_pmf(mean, dispersion), k, 1, k + 10_000_000))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, 0 < p < 1)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    lgamma_n = math.lgamma(n + 1)

    def log_pmf(j: int) -> float:
        return lgamma_n - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q

    if k <= n * p:
        # below the mean the lower tail is the short sum: P(X ≥ k) = 1 − P(X ≤ k − 1)
        return max(0.0, 1.0 - _sum_terms(log_pmf, k - 1, -1, 0))
    return min(1.0, _sum_terms(log_pmf, k, 1, n))


def z_of_tail(p_value: float) -> float:
    """The standard normal z whose upper tail is `p_value` (the score a tail probability stands for)."""
    return -statistics.NormalDist().inv_cdf(min(max(p_value, SMALLEST_P), 0.5))
