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

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from migrate_eval.errors import ConfigError, ExitCode
from migrate_eval.metrics.scoring import error_kind_of
from migrate_eval.results import (
    SCORE_COLUMNS,
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
from migrate_eval.suite import CandidateSpec, Gate, Thresholds

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
        if mean < min_parity - _EPS:
            flag(
                "not_ready",
                "parity_below_threshold",
                f"mean parity {_f(mean)} ({level} CI {interval}, n={n}) is below the "
                f"required {_f(min_parity)}",
            )
        elif ci_low < min_parity - _EPS:
            flag(
                "ready_with_caveats",
                "interval_crosses_threshold",
                f"mean parity {_f(mean)} meets the required {_f(min_parity)}, but the "
                f"{level} CI {interval} (n={n}) reaches below it",
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
    )


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
            task_results.append(_task_result(task, idx, frame, thresholds))
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
            )
        )
    return results


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
