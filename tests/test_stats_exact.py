"""The paired tests computed without SciPy agree with SciPy's (which a run no longer imports)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from migrate_eval.verdict import stats

scipy_stats = pytest.importorskip("scipy.stats")


def _samples() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out: list[np.ndarray] = []
    for n in [1, 2, 3, 5, 8, 12, 13, 14, 20, 30, 49, 50, 51, 80, 300]:
        for shift in (0.0, 0.15, -0.3):
            out.append(rng.normal(shift, 1.0, n))  # no ties: exact up to 50, normal beyond
            tied = np.round(rng.normal(shift, 1.0, n) * 2) / 2  # ties: permutation or normal
            out.append(tied[tied != 0] if np.any(tied != 0) else np.array([0.5]))
            out.append(rng.choice([-1.0, 1.0, 0.5], size=n, p=[0.3, 0.5, 0.2]))  # parities
    return out


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_wilcoxon_matches_scipy_on_every_branch(alternative: str) -> None:
    ours = stats.wilcoxon_greater if alternative == "greater" else stats.wilcoxon_two_sided
    for d in _samples():
        expected = scipy_stats.wilcoxon(d, alternative=alternative, zero_method="wilcox").pvalue
        assert ours(d) == pytest.approx(float(expected), rel=1e-9, abs=1e-15), d


def test_mcnemar_and_the_binomial_tail_match_scipy() -> None:
    for b, c in [(0, 0), (1, 0), (0, 7), (3, 9), (20, 20), (45, 80), (400, 470)]:
        n, k = b + c, min(b, c)
        if n == 0:
            assert stats.mcnemar(b, c) == 1.0
            continue
        exact = min(1.0, 2 * scipy_stats.binom.cdf(k, n, 0.5))
        mid = min(1.0, 2 * scipy_stats.binom.cdf(k, n, 0.5) - scipy_stats.binom.pmf(k, n, 0.5))
        assert stats.mcnemar(b, c, mid_p=False) == pytest.approx(exact, rel=1e-9)
        assert stats.mcnemar(b, c) == pytest.approx(mid, rel=1e-9)
    for k, n, q in [(1, 10, 0.1), (5, 40, 0.05), (30, 200, 0.2), (0, 5, 0.3), (6, 5, 0.3)]:
        expected = float(scipy_stats.binom.sf(k - 1, n, q))
        assert stats.binomial_sf(k, n, q) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_the_verdict_does_not_import_scipy() -> None:
    """SciPy's stats module costs about a second on every run; the verdict does without it."""
    code = (
        "import sys, numpy as np\n"
        "from migrate_eval.verdict import aggregate, drift, stats\n"
        "stats.wilcoxon_two_sided(np.array([0.1, -0.2, 0.3]))\n"
        "stats.mcnemar(3, 9)\n"
        "drift.min_detectable_drop(50, 0.9, tasks=2)\n"
        "print('scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
