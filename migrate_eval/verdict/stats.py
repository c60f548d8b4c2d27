"""Statistics the verdict rests on: bootstrap intervals, paired tests (McNemar,
Wilcoxon, paired bootstrap), multiple-testing correction (Holm) and agreement beyond chance.

Plain functions over arrays; :mod:`migrate_eval.verdict.aggregate` applies them to a run's scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, Field

FloatArray = npt.NDArray[np.float64]

EPS = 1e-9
#: Elements of the resample matrix built at once; bounds the bootstrap's memory (~1.5 MB: the
#: indices and the values drawn). The interval does not depend on it (the same draws, a chunk
#: at a time). Small enough for the allocator to reuse the same memory chunk after chunk:
#: 1 << 21 (~24 MB) took fresh pages from the system at every call, page faults that made a
#: 10,000-exchange run's intervals ~0.1 s slower.
_BOOTSTRAP_BUDGET = 1 << 17
#: Above this many values, values are rounded to ``_LARGE_SAMPLE_DECIMALS`` decimals before
#: resampling, so that resampling works on distinct values (see :func:`bootstrap_ci`).
_LARGE_SAMPLE = 20_000
_LARGE_SAMPLE_DECIMALS = 3


def bootstrap_ci(
    values: Iterable[float] | npt.NDArray[Any],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    NaN values are ignored. Deterministic for a given seed. No values -> ``(nan, nan)``; one
    value (or all equal) -> ``(v, v)``. Resamples are drawn in chunks so that memory stays
    bounded (about ``_BOOTSTRAP_BUDGET`` elements at a time) however large the sample is.

    When values repeat a lot (binary metrics, labels) each resample is drawn as multinomial
    counts over the distinct values, which has exactly the distribution of resampling by index
    but costs time proportional to the number of distinct values. Above 20,000 values with many
    distinct ones, values are first rounded to 3 decimals so that this applies to continuous
    scores too, and the interval is shifted by the difference between the exact and the rounded
    mean: the rounding then only changes the spread of the resampled means, by a relative
    amount of the order of ``1e-6 / variance`` (negligible). A million values take well under a
    second.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if isinstance(values, np.ndarray):
        arr = values.astype(np.float64, copy=False).ravel()
    elif isinstance(values, pd.Series):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = np.fromiter(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan
    first = float(arr[0])
    if n == 1 or bool(np.all(arr == first)):
        return first, first
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(arr, return_counts=True)
    shift = 0.0
    if distinct.size * 8 > n and n > _LARGE_SAMPLE:
        rounded = np.round(arr, _LARGE_SAMPLE_DECIMALS)
        shift = float(arr.mean() - rounded.mean())
        distinct, counts = np.unique(rounded, return_counts=True)
    if distinct.size * 8 <= n:
        means = _resample_counts(rng, distinct, counts, n, n_resamples) + shift
    else:
        means = _resample_indices(rng, arr, n_resamples)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    mean = float(arr.mean())
    # Rounding in the resample means can put an end a hair past the sample mean for
    # near-constant data; the interval always contains the estimate it brackets.
    return min(float(low), mean), max(float(high), mean)


def _resample_indices(rng: np.random.Generator, arr: FloatArray, n_resamples: int) -> FloatArray:
    """Means of ``n_resamples`` resamples drawn by index, ``_BOOTSTRAP_BUDGET`` draws at a time."""
    n = int(arr.size)
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, min(n_resamples, _BOOTSTRAP_BUDGET // n))
    idx_dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=idx_dtype)
        means[start:stop] = arr[idx].mean(axis=1)
    return means


def _resample_counts(
    rng: np.random.Generator,
    distinct: FloatArray,
    counts: npt.NDArray[np.intp],
    n: int,
    n_resamples: int,
) -> FloatArray:
    """Means of resamples drawn as multinomial counts over the distinct values.

    Drawing n values with replacement and counting how often each distinct value came up is a
    multinomial draw with probabilities ``counts / n``: the same distribution as resampling by
    index, at a cost per resample proportional to the number of distinct values, not to n.
    """
    k = int(distinct.size)
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, min(n_resamples, _BOOTSTRAP_BUDGET // k))
    pvals = counts / n
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        draws = rng.multinomial(n, pvals, size=stop - start)
        means[start:stop] = (draws @ distinct) / n
    return means


def optional_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


# --- agreement beyond chance, paired tests, multiple testing -----------------------------------


def confusion_matrix(
    reference: Sequence[str], candidate: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Counts by logged label, then candidate label (labels sorted; zero cells left out)."""
    out: dict[str, dict[str, int]] = {}
    for r, c in zip(reference, candidate, strict=True):
        row = out.setdefault(r, {})
        row[c] = row.get(c, 0) + 1
    return {r: dict(sorted(out[r].items())) for r in sorted(out)}


