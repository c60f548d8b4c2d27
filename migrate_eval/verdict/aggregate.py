"""Statistics and the verdict: from per-exchange scores to a decision per task and candidate.

Per candidate and task, over the rows of the scores frame (see :mod:`migrate_eval.score.scoring`):

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
   (``too_many_errors``); no scored exchange -> ``cannot_judge`` (``no_scored_exchanges``); an
   LLM judge that failed its planted controls on the task (``TaskInfo.judge_controls``) ->
   ``cannot_judge`` (``judge_failed_controls``). When a task cannot be judged, the rules below
   are not applied.
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
from collections.abc import Iterator, Mapping, Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from migrate_eval.core.errors import ConfigError, ExitCode
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import (
    SCORE_COLUMNS,
    CandidateComparison,
    CandidateResult,
    CostStats,
    ErrorStats,
    FlipTable,
    Interval,
    LatencyStats,
    Reason,
    TaskInfo,
    TaskResult,
    Verdict,
)
from migrate_eval.core.suite import CandidateSpec, Gate, Price, Thresholds
from migrate_eval.score.scoring import (
    CANDIDATE_LABEL,
    JUDGE_COMPLETION_TOKENS,
    JUDGE_PROMPT_TOKENS,
    REFERENCE_LABEL,
    error_kind_of,
)
from migrate_eval.verdict._groups import pair_positions
from migrate_eval.verdict.agreement import fill_feedback_kappa, label_agreement
from migrate_eval.verdict.noise import NoiseFloor, TaskNoise
from migrate_eval.verdict.stats import (
    EPS,
    FloatArray,
    bootstrap_ci,
    cohen_kappa,
    confusion_matrix,
    holm,
    mcnemar,
    optional_float,
    paired_bootstrap_ci,
    wilcoxon_greater,
    wilcoxon_two_sided,
)

_RANK: dict[Verdict, int] = {
    "ready": 0,
    "ready_with_caveats": 1,
    "needs_evidence": 2,
    "not_ready": 3,
    "cannot_judge": 4,
}

#: The lowest bar a task gets, per output kind, whatever a noise floor says: a bar at 0 would
#: let any answer through (a broken baseline re-run once lowered it to 0 and passed gibberish).
ABSOLUTE_FLOOR: dict[str, float] = {
    "tool_call": 0.5,
    "structured": 0.5,
    "classification": 0.5,
    "free_text": 0.3,
}

#: Metrics whose value has no meaning of its own: how close an answer is to the logged one.
#: A different answer can be as good or better, so a bar on them alone cannot call a candidate
#: "not ready": that needs a measured noise floor (how far OpenAI is from itself) to say
#: "indistinguishable", and a judge to say "worse" (or an answer no closer than unrelated ones).
SIMILARITY_METRICS = frozenset(
    {"chrf", "bleu", "ter", "rouge_l", "semantic_similarity", "token_f1", "length_ratio"}
)
#: Similarity whose interval lies wholly at or above this is "the logged answers again": such a
#: candidate is ready without a noise floor (nothing to be worse at).
SAME_ANSWERS = 0.95
#: LLM-judge metrics: quality, not similarity.
JUDGE_METRICS = frozenset({"judge_pairwise", "judge_rubric"})

#: Statistical power the minimum detectable drop is computed at.
POWER = 0.8


def _interval(values: FloatArray, confidence: float) -> Interval:
    if values.size == 0:
        return Interval(mean=None, ci_low=None, ci_high=None)
    low, high = bootstrap_ci(values, confidence=confidence)
    return Interval(
        mean=float(values.mean()), ci_low=optional_float(low), ci_high=optional_float(high)
    )


class _Frame:
    """The scores frame as plain numpy arrays, for fast repeated selection: numbers and
    flags, no Python object a row (a million rows' ids and statuses as objects would be
    hundreds of MB); the texts of the rows selected are read when asked for."""

    def __init__(self, scores: pd.DataFrame) -> None:
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise ValueError(f"scores frame lacks column(s): {', '.join(missing)}")
        self.scores = scores
        status = scores["status"]
        self.vendor_failed = (status == "error").to_numpy(dtype=bool, na_value=False)
        self.unsupported = (status == "unsupported").to_numpy(dtype=bool, na_value=False)
        self.ok = (status == "ok").to_numpy(dtype=bool, na_value=False)
        self.failed = self.vendor_failed | self.unsupported
        self.parity = scores["parity"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.latency = scores["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.prompt = scores["prompt_tokens"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.completion = scores["completion_tokens"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.scored = self.ok & ~np.isnan(self.parity)
        self._metrics: dict[str, FloatArray] = {}

    def exchange_ids(self, idx: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        """The exchange ids of the rows ``idx``."""
        return np.asarray(self.scores["exchange_id"].iloc[idx].tolist(), dtype=object)

    def error_texts(self, idx: npt.NDArray[np.intp]) -> list[Any]:
        return list(self.scores["error"].iloc[idx].tolist())

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
        for text in self.error_texts(idx):
            kind = error_kind_of(text if isinstance(text, str) else None)
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return dict(sorted(by_kind.items()))

    def examples(self, idx: npt.NDArray[np.intp]) -> dict[str, str]:
        """The first error message of each kind among the rows ``idx`` (the vendor's text)."""
        first: dict[str, str] = {}
        for text in self.error_texts(idx):
            kind = error_kind_of(text if isinstance(text, str) else None)
            if kind not in first and isinstance(text, str):
                message = text[len(kind) + 1 :].strip() if text.startswith(f"{kind}:") else text
                first[kind] = message if len(message) <= 240 else message[:239] + "…"
        return first

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


def _kinds_text(by_kind: dict[str, int], examples: dict[str, str] | None = None) -> str:
    """``connection: 80, http_500: 3``; with ``examples``, each kind's first message once:
    ``connection: 80 (e.g. "connection failed: Cannot connect to host ...")``."""
    examples = examples or {}
    return ", ".join(
        f"{k}: {v}" + (f' (e.g. "{examples[k]}")' if examples.get(k) else "")
        for k, v in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def _task_result(
    task: TaskInfo,
    idx: npt.NDArray[np.intp],
    frame: _Frame,
    thresholds: Thresholds,
    noise: TaskNoise | None = None,
    *,
    chance: float | None = None,
    clusters: Mapping[str, str] | None = None,
) -> TaskResult:
    n_total = int(idx.size)
    scored_idx = idx[frame.scored[idx]]
    n = int(scored_idx.size)
    values = frame.parity[scored_idx]
    parity = _interval(values, thresholds.confidence)
    errors = frame.errors(idx)
    vendor = int(np.count_nonzero(frame.vendor_failed[idx]))
    unsupported = int(np.count_nonzero(frame.unsupported[idx]))
    vendor_rate = vendor / n_total if n_total else 0.0
    unsupported_rate = unsupported / n_total if n_total else 0.0
    level = f"{thresholds.confidence:.0%}"
    min_parity = task.min_parity
    margin = float(getattr(thresholds, "margin", 0.0))
    floor = noise.mean if noise is not None and noise.n > 0 and not noise.broken else None
    evidence = _evidence(task, idx, frame, floor)
    threshold, bar_source, bar = task_bar(
        task, floor, noise.n if noise is not None else 0, chance, margin, evidence
    )
    by_similarity = evidence in ("noise_floor", "none") and similarity_only(task)

    verdict: Verdict = "ready"
    reasons: list[Reason] = []

    def flag(v: Verdict, code: str, message: str) -> None:
        nonlocal verdict
        if _RANK[v] > _RANK[verdict]:
            verdict = v
        reasons.append(Reason(code=code, message=message))

    vendor_idx = idx[frame.vendor_failed[idx]]
    vendor_kinds = frame.kinds(vendor_idx)
    if n_total and vendor_rate > thresholds.max_error_rate + EPS:
        flag(
            "cannot_judge",
            "too_many_errors",
            f"{vendor} of {n_total} requests failed at the vendor ({_pct(vendor_rate)}; "
            f"{_kinds_text(vendor_kinds, frame.examples(vendor_idx))}), more than the {_pct(thresholds.max_error_rate)} allowed",
        )
    untrusted = [c for c in (task.judge_controls or {}).values() if not c.passed]
    if untrusted:
        flag(
            "cannot_judge",
            "judge_failed_controls",
            "; ".join(f"{c.metric}: {c.reason}" for c in untrusted)
            + " - its metrics are not used (fix or replace the judge)",
        )
    if n == 0 and n_total and unsupported == n_total:
        flag(
            "not_ready",
            "cannot_express_traffic",
            f"every one of the {n_total} requests uses a feature the candidate cannot express",
        )
    elif n == 0:
        detail = (
            "no exchange was replayed"
            if n_total == 0
            else f"none of the {n_total} exchanges could be scored "
            f"({errors.count} failed, {n_total - errors.count} without an applicable parity metric "
            "or logged answer)"
        )
        flag("cannot_judge", "no_scored_exchanges", detail)

    cluster_count: int | None = None
    if n and clusters:
        widened = _clustered_interval(values, frame.exchange_ids(scored_idx), clusters, thresholds)
        if widened is not None:
            parity, cluster_count = widened
    if verdict not in ("cannot_judge",) and n:
        mean = float(values.mean())
        ci_low = parity.ci_low if parity.ci_low is not None else mean
        ci_high = parity.ci_high if parity.ci_high is not None else mean
        interval = f"{ci_low:.3f}-{ci_high:.3f}"
        off_topic = chance is not None and mean < chance + margin - EPS
        same_answers = ci_low >= SAME_ANSWERS - EPS
        if (
            by_similarity
            and not off_topic
            and (
                (floor is None and not same_answers)
                or (floor is not None and mean < threshold - EPS)
            )
        ):
            # similarity below the bar: different from the logged answers, not shown worse
            fix = (
                "add a judge (`judge:` in the suite) to tell better from worse"
                if floor is not None
                else "measure the baseline's noise floor (`baseline:` in the suite, or "
                "`--baseline N` with the logged model's key) or add a judge (`judge:`)"
            )
            flag(
                "needs_evidence",
                "needs_evidence",
                (
                    f"mean similarity {_f(mean)} ({level} CI {interval}, n={n}) is below {bar}: "
                    "the answers differ from the logged ones more than OpenAI's own do, which "
                    f"similarity alone cannot call better or worse; {fix}"
                    if floor is not None
                    else f"mean similarity {_f(mean)} ({level} CI {interval}, n={n}) has no bar "
                    "of its own (no noise floor was measured: how far OpenAI's answers are from "
                    f"each other); {fix}"
                ),
            )
        elif mean < threshold - EPS:
            flag(
                "not_ready",
                "parity_below_threshold",
                f"mean parity {_f(mean)} ({level} CI {interval}, n={n}) is below {bar}",
            )
        elif ci_low < threshold - EPS:
            flag(
                "ready_with_caveats",
                "interval_crosses_threshold",
                f"mean parity {_f(mean)} meets {bar}, but the {level} CI {interval} (n={n}) "
                "reaches below it",
            )
        if by_similarity and off_topic:
            flag(
                "not_ready",
                "no_closer_than_unrelated",
                f"mean similarity {_f(mean)} is no higher than unrelated answers of the same task "
                f"reach ({_f(chance or 0.0)} plus the margin {_f(margin)})",
            )
        if (
            floor is not None
            and noise is not None
            and bar_source == "noise_floor"
            and noise.n < thresholds.min_samples
        ):
            flag(
                "ready_with_caveats",
                "noise_floor_small_sample",
                f"the noise floor {_f(floor)} that set the bar was measured on only "
                f"{noise.n} pairs (fewer than {thresholds.min_samples})",
            )
        if unsupported:
            flag(
                "not_ready"
                if unsupported_rate > thresholds.max_error_rate + EPS
                else "ready_with_caveats",
                "unsupported_requests",
                f"{unsupported} of {n_total} requests ({_pct(unsupported_rate)}) use a feature the "
                "candidate cannot express"
                + (
                    f", more than the {_pct(thresholds.max_error_rate)} allowed"
                    if unsupported_rate > thresholds.max_error_rate + EPS
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
                f"({_kinds_text(vendor_kinds, frame.examples(vendor_idx))})",
            )

    pass_rate = (
        float(np.count_nonzero(values >= thresholds.pass_threshold - EPS)) / n if n else None
    )
    ok_idx = idx[frame.ok[idx]]
    metrics: dict[str, float | None] = {}
    for name in dict.fromkeys(task.metrics):
        col = frame.metric(name)
        vals = col[ok_idx] if col is not None else np.empty(0)
        vals = vals[~np.isnan(vals)]
        metrics[name] = float(vals.mean()) if vals.size else None

    kappa, confusion = _labels(task, ok_idx, frame)
    flips = _flips(values, frame.exchange_ids(scored_idx), noise, thresholds)
    mdd = _min_detectable_drop(values, thresholds.confidence, cluster_count, parity)
    non_inferior: bool | None = None
    p_value: float | None = None
    if n:
        low = parity.ci_low if parity.ci_low is not None else float(values.mean())
        if floor is not None:
            non_inferior = bool(low >= floor - margin - EPS)
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
        bar_source=bar_source,
        bar_explained=bar,
        evidence=evidence,
        chance_level=chance,
        noise_floor_status=(
            "none" if noise is None or noise.n == 0 else "broken" if noise.broken else "used"
        ),
        noise_floor_problem=noise.problem if noise is not None else None,
        flips=flips,
        min_detectable_drop=mdd,
        clusters=cluster_count,
        label_agreement=label_agreement(
            task, ok_idx, frame.metric, frame.parity, thresholds.pass_threshold
        ),
    )


#: Metadata keys (and the request's ``user``) that group exchanges: a conversation, a session,
#: an end user. Exchanges in one group are not independent evidence.
CLUSTER_KEYS = ("conversation_id", "session_id", "thread_id", "user_id", "user", "end_user")


def clusters_of(exchanges: Sequence[Exchange]) -> dict[str, str]:
    """Exchange id -> its group (:data:`CLUSTER_KEYS`, first found), for those that have one."""
    out: dict[str, str] = {}
    for ex in exchanges:
        for key in CLUSTER_KEYS:
            value = ex.metadata.get(key)
            if value is None and key == "user":
                value = ex.request.get("user")
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                out[ex.id] = f"{key}={value}"
                break
    return out


def similarity_only(task: TaskInfo) -> bool:
    """True when every parity metric of the task measures similarity to the logged answer."""
    return bool(task.metrics) and all(m in SIMILARITY_METRICS for m in task.metrics)


def _evidence(
    task: TaskInfo, idx: npt.NDArray[np.intp], frame: _Frame, floor: float | None
) -> Literal["metrics", "noise_floor", "judge", "none"]:
    """What the task's verdict rests on (see :class:`~migrate_eval.core.results.TaskResult`)."""
    for name in task.metrics:
        if name in JUDGE_METRICS:
            col = frame.metric(name)
            if col is not None and idx.size and not np.all(np.isnan(col[idx])):
                return "judge"
    if any(m in SIMILARITY_METRICS for m in task.metrics):
        return "noise_floor" if floor is not None else "none"
    return "metrics"


def task_bar(
    task: TaskInfo,
    floor: float | None,
    floor_n: int,
    chance: float | None,
    margin: float,
    evidence: str = "metrics",
) -> tuple[float, Literal["min_parity", "noise_floor", "absolute_floor", "chance_level"], str]:
    """The one bar of a task, what set it and a sentence saying so.

    * Metrics with a meaning of their own: the suite's ``min_parity``, lowered to the noise floor
      minus the margin when OpenAI disagrees with itself more than that.
    * Similarity metrics: the noise floor minus the margin (a candidate this close to the logged
      answers is as close as OpenAI is to itself); without a noise floor, ``min_parity`` is only
      a reference (the verdict then needs evidence).
    * Never below the absolute floor of the output kind (:data:`ABSOLUTE_FLOOR`), nor below what
      unrelated answers of the same task reach plus the margin (``chance``).
    """
    bar = task.min_parity
    source: Literal["min_parity", "noise_floor", "absolute_floor", "chance_level"] = "min_parity"
    why = f"the task's min_parity {_f(task.min_parity)}"
    if floor is not None:
        lowered = floor - margin
        if evidence == "noise_floor" or lowered < bar - EPS:
            bar, source = lowered, "noise_floor"
            why = (
                f"the baseline's agreement with itself {_f(floor)} (n={floor_n}) minus the "
                f"margin {_f(margin)}"
            )
    absolute = ABSOLUTE_FLOOR.get(task.output, 0.5)
    if bar < absolute - EPS:
        why = f"the floor for {task.output.replace('_', ' ')} tasks {_f(absolute)} ({why} is lower)"
        bar, source = absolute, "absolute_floor"
    if chance is not None and chance + margin > bar + EPS:
        why = (
            f"what unrelated answers of this task reach {_f(chance)} plus the margin "
            f"{_f(margin)} ({why} is lower)"
        )
        bar, source = min(1.0, chance + margin), "chance_level"
    return bar, source, f"the bar {_f(bar)} ({why})"


def _clustered_interval(
    values: FloatArray,
    ids: npt.NDArray[Any],
    clusters: Mapping[str, str],
    thresholds: Thresholds,
) -> tuple[Interval, int] | None:
    """A normal interval from the cluster-robust standard error of the mean, when exchanges
    share clusters (a conversation, user or session) and it is wider than the bootstrap's;
    None otherwise."""
    if not clusters:  # every exchange its own group: the bootstrap's interval stands
        return None
    keys = [clusters.get(str(i), f"\x00{i}") for i in ids]
    groups: dict[str, list[int]] = {}
    for pos, key in enumerate(keys):
        groups.setdefault(key, []).append(pos)
    g = len(groups)
    n = values.size
    if g >= n or g < 2:
        return None
    mean = float(values.mean())
    resid = values - mean
    sums = np.array([resid[pos].sum() for pos in groups.values()], dtype=np.float64)
    se = math.sqrt(float((sums**2).sum()) * g / (g - 1)) / n
    z = NormalDist().inv_cdf(1 - (1 - thresholds.confidence) / 2)
    low, high = max(0.0, mean - z * se), min(1.0, mean + z * se)
    boot_low, boot_high = bootstrap_ci(values, confidence=thresholds.confidence)
    if not (math.isnan(boot_low) or math.isnan(boot_high)) and high - low <= boot_high - boot_low:
        return None
    return Interval(mean=mean, ci_low=low, ci_high=high), g


def _flips(
    values: FloatArray,
    ids: npt.NDArray[Any],
    noise: TaskNoise | None,
    thresholds: Thresholds,
) -> FlipTable | None:
    """Pass/fail per item against the baseline's re-run of the same request (when the noise
    floor came from one), else against the logged answer (which passes by definition)."""
    if not values.size:
        return None
    passes = values >= thresholds.pass_threshold - EPS
    per_item = noise.parities if noise is not None and noise.source == "baseline_replay" else {}
    paired = [
        (bool(p), per_item[str(i)]) for p, i in zip(passes, ids, strict=True) if str(i) in per_item
    ]
    if paired and noise is not None and not noise.broken:
        better = sum(1 for p, b in paired if p and b < thresholds.pass_threshold - EPS)
        worse = sum(1 for p, b in paired if not p and b >= thresholds.pass_threshold - EPS)
        return FlipTable(
            against="baseline_replay",
            better=better,
            worse=worse,
            same=len(paired) - better - worse,
            p_mcnemar=mcnemar(better, worse),
        )
    worse = int(np.count_nonzero(~passes))
    return FlipTable(against="logged", better=0, worse=worse, same=int(values.size) - worse)


def _min_detectable_drop(
    values: FloatArray, confidence: float, clusters: int | None, parity: Interval
) -> float | None:
    """The smallest drop in mean parity a one-sided test at ``confidence`` detects with 80%
    power on this sample: (z_conf + z_power) x the standard error of the mean (the clustered
    one when the interval was widened for clusters)."""
    n = values.size
    if n < 2:
        return None
    if clusters is not None and parity.ci_low is not None and parity.ci_high is not None:
        z2 = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
        se = (parity.ci_high - parity.ci_low) / (2 * z2)
    else:
        se = float(values.std(ddof=1)) / math.sqrt(n)
    dist = NormalDist()
    return (dist.inv_cdf(confidence) + dist.inv_cdf(POWER)) * se


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


def percentile(values: FloatArray, q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation); None for no values."""
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
    chance: Mapping[str, float] | None = None,
    clusters: Mapping[str, str] | None = None,
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
    fill_feedback_kappa(tasks)
    frame = _Frame(scores)
    positions = pair_positions(scores)
    empty = np.empty(0, dtype=np.intp)

    results: list[CandidateResult] = []
    for spec in candidates:
        task_results: list[TaskResult] = []
        all_idx: list[npt.NDArray[np.intp]] = []
        for task in tasks:
            idx = positions.get((spec.name, task.name), empty)
            all_idx.append(idx)
            noise = noise_floor.tasks.get(task.name) if noise_floor is not None else None
            task_results.append(
                _task_result(
                    task,
                    idx,
                    frame,
                    thresholds,
                    noise,
                    chance=chance.get(task.name) if chance is not None else None,
                    clusters=clusters,
                )
            )
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
                    p50_ms=percentile(latencies, 50),
                    p95_ms=percentile(latencies, 95),
                    p99_ms=percentile(latencies, 99),
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
    ``("fail", NOT_READY)``; else any ``needs_evidence`` -> ``("fail", NEEDS_EVIDENCE)``; else
    ``("pass", READY)``.
    """
    verdicts = [c.verdict for c in candidates]
    if not verdicts or "cannot_judge" in verdicts:
        return "error", ExitCode.INFRASTRUCTURE
    if "not_ready" in verdicts or (not gate.allow_caveats and "ready_with_caveats" in verdicts):
        return "fail", ExitCode.NOT_READY
    if "needs_evidence" in verdicts:
        return "fail", ExitCode.NEEDS_EVIDENCE
    return "pass", ExitCode.READY


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
    pass_at = thresholds.pass_threshold - EPS
    for task_name, a_name, b_name, a, b in _paired_parities(scores, tasks, names):
        mean, low, high = paired_bootstrap_ci(a, b, confidence=thresholds.confidence, seed=seed)
        pa, pb = a >= pass_at, b >= pass_at
        only_a = int(np.count_nonzero(pa & ~pb))
        only_b = int(np.count_nonzero(pb & ~pa))
        out.append(
            CandidateComparison(
                task=task_name,
                a=a_name,
                b=b_name,
                n=int(a.size),
                mean_diff=optional_float(mean),
                ci_low=optional_float(low),
                ci_high=optional_float(high),
                p_wilcoxon=wilcoxon_two_sided(a - b),
                p_mcnemar=mcnemar(only_a, only_b),
                a_only_passes=only_a,
                b_only_passes=only_b,
            )
        )
    for c, p in zip(out, holm([c.p_wilcoxon for c in out]), strict=True):
        c.p_adjusted = p
    return out


def _paired_parities(
    scores: pd.DataFrame, tasks: Sequence[TaskInfo], names: Sequence[str]
) -> Iterator[tuple[str, str, str, FloatArray, FloatArray]]:
    """Per task (in ``tasks`` order) and pair of ``names`` (in order): the two candidates'
    parities on the exchanges both had scored, by exchange id (each candidate's mean where an
    exchange has several rows). The frame is read as codes of its texts (exchange ids in
    sorted order), not pivoted: a pivot of a million exchanges held several copies of them."""
    positions = pair_positions(scores)
    if not positions:
        return
    parity = scores["parity"].to_numpy(dtype=np.float64, na_value=np.nan)
    ex_codes, _ = pd.factorize(scores["exchange_id"], sort=True)
    ok = (scores["status"] == "ok").to_numpy(dtype=bool) & ~np.isnan(parity) & (ex_codes >= 0)
    for task in tasks:
        means: dict[str, tuple[npt.NDArray[np.intp], FloatArray]] = {}
        for name in names:
            rows = positions.get((name, task.name))
            if rows is None:
                continue
            rows = rows[ok[rows]]
            if not len(rows):
                continue
            by_ex = pd.Series(parity[rows]).groupby(ex_codes[rows]).mean()  # sorted: by id
            means[name] = (by_ex.index.to_numpy(dtype=np.intp), by_ex.to_numpy(np.float64))
        for i, a_name in enumerate(names):
            for b_name in names[i + 1 :]:
                if a_name not in means or b_name not in means:
                    continue
                (ex_a, val_a), (ex_b, val_b) = means[a_name], means[b_name]
                _, at_a, at_b = np.intersect1d(ex_a, ex_b, assume_unique=True, return_indices=True)
                if len(at_a):
                    yield task.name, a_name, b_name, val_a[at_a], val_b[at_b]


def fill_ttft_stats(candidates: Sequence[CandidateResult], replays: Sequence[ReplayResult]) -> None:
    """Fill each candidate result's ``latency.ttft_p50_ms`` / ``ttft_p95_ms`` from its
    streamed answers (``Response.ttft_ms``); left None for candidates that did not stream."""
    by_candidate: dict[str, list[float]] = {}
    for row in replays:
        if row.ok and row.response is not None and row.response.ttft_ms is not None:
            by_candidate.setdefault(row.candidate, []).append(row.response.ttft_ms)
    for result in candidates:
        values = np.asarray(by_candidate.get(result.name, []), dtype=np.float64)
        if values.size:
            result.latency.ttft_p50_ms = percentile(values, 50)
            result.latency.ttft_p95_ms = percentile(values, 95)


def fill_dropped_params(
    candidates: Sequence[CandidateResult],
    replays: Sequence[ReplayResult],
    assignment: Mapping[str, str],
) -> None:
    """Fill each task result's ``dropped_params``: per soft request field the candidate's API
    has no equivalent for (``ReplayResult.dropped``), on how many of the task's exchanges it
    was removed before sending ("temperature dropped on 50 of 50"). Left None when none was."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for row in replays:
        task = assignment.get(row.exchange_id)
        if row.dropped and task is not None:
            per_task = counts.setdefault((row.candidate, task), {})
            for name in row.dropped:
                per_task[name] = per_task.get(name, 0) + 1
    for result in candidates:
        for task_result in result.tasks:
            found = counts.get((result.name, task_result.task))
            if found:
                task_result.dropped_params = dict(sorted(found.items()))
