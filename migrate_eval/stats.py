"""Statistics and the verdict: from per-exchange scores to a decision per task and candidate.

Per candidate and task, over the rows of the scores frame (see :mod:`migrate_eval.metrics.scoring`):

* ``n_total``: rows (exchanges attempted); ``n``: rows with status ``ok`` and a parity;
* ``parity``: mean parity with a percentile bootstrap confidence interval
  (:func:`bootstrap_ci`, level ``thresholds.confidence``);
* ``pass_rate``: share of scored exchanges whose parity is at least ``thresholds.pass_threshold``;
* ``metrics``: mean of each of the task's metrics over the ``ok`` rows where it applied;
* ``errors``: failed rows (status ``error`` or ``unsupported``), their rate over ``n_total`` and
  their count by kind (the ``"<kind>: "`` prefix of the ``error`` text).

Verdict rules for a task (``min_parity`` is the task's :attr:`TaskInfo.min_parity`). The verdict
is the worst that any rule gives, and every rule that fires adds a reason:

1. vendor error rate (status ``error``) above ``thresholds.max_error_rate`` -> ``cannot_judge``
   (``too_many_errors``); no scored exchange -> ``cannot_judge`` (``no_scored_exchanges``). When a
   task cannot be judged, the rules below are not applied.
2. mean parity below ``min_parity`` -> ``not_ready`` (``parity_below_threshold``).
3. mean at or above ``min_parity`` but the interval's lower end below it -> ``ready_with_caveats``
   (``interval_crosses_threshold``).
4. requests the candidate cannot express (status ``unsupported``): a rate above
   ``max_error_rate`` -> ``not_ready``, any -> ``ready_with_caveats`` (``unsupported_requests``).
   They are a limit of the candidate, not an infrastructure failure, so they never make a task
   ``cannot_judge``.
5. fewer than ``thresholds.min_samples`` scored exchanges -> at most ``ready_with_caveats``
   (``small_sample``).
6. any vendor error -> at most ``ready_with_caveats`` (``vendor_errors``).
7. otherwise ``ready``, with no reasons.

Comparisons with thresholds allow a 1e-9 tolerance, so a mean of exactly ``min_parity`` passes.

A candidate's verdict combines its tasks (only those in ``gate.tasks`` when given): any
``cannot_judge`` -> ``cannot_judge``; else any ``not_ready`` -> ``not_ready``; else any caveat ->
``ready_with_caveats``; else ``ready``. Its reasons are the reasons of its tasks that are not
ready, each message prefixed with the task name. Its parity is the pooled mean over all its
scored exchanges with a bootstrap interval; latency percentiles are over rows that did not fail
(cache hits included, with the latency recorded when first answered); cost sums the tokens of
every row and prices them with :attr:`CandidateSpec.price` (US dollars per million tokens; the
scores frame does not carry cached-token counts, so every input token is priced at the full
input rate - an upper bound when the vendor discounts cached input).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, Field

from migrate_eval.errors import ConfigError, ExitCode
from migrate_eval.metrics.scoring import (
    CANDIDATE_LABEL,
    JUDGE_COMPLETION_TOKENS,
    JUDGE_PROMPT_TOKENS,
    REFERENCE_LABEL,
    error_kind_of,
)
from migrate_eval.records import Exchange, ReplayResult, json_digest
from migrate_eval.results import (
    SCORE_COLUMNS,
    CandidateComparison,
    CandidateResult,
    CostStats,
    ErrorStats,
    Interval,
    LatencyStats,
    Reason,
    TaskInfo,
    TaskResult,
    Verdict,
)
from migrate_eval.suite import CandidateSpec, Gate, Price, Thresholds

FloatArray = npt.NDArray[np.float64]

_EPS = 1e-9
#: Elements of the resample matrix built at once; bounds the bootstrap's memory (~24 MB).
_BOOTSTRAP_BUDGET = 1 << 21
#: Above this many values, values are rounded to ``_LARGE_SAMPLE_DECIMALS`` decimals before
#: resampling, so that resampling works on distinct values (see :func:`bootstrap_ci`).
_LARGE_SAMPLE = 20_000
_LARGE_SAMPLE_DECIMALS = 3
_RANK: dict[Verdict, int] = {"ready": 0, "ready_with_caveats": 1, "not_ready": 2, "cannot_judge": 3}


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


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _interval(values: FloatArray, confidence: float) -> Interval:
    if values.size == 0:
        return Interval(mean=None, ci_low=None, ci_high=None)
    low, high = bootstrap_ci(values, confidence=confidence)
    return Interval(mean=float(values.mean()), ci_low=_opt(low), ci_high=_opt(high))


class _Frame:
    """The scores frame as plain numpy arrays, for fast repeated selection."""

    def __init__(self, scores: pd.DataFrame) -> None:
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise ValueError(f"scores frame lacks column(s): {', '.join(missing)}")
        self.scores = scores
        self.status = scores["status"].to_numpy(dtype=object)
        self.error = scores["error"].to_numpy(dtype=object)
        self.parity = scores["parity"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.latency = scores["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.prompt = scores["prompt_tokens"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.completion = scores["completion_tokens"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.ok = self.status == "ok"
        self.failed = (self.status == "error") | (self.status == "unsupported")
        self.scored = self.ok & ~np.isnan(self.parity)
        self._metrics: dict[str, FloatArray] = {}

    def metric(self, name: str) -> FloatArray | None:
        if name not in self.scores.columns:
            return None
        if name not in self._metrics:
            self._metrics[name] = self.scores[name].to_numpy(dtype=np.float64, na_value=np.nan)
        return self._metrics[name]

    def labels(self, name: str) -> npt.NDArray[Any] | None:
        if name not in self.scores.columns:
            return None
        return self.scores[name].to_numpy(dtype=object)

    def kinds(self, idx: npt.NDArray[np.intp]) -> dict[str, int]:
        """Error kinds of the rows ``idx`` (meant for failed rows), sorted by kind."""
        by_kind: dict[str, int] = {}
        for text in self.error[idx]:
            kind = error_kind_of(text if isinstance(text, str) else None)
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return dict(sorted(by_kind.items()))

    def errors(self, idx: npt.NDArray[np.intp]) -> ErrorStats:
        failed = idx[self.failed[idx]]
        n_total = int(idx.size)
        return ErrorStats(
            count=int(failed.size),
            rate=failed.size / n_total if n_total else 0.0,
            by_kind=self.kinds(failed),
        )


def _f(x: float) -> str:
    return f"{x:.3f}"


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _kinds_text(by_kind: dict[str, int]) -> str:
    return ", ".join(
        f"{k}: {v}" for k, v in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def _task_result(
    task: TaskInfo,
    idx: npt.NDArray[np.intp],
    frame: _Frame,
    thresholds: Thresholds,
    noise: TaskNoise | None = None,
) -> TaskResult:
    n_total = int(idx.size)
    scored_idx = idx[frame.scored[idx]]
    n = int(scored_idx.size)
    values = frame.parity[scored_idx]
    parity = _interval(values, thresholds.confidence)
    errors = frame.errors(idx)
    status = frame.status[idx]
    vendor = int(np.count_nonzero(status == "error"))
    unsupported = int(np.count_nonzero(status == "unsupported"))
    vendor_rate = vendor / n_total if n_total else 0.0
    unsupported_rate = unsupported / n_total if n_total else 0.0
    level = f"{thresholds.confidence:.0%}"
    min_parity = task.min_parity
    margin = float(getattr(thresholds, "margin", 0.0))
    floor = noise.mean if noise is not None and noise.n > 0 else None
    threshold = effective_threshold(min_parity, floor, margin)

    verdict: Verdict = "ready"
    reasons: list[Reason] = []

    def flag(v: Verdict, code: str, message: str) -> None:
        nonlocal verdict
        if _RANK[v] > _RANK[verdict]:
            verdict = v
        reasons.append(Reason(code=code, message=message))

    vendor_kinds = frame.kinds(idx[status == "error"])
    if n_total and vendor_rate > thresholds.max_error_rate + _EPS:
        flag(
            "cannot_judge",
            "too_many_errors",
            f"{vendor} of {n_total} requests failed at the vendor ({_pct(vendor_rate)}; "
            f"{_kinds_text(vendor_kinds)}), more than the {_pct(thresholds.max_error_rate)} allowed",
        )
    if n == 0:
        detail = (
            "no exchange was replayed"
            if n_total == 0
            else f"none of the {n_total} exchanges could be scored "
            f"({errors.count} failed, {n_total - errors.count} without an applicable parity metric "
            "or logged answer)"
        )
        flag("cannot_judge", "no_scored_exchanges", detail)

    if verdict != "cannot_judge":
        mean = float(values.mean())
        ci_low = parity.ci_low if parity.ci_low is not None else mean
        ci_high = parity.ci_high if parity.ci_high is not None else mean
        interval = f"{ci_low:.3f}-{ci_high:.3f}"
        bar = (
            f"{_f(threshold)} (the baseline's own noise floor {_f(floor)} minus the margin "
            f"{_f(margin)}, below min_parity {_f(min_parity)})"
            if floor is not None and threshold < min_parity - _EPS
            else _f(threshold)
        )
        if mean < threshold - _EPS:
            flag(
                "not_ready",
                "parity_below_threshold",
                f"mean parity {_f(mean)} ({level} CI {interval}, n={n}) is below the "
                f"required {bar}",
            )
        elif ci_low < threshold - _EPS:
            flag(
                "ready_with_caveats",
                "interval_crosses_threshold",
                f"mean parity {_f(mean)} meets the required {bar}, but the "
                f"{level} CI {interval} (n={n}) reaches below it",
            )
        if (
            floor is not None
            and noise is not None
            and threshold < min_parity - _EPS
            and noise.n < thresholds.min_samples
        ):
            flag(
                "ready_with_caveats",
                "noise_floor_small_sample",
                f"the noise floor {_f(floor)} that lowered the bar was measured on only "
                f"{noise.n} pairs (fewer than {thresholds.min_samples})",
            )
        if unsupported:
            flag(
                "not_ready"
                if unsupported_rate > thresholds.max_error_rate + _EPS
                else "ready_with_caveats",
                "unsupported_requests",
                f"{unsupported} of {n_total} requests ({_pct(unsupported_rate)}) use a feature the "
                "candidate cannot express"
                + (
                    f", more than the {_pct(thresholds.max_error_rate)} allowed"
                    if unsupported_rate > thresholds.max_error_rate + _EPS
                    else ""
                ),
            )
        if n < thresholds.min_samples:
            flag(
                "ready_with_caveats",
                "small_sample",
                f"only {n} scored exchanges (fewer than {thresholds.min_samples}): the estimate is "
                "uncertain",
            )
        if vendor:
            flag(
                "ready_with_caveats",
                "vendor_errors",
                f"{vendor} of {n_total} requests ({_pct(vendor_rate)}) failed at the vendor "
                f"({_kinds_text(vendor_kinds)})",
            )

    pass_rate = (
        float(np.count_nonzero(values >= thresholds.pass_threshold - _EPS)) / n if n else None
    )
    ok_idx = idx[frame.ok[idx]]
    metrics: dict[str, float | None] = {}
    for name in dict.fromkeys(task.metrics):
        col = frame.metric(name)
        vals = col[ok_idx] if col is not None else np.empty(0)
        vals = vals[~np.isnan(vals)]
        metrics[name] = float(vals.mean()) if vals.size else None

    kappa, confusion = _labels(task, ok_idx, frame)
    non_inferior: bool | None = None
    p_value: float | None = None
    if n:
        low = parity.ci_low if parity.ci_low is not None else float(values.mean())
        if floor is not None:
            non_inferior = bool(low >= floor - margin - _EPS)
        # One-sided test that parity exceeds the bar the verdict applies (Holm-adjusted later).
        p_value = wilcoxon_greater(values - threshold)
        if p_value is None:  # every exchange sits exactly on the bar
            p_value = 1.0

    return TaskResult(
        task=task.name,
        n=n,
        n_total=n_total,
        verdict=verdict,
        reasons=reasons,
        parity=parity,
        pass_rate=pass_rate,
        min_parity=min_parity,
        metrics=metrics,
        errors=errors,
        kappa=kappa,
        confusion=confusion,
        noise_floor=floor,
        noise_floor_n=noise.n if noise is not None else None,
        effective_threshold=threshold,
        non_inferior=non_inferior,
        p_value=p_value,
        rates=_rates(metrics),
    )


#: Rate name -> the agreement metric it is 1 minus.
RATES = {
    "unexpected_tool_call_rate": "no_unexpected_tool_call",
    "missed_tool_call_rate": "no_missed_tool_call",
    "refusal_mismatch_rate": "refusal_match",
}


def _rates(metrics: dict[str, float | None]) -> dict[str, float]:
    return {
        rate: 1.0 - value
        for rate, metric in RATES.items()
        if (value := metrics.get(metric)) is not None
    }


def _labels(
    task: TaskInfo, ok_idx: npt.NDArray[np.intp], frame: _Frame
) -> tuple[float | None, dict[str, dict[str, int]] | None]:
    if task.output != "classification" or ok_idx.size == 0:
        return None, None
    ref = frame.labels(REFERENCE_LABEL)
    cand = frame.labels(CANDIDATE_LABEL)
    if ref is None or cand is None:
        return None, None
    r = [str(x) for x in ref[ok_idx]]
    c = [str(x) for x in cand[ok_idx]]
    return cohen_kappa(r, c), confusion_matrix(r, c)


def effective_threshold(min_parity: float, noise_floor: float | None, margin: float) -> float:
    """The parity bar of a task: ``min(min_parity, noise_floor - margin)``, floored at 0.

    Without a measured noise floor it is ``min_parity``. A candidate is never asked to agree
    with the logged answers more than the baseline agrees with itself (minus the margin), and
    never held to a stricter bar than the suite's ``min_parity``.
    """
    if noise_floor is None:
        return min_parity
    return max(0.0, min(min_parity, noise_floor - margin))


def _percentile(values: FloatArray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def _cost(spec: CandidateSpec, idx: npt.NDArray[np.intp], frame: _Frame) -> CostStats:
    prompt = frame.prompt[idx]
    completion = frame.completion[idx]
    input_tokens = int(np.nansum(prompt))
    output_tokens = int(np.nansum(completion))
    requests = int(np.count_nonzero(~np.isnan(prompt) | ~np.isnan(completion)))
    total_usd: float | None = None
    per_request: float | None = None
    if spec.price is not None:
        total_usd = (
            input_tokens * spec.price.input_per_mtok + output_tokens * spec.price.output_per_mtok
        ) / 1e6
        per_request = total_usd / requests if requests else None
    return CostStats(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_usd=total_usd,
        per_request_usd=per_request,
    )


def aggregate(
    scores: pd.DataFrame,
    tasks: Sequence[TaskInfo],
    candidates: Sequence[CandidateSpec],
    thresholds: Thresholds,
    gate: Gate,
    *,
    noise_floor: NoiseFloor | None = None,
    judge_price: Price | None = None,
) -> list[CandidateResult]:
    """Per candidate: per-task statistics and verdicts, then the candidate's own (module docstring).

    Rows of tasks not in ``tasks`` and of candidates not in ``candidates`` are ignored. A task
    named in ``gate.tasks`` that is not in ``tasks`` raises :class:`ConfigError`.
    """
    task_names = [t.name for t in tasks]
    if gate.tasks is not None:
        unknown = [t for t in gate.tasks if t not in task_names]
        if unknown:
            raise ConfigError(
                f"gate.tasks names unknown task(s) {', '.join(map(repr, unknown))}; "
                f"tasks are: {', '.join(task_names) or '(none)'}"
            )
    judged = set(task_names if gate.tasks is None else gate.tasks)
    frame = _Frame(scores)
    positions: dict[tuple[str, str], npt.NDArray[np.intp]] = {}
    if len(scores):
        for key, pos in scores.groupby(["candidate", "task"], sort=False).indices.items():
            cand_name, task_name = cast(tuple[str, str], key)
            positions[(str(cand_name), str(task_name))] = np.asarray(pos, dtype=np.intp)
    empty = np.empty(0, dtype=np.intp)

    results: list[CandidateResult] = []
    for spec in candidates:
        task_results: list[TaskResult] = []
        all_idx: list[npt.NDArray[np.intp]] = []
        for task in tasks:
            idx = positions.get((spec.name, task.name), empty)
            all_idx.append(idx)
            noise = noise_floor.tasks.get(task.name) if noise_floor is not None else None
            task_results.append(_task_result(task, idx, frame, thresholds, noise))
        cidx = np.sort(np.concatenate(all_idx)) if all_idx else empty

        verdict: Verdict = "ready"
        reasons: list[Reason] = []
        considered = [t for t in task_results if t.task in judged]
        if not considered:
            verdict = "cannot_judge"
            reasons.append(Reason(code="no_tasks", message="no task to judge"))
        for t in considered:
            if _RANK[t.verdict] > _RANK[verdict]:
                verdict = t.verdict
            if t.verdict != "ready":
                reasons.extend(
                    Reason(code=r.code, message=f"{t.task}: {r.message}") for r in t.reasons
                )

        scored = cidx[frame.scored[cidx]]
        answered = cidx[~frame.failed[cidx]]
        latencies = frame.latency[answered]
        latencies = latencies[~np.isnan(latencies)]
        results.append(
            CandidateResult(
                name=spec.name,
                provider=spec.provider,
                model=spec.model,
                base_url=spec.base_url,
                verdict=verdict,
                reasons=reasons,
                parity=_interval(frame.parity[scored], thresholds.confidence),
                errors=frame.errors(cidx),
                latency=LatencyStats(
                    p50_ms=_percentile(latencies, 50),
                    p95_ms=_percentile(latencies, 95),
                    p99_ms=_percentile(latencies, 99),
                ),
                cost=_cost(spec, cidx, frame),
                tasks=task_results,
                noise_floor=noise_floor.overall if noise_floor is not None else None,
                judge_cost=_judge_cost(cidx, frame, judge_price),
            )
        )
    _holm_adjust(results, thresholds, judged)
    return results


def _judge_cost(idx: npt.NDArray[np.intp], frame: _Frame, price: Price | None) -> CostStats | None:
    cols = frame.scores.columns
    if JUDGE_PROMPT_TOKENS not in cols or JUDGE_COMPLETION_TOKENS not in cols:
        return None
    p = frame.scores[JUDGE_PROMPT_TOKENS].to_numpy(dtype=np.float64, na_value=0.0)[idx]
    c = frame.scores[JUDGE_COMPLETION_TOKENS].to_numpy(dtype=np.float64, na_value=0.0)[idx]
    inp, out = int(p.sum()), int(c.sum())
    if inp == 0 and out == 0:
        return None
    requests = int(np.count_nonzero((p > 0) | (c > 0)))
    total = (
        (inp * price.input_per_mtok + out * price.output_per_mtok) / 1e6
        if price is not None
        else None
    )
    return CostStats(
        input_tokens=inp,
        output_tokens=out,
        total_usd=total,
        per_request_usd=total / requests if total is not None and requests else None,
    )


def _holm_adjust(
    results: Sequence[CandidateResult], thresholds: Thresholds, judged: set[str]
) -> None:
    """Holm-Bonferroni over every (candidate, task) test of the run (``p_value_adjusted``).

    A task judged against a measured noise floor whose non-inferiority test is no longer
    significant at ``1 - confidence`` after the correction, but that would otherwise be ready,
    gets a caveat (``not_significant_after_correction``). Without a noise floor the adjusted
    p-values are reported only; the verdict reads the per-task interval (docs/metrics.md).
    """
    tasks = [t for c in results for t in c.tasks]
    adjusted = holm([t.p_value for t in tasks])
    alpha = 1.0 - thresholds.confidence
    for t, p in zip(tasks, adjusted, strict=True):
        t.p_value_adjusted = p
        if p is not None and p > alpha and t.verdict == "ready" and t.noise_floor is not None:
            t.verdict = "ready_with_caveats"
            t.reasons.append(
                Reason(
                    code="not_significant_after_correction",
                    message=f"non-inferiority to the noise floor is not significant after "
                    f"Holm-Bonferroni correction over {sum(x is not None for x in adjusted)} "
                    f"tests (adjusted p={p:.3g} > {alpha:.3g})",
                )
            )
    for c in results:
        considered = [t for t in c.tasks if t.task in judged]
        if not considered or c.verdict == "cannot_judge":
            continue
        worst = max(considered, key=lambda t: _RANK[t.verdict]).verdict
        if _RANK[worst] > _RANK[c.verdict]:
            c.verdict = worst
        c.reasons = [
            Reason(code=r.code, message=f"{t.task}: {r.message}")
            for t in considered
            if t.verdict != "ready"
            for r in t.reasons
        ]


def gate_outcome(
    candidates: Sequence[CandidateResult], gate: Gate
) -> tuple[Literal["pass", "fail", "error"], ExitCode]:
    """The gate from the candidates' verdicts, and the CLI exit code that goes with it.

    Any ``cannot_judge`` (or no candidate at all) -> ``("error", INFRASTRUCTURE)``; else any
    ``not_ready``, or ``ready_with_caveats`` when ``gate.allow_caveats`` is false ->
    ``("fail", NOT_READY)``; else ``("pass", READY)``.
    """
    verdicts = [c.verdict for c in candidates]
    if not verdicts or "cannot_judge" in verdicts:
        return "error", ExitCode.INFRASTRUCTURE
    if "not_ready" in verdicts or (not gate.allow_caveats and "ready_with_caveats" in verdicts):
        return "fail", ExitCode.NOT_READY
    return "pass", ExitCode.READY


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
    if p_e >= 1.0 - _EPS:
        return 1.0 if p_o >= 1.0 - _EPS else 0.0
    return (p_o - p_e) / (1.0 - p_e)


def mcnemar(b: int, c: int, *, mid_p: bool = True) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c``.

    ``b``: pairs where the first passes and the second fails; ``c``: the reverse. Under the null
    hypothesis the ``b + c`` discordant pairs split Binomial(b + c, 1/2). The mid-p version
    (default) subtracts half the probability of the observed split, which keeps the test's size
    close to nominal without the exact test's conservatism (Fagerland et al., 2013).
    """
    from scipy.stats import binom

    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    p = 2.0 * float(binom.cdf(k, n, 0.5))
    if mid_p:
        p -= float(binom.pmf(k, n, 0.5))
    return min(1.0, max(0.0, p))