def cohen_kappa(reference: Sequence[str], candidate: Sequence[str]) -> float | None:
    """Cohen's kappa between two label sequences: (p_o - p_e) / (1 - p_e).

    None without labels. When both raters use one and the same label throughout (p_e = 1),
    kappa is undefined; 1.0 is returned when they agree everywhere (they do, then).
    """
    n = len(reference)
    if n == 0 or n != len(candidate):
        return None
    labels = sorted(set(reference) | set(candidate))
    index = {label: i for i, label in enumerate(labels)}
    r = np.fromiter((index[x] for x in reference), dtype=np.intp, count=n)
    c = np.fromiter((index[x] for x in candidate), dtype=np.intp, count=n)
    k = len(labels)
    p_o = float(np.count_nonzero(r == c)) / n
    p_e = float(np.bincount(r, minlength=k) @ np.bincount(c, minlength=k)) / (n * n)
    if p_e >= 1.0 - EPS:
        return 1.0 if p_o >= 1.0 - EPS else 0.0
    return (p_o - p_e) / (1.0 - p_e)


def mcnemar(b: int, c: int, *, mid_p: bool = True) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c``.

    ``b``: pairs where the first passes and the second fails; ``c``: the reverse. Under the null
    hypothesis the ``b + c`` discordant pairs split Binomial(b + c, 1/2). The mid-p version
    (default) subtracts half the probability of the observed split, which keeps the test's size
    close to nominal without the exact test's conservatism (Fagerland et al., 2013).
    Computed exactly in integers (no SciPy import on a run's path).
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    total = 1 << n
    p = 2.0 * (sum(math.comb(n, i) for i in range(k + 1)) / total)
    if mid_p:
        p -= math.comb(n, k) / total
    return min(1.0, max(0.0, p))


def binomial_sf(k: int, n: int, q: float) -> float:
    """P(X >= k) for X ~ Binomial(n, q), summed in log space (stable for large ``n``)."""
    if k <= 0:
        return 1.0
    if k > n or q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    log_q, log_r = math.log(q), math.log1p(-q)
    log_n = math.lgamma(n + 1)
    total = 0.0
    for i in range(k, n + 1):
        total += math.exp(
            log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_q + (n - i) * log_r
        )
    return min(1.0, total)


# --- Wilcoxon signed-rank ---------------------------------------------------------------------
# The same test as SciPy's ``wilcoxon(d, zero_method="wilcox", method="auto")`` (which the
# tests compare against), without importing SciPy (about a second on every run): up to 50
# differences without ties, the exact null distribution of the positive rank sum; with ties
# and at most 13 differences, all 2**n sign patterns (an exact permutation test); otherwise the
# normal approximation with the tie correction and no continuity correction.

_EXACT_MAX = 50
_PERMUTATION_MAX = 13


def _average_ranks(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Ranks 1..n of ``values`` (ties get their average rank) and the size of each tie group."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, ordered.size]).astype(np.float64)
    averages = starts + (sizes + 1.0) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(averages, sizes.astype(np.int64))
    return ranks, sizes


def _signed_rank_null(n: int) -> FloatArray:
    """P(T+ = t), t = 0..n(n+1)/2, for n differences without ties under the null."""
    dist = np.ones(1, dtype=np.float64)
    for rank in range(1, n + 1):
        grown = np.zeros(dist.size + rank, dtype=np.float64)
        grown[: dist.size] += 0.5 * dist  # this rank's difference is negative
        grown[rank:] += 0.5 * dist  # ... or positive
        dist = grown
    return dist


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _wilcoxon(d: FloatArray, alternative: str) -> float:
    n = d.size
    ranks, ties = _average_ranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    has_ties = bool(np.any(ties > 1))
    if n <= _EXACT_MAX and not has_ties:
        dist = _signed_rank_null(n)
        t = round(r_plus)
        upper = float(dist[t:].sum())  # P(T+ >= t)
        lower = float(dist[: t + 1].sum())  # P(T+ <= t)
        p = upper if alternative == "greater" else 2.0 * min(upper, lower)
    elif n <= _PERMUTATION_MAX:
        signs = (np.arange(1 << n)[:, None] >> np.arange(n)) & 1  # every sign pattern
        null = signs.astype(np.float64) @ ranks
        tol = abs(np.finfo(np.float64).eps * 100 * r_plus)
        upper = float(np.count_nonzero(null >= r_plus - tol)) / null.size
        lower = float(np.count_nonzero(null <= r_plus + tol)) / null.size
        p = upper if alternative == "greater" else 2.0 * min(upper, lower)
    else:
        mean = n * (n + 1) / 4.0
        var = (n * (n + 1.0) * (2.0 * n + 1.0) - float(np.sum(ties**3 - ties)) / 2.0) / 24.0
        z = (r_plus - mean) / math.sqrt(var)
        p = _normal_sf(z) if alternative == "greater" else 2.0 * _normal_sf(abs(z))
    return min(1.0, max(0.0, p))


def wilcoxon_greater(differences: npt.NDArray[Any] | Sequence[float]) -> float | None:
    """One-sided Wilcoxon signed-rank p-value that the differences are centred above 0.

    Zero differences are dropped (Wilcox's method); None when nothing is left.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    d = d[np.abs(d) > EPS]
    if d.size == 0:
        return None
    return _wilcoxon(d, "greater")


def paired_bootstrap_ci(
    a: npt.NDArray[Any] | Sequence[float],
    b: npt.NDArray[Any] | Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over pairs (both not NaN) and its percentile bootstrap interval."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~np.isnan(x) & ~np.isnan(y)
    d = x[keep] - y[keep]
    if d.size == 0:
        return math.nan, math.nan, math.nan
    low, high = bootstrap_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return float(d.mean()), low, high


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None entries are left out and stay None)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


class PairedComparison(BaseModel):
    """Two sets of per-exchange parities on the same exchanges (see :func:`compare_paired`)."""

    n: int
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None
    wilcoxon_p: float | None = Field(description="one-sided: first > second")
    mcnemar_p: float | None = Field(description="two-sided mid-p, pass/fail at pass_threshold")
    first_only_passes: int
    second_only_passes: int


def compare_paired(
    first: pd.Series,
    second: pd.Series,
    *,
    pass_threshold: float = 0.8,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two candidates (or a candidate and the baseline's re-run) on the same exchanges.

    ``first`` and ``second`` are per-exchange parities indexed by exchange id; only exchanges
    scored in both count. Gives the mean difference with a paired bootstrap interval, a
    one-sided Wilcoxon signed-rank p-value (first better) and the McNemar mid-p test on pass/fail.
    """
    joined = pd.concat([first.rename("a"), second.rename("b")], axis=1, join="inner").dropna()
    a = joined["a"].to_numpy(dtype=np.float64)
    b = joined["b"].to_numpy(dtype=np.float64)
    n = int(a.size)
    mean, low, high = paired_bootstrap_ci(a, b, confidence=confidence, seed=seed)
    pa, pb = a >= pass_threshold - EPS, b >= pass_threshold - EPS
    only_a, only_b = int(np.count_nonzero(pa & ~pb)), int(np.count_nonzero(pb & ~pa))
    return PairedComparison(
        n=n,
        mean_difference=optional_float(mean),
        ci_low=optional_float(low),
        ci_high=optional_float(high),
        wilcoxon_p=wilcoxon_greater(a - b) if n else None,
        mcnemar_p=mcnemar(only_a, only_b) if n else None,
        first_only_passes=only_a,
        second_only_passes=only_b,
    )


def wilcoxon_two_sided(differences: npt.NDArray[Any] | Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value that the differences are centred on 0.

    Zero differences are dropped (Wilcox's method); when every difference is zero there is no
    evidence of a difference and the p-value is 1. None when there are no differences at all.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return None
    d = d[np.abs(d) > EPS]
    if d.size == 0:
        return 1.0
    return _wilcoxon(d, "two-sided")


# --- the noise floor ---------------------------------------------------------------------------
