"""Drift between two watches: paired, per-item tests on the same probe requests.

For each (candidate, task), the items both watches scored are paired. A task whose parities are
all 0 or 1 (pass/fail metrics) is tested with McNemar on the flips (mid-p, two-sided); other
tasks with the two-sided Wilcoxon signed-rank test on the paired parities. The p-values are
Holm-adjusted across every (candidate, task) of the watch, and drift is flagged where the
adjusted p-value is below ``alpha`` (default 0.01: a scheduled monitor runs often, so each
comparison is held to a stricter level than a one-off run's). A changed model fingerprint (the
answers' ``model`` or ``system_fingerprint``) is flagged on its own, even when scores hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from migrate_eval.verdict.stats import binomial_sf, holm, mcnemar, wilcoxon_two_sided

DRIFT_ALPHA = 0.01


@dataclass
class TaskDrift:
    """One (candidate, task) of a watch against the previous watch."""

    candidate: str
    task: str
    n_paired: int
    test: str  # "mcnemar", "wilcoxon" or "none"
    mean_before: float | None
    mean_after: float | None
    p_value: float | None
    p_adjusted: float | None
    drift: bool
    fingerprint_before: str
    fingerprint_after: str

    @property
    def fingerprint_changed(self) -> bool:
        """Both watches recorded a fingerprint and they differ. A watch whose answers all
        failed records none (no model, no ``system_fingerprint``): that is not a change."""
        return (
            _recorded(self.fingerprint_before)
            and _recorded(self.fingerprint_after)
            and self.fingerprint_before != self.fingerprint_after
        )


def _recorded(fingerprint: str) -> bool:
    """Whether a compared fingerprint text (``models|fingerprints[|headers]``) holds anything."""
    return bool(fingerprint.replace("|", "").strip())


def paired_p(before: np.ndarray, after: np.ndarray) -> tuple[str, float | None]:
    """The paired test's two-sided p-value for two aligned arrays of parities."""
    if before.size == 0:
        return "none", None
    binary = bool(np.all(np.isin(before, (0.0, 1.0))) and np.all(np.isin(after, (0.0, 1.0))))
    if binary:
        b = int(np.count_nonzero((before == 1.0) & (after == 0.0)))
        c = int(np.count_nonzero((before == 0.0) & (after == 1.0)))
        return "mcnemar", mcnemar(b, c)
    return "wilcoxon", wilcoxon_two_sided(after - before)


def detect_drift(
    before: pd.DataFrame,
    after: pd.DataFrame,
    *,
    fingerprints_before: dict[tuple[str, str], str] | None = None,
    fingerprints_after: dict[tuple[str, str], str] | None = None,
    alpha: float = DRIFT_ALPHA,
) -> list[TaskDrift]:
    """Compare two watches' items (``candidate, task, exchange_id, parity``), per task."""
    fb = fingerprints_before or {}
    fa = fingerprints_after or {}
    merged = before.merge(
        after, on=["candidate", "task", "exchange_id"], suffixes=("_b", "_a"), how="inner"
    )
    out: list[TaskDrift] = []
    keys = sorted(
        {(str(c), str(t)) for c, t in zip(after["candidate"], after["task"], strict=True)}
    )
    for cand, task in keys:
        m = merged[(merged["candidate"] == cand) & (merged["task"] == task)]
        b = pd.to_numeric(m["parity_b"], errors="coerce").to_numpy(dtype=np.float64)
        a = pd.to_numeric(m["parity_a"], errors="coerce").to_numpy(dtype=np.float64)
        keep = ~(np.isnan(a) | np.isnan(b))
        b, a = b[keep], a[keep]
        test, p = paired_p(b, a)
        out.append(
            TaskDrift(
                candidate=cand,
                task=task,
                n_paired=int(b.size),
                test=test,
                mean_before=float(b.mean()) if b.size else None,
                mean_after=float(a.mean()) if a.size else None,
                p_value=p,
                p_adjusted=None,
                drift=False,
                fingerprint_before=fb.get((cand, task), ""),
                fingerprint_after=fa.get((cand, task), ""),
            )
        )
    adjusted = holm([d.p_value for d in out])
    for d, adj in zip(out, adjusted, strict=True):
        d.p_adjusted = adj
        d.drift = adj is not None and not math.isnan(adj) and adj < alpha
    return out


def min_detectable_drop(
    n: int, pass_rate: float, *, alpha: float = DRIFT_ALPHA, power: float = 0.8, tasks: int = 1
) -> float | None:
    """The smallest drop in pass rate a watch of ``n`` probe items detects with ``power``.

    Model: from one watch to the next, a share ``d`` of the items that passed now fail (and
    none the other way), so McNemar sees ``b ~ Binomial(n, d)`` discordant pairs, all one way;
    the two-sided exact test at ``alpha / tasks`` (Holm's first step) rejects when
    ``b >= k*`` with ``2 * 0.5**k* < alpha``. The drop is the smallest ``d`` (over passing
    items, ``pass_rate * n`` of them) with ``P(b >= k*) >= power``, as a share of all items.
    None when even failing every passing item would not be detected.
    """
    level = alpha / max(1, tasks)
    k_star = 1
    while mcnemar(k_star, 0) >= level:
        k_star += 1
        if k_star > n:
            return None
    passing = round(pass_rate * n)
    if passing < k_star:
        return None
    for flips in range(k_star, passing + 1):
        q = flips / passing
        if binomial_sf(k_star, passing, q) >= power:
            return flips / n
    return None