def wilcoxon_greater(differences: npt.NDArray[Any] | Sequence[float]) -> float | None:
    """One-sided Wilcoxon signed-rank p-value that the differences are centred above 0.

    Zero differences are dropped (Wilcox's method); None when nothing is left.
    """
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    d = d[np.abs(d) > _EPS]
    if d.size == 0:
        return None
    res = wilcoxon(d, alternative="greater", zero_method="wilcox")
    return float(res.pvalue)


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
    pa, pb = a >= pass_threshold - _EPS, b >= pass_threshold - _EPS
    only_a, only_b = int(np.count_nonzero(pa & ~pb)), int(np.count_nonzero(pb & ~pa))
    return PairedComparison(
        n=n,
        mean_difference=_opt(mean),
        ci_low=_opt(low),
        ci_high=_opt(high),
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
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return None
    d = d[np.abs(d) > _EPS]
    if d.size == 0:
        return 1.0
    res = wilcoxon(d, alternative="two-sided", zero_method="wilcox")
    return float(res.pvalue)


def compare_candidates(
    scores: pd.DataFrame,
    tasks: Sequence[TaskInfo],
    candidates: Sequence[str],
    thresholds: Thresholds,
    *,
    seed: int = 0,
) -> list[CandidateComparison]:
    """Per task, every pair of ``candidates`` (names, in order) on the exchanges both had scored.

    Each pair gets the mean parity difference with a paired bootstrap interval, a two-sided
    Wilcoxon signed-rank p-value, the McNemar mid-p on pass/fail at ``thresholds.pass_threshold``,
    and ``p_adjusted``: the Wilcoxon p-value after Holm-Bonferroni over every comparison of the
    run. Pairs with no exchange scored for both are left out; one candidate gives no comparison.
    """
    out: list[CandidateComparison] = []
    names = list(dict.fromkeys(candidates))
    if len(names) < 2 or not len(scores):
        return out
    ok = scores[(scores["status"] == "ok") & scores["parity"].notna()]
    ok = ok[ok["candidate"].isin(names)]
    pass_at = thresholds.pass_threshold - _EPS
    for task in tasks:
        rows = ok[ok["task"] == task.name]
        if rows.empty:
            continue
        wide = rows.pivot_table(
            index="exchange_id", columns="candidate", values="parity", aggfunc="mean"
        )
        for i, a_name in enumerate(names):
            for b_name in names[i + 1 :]:
                if a_name not in wide.columns or b_name not in wide.columns:
                    continue
                pair = wide[[a_name, b_name]].dropna()
                if pair.empty:
                    continue
                a = pair[a_name].to_numpy(dtype=np.float64)
                b = pair[b_name].to_numpy(dtype=np.float64)
                mean, low, high = paired_bootstrap_ci(
                    a, b, confidence=thresholds.confidence, seed=seed
                )
                pa, pb = a >= pass_at, b >= pass_at
                only_a = int(np.count_nonzero(pa & ~pb))
                only_b = int(np.count_nonzero(pb & ~pa))
                out.append(
                    CandidateComparison(
                        task=task.name,
                        a=a_name,
                        b=b_name,
                        n=int(a.size),
                        mean_diff=_opt(mean),
                        ci_low=_opt(low),
                        ci_high=_opt(high),
                        p_wilcoxon=wilcoxon_two_sided(a - b),
                        p_mcnemar=mcnemar(only_a, only_b),
                        a_only_passes=only_a,
                        b_only_passes=only_b,
                    )
                )
    for c, p in zip(out, holm([c.p_wilcoxon for c in out]), strict=True):
        c.p_adjusted = p
    return out


# --- the noise floor ---------------------------------------------------------------------------


#: Duplicate pairs scored per task for the noise floor, at most (a seeded sample beyond).
MAX_NOISE_PAIRS = 1000


class TaskNoise(BaseModel):
    """The baseline's agreement with itself on one task."""

    mean: float | None
    n: int = Field(description="pairs of baseline answers scored")
    parities: dict[str, float] = Field(
        default_factory=dict, description="per exchange id: mean parity of its pairs"
    )


class NoiseFloor(BaseModel):
    """How much the baseline (OpenAI) disagrees with itself, per task and overall."""

    source: Literal["baseline_replay", "duplicates"]
    tasks: dict[str, TaskNoise]
    overall: float | None
    n: int


def _noise_from_scores(
    scores: pd.DataFrame, source: Literal["baseline_replay", "duplicates"]
) -> NoiseFloor:
    ok = scores[(scores["status"] == "ok") & scores["parity"].notna()]
    tasks: dict[str, TaskNoise] = {}
    for task, group in ok.groupby("task", sort=True):
        per_ex = group.groupby("exchange_id")["parity"].mean()
        tasks[str(task)] = TaskNoise(
            mean=float(group["parity"].mean()),
            n=len(group),
            parities={str(k): float(v) for k, v in per_ex.items()},
        )
    overall = float(ok["parity"].mean()) if len(ok) else None
    return NoiseFloor(source=source, tasks=tasks, overall=overall, n=len(ok))


def noise_floor_from_replays(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    baseline_replays: Sequence[ReplayResult],
) -> NoiseFloor:
    """The noise floor from the baseline re-run: each re-run answer scored against the logged one.

    ``baseline_replays`` are the baseline's answers (``baseline.jsonl``; several repeats per
    exchange allowed, a ``repeat`` attribute tells them apart). Each is scored with the task's
    metrics exactly like a candidate; failed calls are left out.
    """
    from migrate_eval.metrics.scoring import score

    rows = [
        r.model_copy(update={"candidate": f"baseline#{getattr(r, 'repeat', 0)}"})
        for r in baseline_replays
    ]
    return _noise_from_scores(score(exchanges, tasks, assignment, rows), "baseline_replay")


def request_key(ex: Exchange) -> bytes:
    """16 bytes equal for identical requests (the whole request, metadata included)."""
    return json_digest(ex.request)


def duplicate_pairs(
    entries: Iterable[tuple[str, Hashable, datetime | None, str]],
) -> dict[str, list[tuple[str, str]]]:
    """The pairs of logged answers :func:`noise_floor_from_duplicates` scores, from
    ``(exchange id, request key, timestamp, task)`` of each exchange with a logged answer (in
    log order; equal keys are identical requests): per task, ``(earlier id, later id)`` pairs,
    at most :data:`MAX_NOISE_PAIRS` (a seeded random sample beyond). Only the keys are held,
    so the pairs of a log of any size can be found while it is read."""
    groups: dict[Hashable, list[tuple[str, datetime | None]]] = {}
    task_of: dict[str, str] = {}
    for ex_id, key, timestamp, task in entries:
        groups.setdefault(key, []).append((ex_id, timestamp))
        task_of[ex_id] = task
    pairs: dict[str, list[tuple[str, str]]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda e: (e[1] is None, e[1] or 0, e[0]))
        for (prev, _), (nxt, _) in itertools.pairwise(group):
            pairs.setdefault(task_of[prev], []).append((prev, nxt))
    for task, chosen in pairs.items():
        if len(chosen) > MAX_NOISE_PAIRS:
            rng = random.Random(f"noise-floor:{task}")
            keep = sorted(rng.sample(range(len(chosen)), MAX_NOISE_PAIRS))
            pairs[task] = [chosen[i] for i in keep]
    return pairs


def noise_floor_from_pairs(
    pairs: Mapping[str, Sequence[tuple[str, str]]],
    exchanges: Mapping[str, Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
) -> NoiseFloor | None:
    """The noise floor from :func:`duplicate_pairs` (``exchanges`` holds every exchange they
    name, by id): the later answer of each pair scored against the earlier one, with the
    task's metrics; None without pairs."""
    from migrate_eval.metrics.scoring import score

    refs: list[Exchange] = []
    rows: list[ReplayResult] = []
    for task in sorted(pairs):
        for prev, nxt in pairs[task]:
            refs.append(exchanges[prev])
            rows.append(
                ReplayResult(
                    exchange_id=prev,
                    candidate="logged-duplicate",
                    response=exchanges[nxt].response,
                )
            )
    if not rows:
        return None
    return _noise_from_scores(score(refs, tasks, assignment, rows), "duplicates")


def noise_floor_from_duplicates(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
) -> NoiseFloor | None:
    """The noise floor from duplicate requests in the logs, or None when there are none.

    Exchanges whose canonical requests are identical (same model, messages, tools, parameters)
    are duplicates; their logged answers are independent draws from the baseline. Within each
    group (in timestamp order), every answer after the first is scored against the one before
    it, with the task's metrics. All duplicate pairs count, also those whose answers are
    identical: leaving those out would only keep disagreements and bias the floor down. A task
    with more than :data:`MAX_NOISE_PAIRS` pairs is scored on a seeded random sample of that
    many (an unbiased estimate; scoring every pair of a large log took minutes).
    """
    names = {t.name for t in tasks}
    kept = [
        ex
        for ex in exchanges
        if ex.response is not None and ex.error is None and assignment.get(ex.id) in names
    ]
    pairs = duplicate_pairs(
        (ex.id, request_key(ex), ex.timestamp, assignment[ex.id]) for ex in kept
    )
    return noise_floor_from_pairs(pairs, {ex.id: ex for ex in kept}, tasks, assignment)


def noise_floor_for_run(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    baseline_file: Path | None = None,
    *,
    baseline_replays: Sequence[ReplayResult] | None = None,
    duplicates: tuple[Mapping[str, Sequence[tuple[str, str]]], Mapping[str, Exchange]]
    | None = None,
) -> NoiseFloor | None:
    """The run's noise floor: from the baseline re-run (``baseline_replays``, or
    ``baseline_file``, a ``baseline.jsonl``, when it exists), else from duplicate requests in the
    logs (``duplicates``: the :func:`duplicate_pairs` of the whole traffic and the exchanges
    they name, else those among ``exchanges``), else None (the verdict then uses
    ``min_parity`` alone)."""
    if baseline_replays:
        ids = {e.id for e in exchanges}
        kept = [r for r in baseline_replays if r.exchange_id in ids]
        if kept:
            return noise_floor_from_replays(exchanges, tasks, assignment, kept)
    if baseline_file is not None and baseline_file.is_file():
        from migrate_eval.replay import read_baseline

        by_id = {e.id for e in exchanges}
        rows = [r for r in read_baseline(baseline_file) if r.exchange_id in by_id]
        if rows:
            return noise_floor_from_replays(exchanges, tasks, assignment, rows)
    if duplicates is not None:
        return noise_floor_from_pairs(duplicates[0], duplicates[1], tasks, assignment)
    return noise_floor_from_duplicates(exchanges, tasks, assignment)
