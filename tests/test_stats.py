"""Statistics and verdicts: bootstrap intervals, per-task rules, candidate roll-up, the gate."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

import migrate_eval.verdict.stats as stats
from migrate_eval.core.errors import ConfigError, ExitCode
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source, Usage
from migrate_eval.core.results import SCORE_COLUMNS, CandidateResult, TaskInfo
from migrate_eval.core.suite import CandidateSpec, Gate, Price, Thresholds
from migrate_eval.score import score
from migrate_eval.verdict.aggregate import (
    ABSOLUTE_FLOOR,
    aggregate,
    compare_candidates,
    gate_outcome,
)
from migrate_eval.verdict.stats import bootstrap_ci

# ---------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(7).random(200)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    assert bootstrap_ci(list(values)) == bootstrap_ci(values)
    assert bootstrap_ci(pd.Series(values)) == bootstrap_ci(values)


@pytest.mark.parametrize("n", [2, 10, 100, 5_000, 50_000])
def test_bootstrap_interval_contains_the_mean_and_matches_the_normal_approximation(n: int) -> None:
    values = np.random.default_rng(n).beta(4, 2, size=n)
    low, high = bootstrap_ci(values)
    mean = float(values.mean())
    assert low <= mean <= high
    assert 0.0 <= low < high <= 1.0
    if n >= 100:
        half = 1.96 * values.std(ddof=1) / math.sqrt(n)
        assert (high - low) / 2 == pytest.approx(half, rel=0.15)
        assert (low + high) / 2 == pytest.approx(mean, abs=half * 0.15)


def test_bootstrap_interval_narrows_with_more_data() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (20, 200, 2_000):
        low, high = bootstrap_ci(rng.random(n))
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_higher_confidence_is_wider() -> None:
    values = np.random.default_rng(2).random(300)
    lo90, hi90 = bootstrap_ci(values, confidence=0.90)
    lo99, hi99 = bootstrap_ci(values, confidence=0.99)
    assert lo99 < lo90 and hi99 > hi90


def test_bootstrap_binary_values_use_counts_and_stay_correct() -> None:
    values = (np.random.default_rng(3).random(4_000) < 0.7).astype(float)
    p = values.mean()
    low, high = bootstrap_ci(values)
    half = 1.96 * math.sqrt(p * (1 - p) / values.size)
    assert low < p < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


def test_bootstrap_degenerate_inputs() -> None:
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert all(math.isnan(x) for x in bootstrap_ci([math.nan, math.nan]))
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([0.4, math.nan]) == (0.4, 0.4)  # NaN ignored
    assert bootstrap_ci([1.0] * 50) == (1.0, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([0.1, 0.2], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([0.1, 0.2], n_resamples=0)


def test_bootstrap_memory_is_bounded_by_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    # the resamples are drawn a chunk at a time; the interval does not depend on the chunk's
    # size (the draws are the same stream), so a run's results do not either. An odd size:
    # 32-bit draws come two from one 64-bit word, and a chunk may end on half of one.
    values = np.random.default_rng(4).random(1_001)
    reference = bootstrap_ci(values)
    for budget in (1 << 21, 1 << 16, 2_500):  # 2_500: at most 2 resamples at a time
        monkeypatch.setattr(stats, "_BOOTSTRAP_BUDGET", budget)
        assert bootstrap_ci(values) == reference, budget


def test_bootstrap_large_sample_is_fast_and_centred() -> None:
    values = np.random.default_rng(5).random(300_000)
    low, high = bootstrap_ci(values)
    half = 1.96 * values.std() / math.sqrt(values.size)
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


# ---------------------------------------------------------------------------- verdicts

TH = Thresholds(min_parity=0.8, pass_threshold=0.8, max_error_rate=0.2, min_samples=30)


def _task(name: str = "t", min_parity: float = 0.8, metrics: list[str] | None = None) -> TaskInfo:
    return TaskInfo(
        name=name,
        output="classification",
        metrics=metrics or ["m"],
        min_parity=min_parity,
        n=0,
        source="suite",
    )


def _cand(name: str = "c", price: Price | None = None) -> CandidateSpec:
    return CandidateSpec(
        name=name, provider="openai-compatible", model=f"{name}-model", price=price
    )


def _rows(
    parities: list[float],
    *,
    task: str = "t",
    cand: str = "c",
    errors: dict[str, int] | None = None,
    latency: float = 100.0,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "exchange_id": f"{task}-{i}",
            "task": task,
            "candidate": cand,
            "status": "ok",
            "error": "",
            "parity": p,
            "latency_ms": latency + i,
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "cached": False,
            "m": p,
        }
        for i, p in enumerate(parities)
    ]
    for kind, count in (errors or {}).items():
        for j in range(count):
            rows.append(
                {
                    "exchange_id": f"{task}-{kind}-{j}",
                    "task": task,
                    "candidate": cand,
                    "status": "unsupported" if kind == "unsupported" else "error",
                    "error": f"{kind}: failed",
                    "parity": math.nan,
                    "latency_ms": 99_999.0,
                    "prompt_tokens": None,
                    "completion_tokens": None,
                    "cached": False,
                    "m": math.nan,
                }
            )
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "m"])
    df["prompt_tokens"] = df["prompt_tokens"].astype("Int64")
    df["completion_tokens"] = df["completion_tokens"].astype("Int64")
    return df


def _one(
    rows: list[dict[str, Any]],
    *,
    th: Thresholds = TH,
    tasks: list[TaskInfo] | None = None,
    gate: Gate | None = None,
    price: Price | None = None,
) -> CandidateResult:
    [result] = aggregate(_frame(rows), tasks or [_task()], [_cand(price=price)], th, gate or Gate())
    return result


def _codes(result: Any) -> list[str]:
    return [r.code for r in result.reasons]


def test_ready_when_parity_is_clearly_above_the_minimum() -> None:
    c = _one(_rows([0.95, 1.0] * 50))
    t = c.tasks[0]
    assert (t.verdict, t.reasons, t.n, t.n_total) == ("ready", [], 100, 100)
    assert t.parity.mean == pytest.approx(0.975)
    assert t.parity.ci_low is not None and t.parity.ci_low > 0.8
    assert t.pass_rate == 1.0
    assert t.metrics == {"m": pytest.approx(0.975)}
    assert (c.verdict, c.reasons) == ("ready", [])


def test_not_ready_when_mean_is_below_the_minimum() -> None:
    t = _one(_rows([0.5, 0.7] * 50)).tasks[0]
    assert t.verdict == "not_ready"
    assert _codes(t) == ["parity_below_threshold"]
    assert "0.600" in t.reasons[0].message and "0.800" in t.reasons[0].message
    assert t.pass_rate == 0.0


def test_caveat_when_the_interval_crosses_the_minimum() -> None:
    t = _one(_rows([0.62, 1.0] * 20)).tasks[0]  # mean 0.81, n 40: interval about 0.75-0.87
    assert t.verdict == "ready_with_caveats"
    assert _codes(t) == ["interval_crosses_threshold"]
    assert t.parity.ci_low is not None and t.parity.ci_low < 0.8 <= t.parity.mean  # type: ignore[operator]
    assert "95% CI" in t.reasons[0].message


def test_task_min_parity_is_the_tasks_own() -> None:
    rows = _rows([0.9] * 40)
    assert _one(rows, tasks=[_task(min_parity=0.95)]).tasks[0].verdict == "not_ready"
    assert _one(rows, tasks=[_task(min_parity=0.9)]).tasks[0].verdict == "ready"  # exactly at it


def test_small_samples_are_flagged_never_ready() -> None:
    t = _one(_rows([1.0] * 5)).tasks[0]
    assert t.verdict == "ready_with_caveats"
    assert _codes(t) == ["small_sample"]
    assert "only 5 scored exchanges" in t.reasons[0].message
    # a small sample that is also below the minimum stays not ready, and says both
    t = _one(_rows([0.1] * 5)).tasks[0]
    assert t.verdict == "not_ready"
    assert _codes(t) == ["parity_below_threshold", "small_sample"]


def test_some_vendor_errors_are_a_caveat_with_kinds() -> None:
    t = _one(_rows([1.0] * 95, errors={"http_429": 3, "timeout": 2})).tasks[0]
    assert t.verdict == "ready_with_caveats"
    assert _codes(t) == ["vendor_errors"]
    assert (t.errors.count, t.errors.rate) == (5, 0.05)
    assert t.errors.by_kind == {"http_429": 3, "timeout": 2}
    assert "http_429: 3" in t.reasons[0].message
    assert (t.n, t.n_total) == (95, 100)


def test_too_many_errors_cannot_be_judged() -> None:
    c = _one(_rows([1.0] * 70, errors={"http_500": 30}))
    t = c.tasks[0]
    assert t.verdict == "cannot_judge"
    assert _codes(t) == ["too_many_errors"]
    assert "30 of 100" in t.reasons[0].message and "30.0%" in t.reasons[0].message
    assert c.verdict == "cannot_judge"
    assert gate_outcome([c], Gate()) == ("error", ExitCode.INFRASTRUCTURE)


def test_no_scored_exchange_cannot_be_judged() -> None:
    rows = _rows([math.nan] * 10)  # answered, but no metric applied
    t = _one(rows).tasks[0]
    assert (t.verdict, _codes(t), t.n, t.n_total) == (
        "cannot_judge",
        ["no_scored_exchanges"],
        0,
        10,
    )
    assert t.parity.mean is None and t.pass_rate is None and t.metrics == {"m": None}
    empty = _one([], tasks=[_task()]).tasks[0]  # a task the candidate never saw
    assert (empty.verdict, _codes(empty)) == ("cannot_judge", ["no_scored_exchanges"])


def test_unsupported_requests_are_a_limit_of_the_candidate_not_an_outage() -> None:
    few = _one(_rows([1.0] * 95, errors={"unsupported": 5})).tasks[0]
    assert (few.verdict, _codes(few)) == ("ready_with_caveats", ["unsupported_requests"])
    many = _one(_rows([1.0] * 60, errors={"unsupported": 40})).tasks[0]
    assert (many.verdict, _codes(many)) == ("not_ready", ["unsupported_requests"])
    assert many.errors.by_kind == {"unsupported": 40}


def test_candidate_verdict_is_the_worst_task_and_reasons_name_the_task() -> None:
    rows = (
        _rows([1.0] * 50, task="good")
        + _rows([0.2] * 50, task="bad")
        + _rows([1.0] * 5, task="tiny")
    )
    tasks = [_task("good"), _task("bad"), _task("tiny")]
    c = _one(rows, tasks=tasks)
    assert [t.verdict for t in c.tasks] == ["ready", "not_ready", "ready_with_caveats"]
    assert c.verdict == "not_ready"
    assert _codes(c) == ["parity_below_threshold", "small_sample"]
    assert c.reasons[0].message.startswith("bad: ")
    assert c.reasons[1].message.startswith("tiny: ")
    # only the gated tasks decide
    gated = _one(rows, tasks=tasks, gate=Gate(tasks=["good", "tiny"]))
    assert (gated.verdict, _codes(gated)) == ("ready_with_caveats", ["small_sample"])
    assert len(gated.tasks) == 3  # every task is still reported
    with pytest.raises(ConfigError, match="'nope'"):
        _one(rows, tasks=tasks, gate=Gate(tasks=["nope"]))


def test_candidate_pooled_parity_latency_and_cost() -> None:
    rows = _rows([1.0] * 40, task="a", latency=100.0) + _rows(
        [0.5] * 60, task="b", latency=200.0, errors={"timeout": 1}
    )
    c = _one(
        rows,
        tasks=[_task("a", 0.4), _task("b", 0.4)],
        price=Price(input_per_mtok=2.0, output_per_mtok=10.0),
    )
    assert c.parity.mean == pytest.approx(0.7)  # pooled over exchanges, not a mean of task means
    assert c.parity.ci_low is not None and c.parity.ci_low < 0.7 < c.parity.ci_high  # type: ignore[operator]
    # latency over answered rows only: the failed row's 99,999 ms is left out
    assert c.latency.p99_ms is not None and c.latency.p99_ms < 300
    assert c.latency.p50_ms == pytest.approx(
        float(np.percentile([100 + i for i in range(40)] + [200 + i for i in range(60)], 50))
    )
    assert (c.cost.input_tokens, c.cost.output_tokens) == (10_000, 1_000)
    assert c.cost.total_usd == pytest.approx((10_000 * 2 + 1_000 * 10) / 1e6)
    assert c.cost.per_request_usd == pytest.approx(c.cost.total_usd / 100)  # type: ignore[operator]
    assert (c.errors.count, c.errors.by_kind) == (1, {"timeout": 1})
    assert (c.name, c.model, c.provider) == ("c", "c-model", "openai-compatible")
    assert _one(rows, tasks=[_task("a"), _task("b")]).cost.total_usd is None  # no price given


def test_pass_rate_uses_the_pass_threshold() -> None:
    t = _one(
        _rows([0.79, 0.8, 0.81, 1.0] * 10), th=TH.model_copy(update={"pass_threshold": 0.8})
    ).tasks[0]
    assert t.pass_rate == 0.75


def test_rows_of_other_candidates_and_unknown_tasks_are_ignored() -> None:
    rows = _rows([1.0] * 40) + _rows([0.0] * 40, cand="other") + _rows([0.0] * 40, task="unknown")
    c = _one(rows)
    assert c.tasks[0].n_total == 40 and c.parity.mean == 1.0


def test_end_to_end_from_score() -> None:
    task = TaskInfo(
        name="triage",
        output="classification",
        metrics=["normalized_match"],
        min_parity=0.8,
        n=40,
        source="suite",
    )
    exchanges = [
        Exchange(
            id=f"e{i}",
            source=Source(file="f.jsonl", line=i + 1, format="test"),
            request={"model": "gpt-4o"},
            response=Response(text="positive" if i % 2 else "negative"),
        )
        for i in range(40)
    ]
    replays = [
        ReplayResult(
            exchange_id=e.id,
            candidate="c",
            response=Response(
                text=e.response.text.upper() if e.response and e.response.text else "",
                usage=Usage(prompt_tokens=10, completion_tokens=1),
            ),
            latency_ms=50.0,
        )
        for e in exchanges
    ]
    df = score(exchanges, [task], {e.id: "triage" for e in exchanges}, replays)
    [c] = aggregate(df, [task], [_cand()], TH, Gate())
    assert c.verdict == "ready"
    assert c.tasks[0].metrics == {"normalized_match": 1.0}
    assert gate_outcome([c], Gate()) == ("pass", ExitCode.READY)


# ---------------------------------------------------------------------------- gate


def _result(verdict: Any) -> CandidateResult:
    c = _one(_rows([1.0] * 40))
    return c.model_copy(update={"verdict": verdict})


@pytest.mark.parametrize(
    ("verdicts", "allow_caveats", "expected"),
    [
        (["ready"], True, ("pass", ExitCode.READY)),
        (["ready", "ready_with_caveats"], True, ("pass", ExitCode.READY)),
        (["ready", "ready_with_caveats"], False, ("fail", ExitCode.NOT_READY)),
        (["ready", "not_ready"], True, ("fail", ExitCode.NOT_READY)),
        (["not_ready", "cannot_judge"], True, ("error", ExitCode.INFRASTRUCTURE)),
        ([], True, ("error", ExitCode.INFRASTRUCTURE)),
    ],
)
def test_gate_outcome(
    verdicts: list[str], allow_caveats: bool, expected: tuple[str, ExitCode]
) -> None:
    outcome = gate_outcome([_result(v) for v in verdicts], Gate(allow_caveats=allow_caveats))
    assert outcome == expected
    assert int(outcome[1]) == {"pass": 0, "fail": 1, "error": 3}[outcome[0]]


# --- kappa, confusion, paired tests, Holm, noise floor ------------------------------------------


def test_cohen_kappa_and_confusion_matrix() -> None:
    from migrate_eval.verdict.stats import cohen_kappa, confusion_matrix

    ref = ["a", "a", "b", "b"]
    assert cohen_kappa(ref, ref) == 1.0
    assert cohen_kappa(ref, ["a", "b", "a", "b"]) == pytest.approx(0.0)
    assert cohen_kappa(ref, ["b", "b", "a", "a"]) == pytest.approx(-1.0)
    # textbook example: p_o = 0.7, p_e = 0.5 -> 0.4
    r = ["y"] * 50 + ["n"] * 50
    c = ["y"] * 35 + ["n"] * 15 + ["y"] * 15 + ["n"] * 35
    assert cohen_kappa(r, c) == pytest.approx(0.4)
    assert cohen_kappa(["x"] * 3, ["x"] * 3) == 1.0
    assert cohen_kappa([], []) is None
    assert confusion_matrix(ref, ["a", "b", "b", "b"]) == {"a": {"a": 1, "b": 1}, "b": {"b": 2}}


def test_kappa_and_confusion_reach_the_task_result() -> None:
    rows = _rows([1.0, 1.0, 0.0, 1.0] * 10)
    for i, row in enumerate(rows):
        row["reference_label"] = "pos" if i % 2 else "neg"
        row["candidate_label"] = row["reference_label"] if row["parity"] == 1.0 else "pos"
    df = pd.DataFrame(rows)
    df["prompt_tokens"] = df["prompt_tokens"].astype("Int64")
    df["completion_tokens"] = df["completion_tokens"].astype("Int64")
    [res] = aggregate(df, [_task()], [_cand()], TH, Gate())
    t = res.tasks[0]
    assert t.confusion == {"neg": {"neg": 10, "pos": 10}, "pos": {"pos": 20}}
    assert t.kappa == pytest.approx(0.5)


def test_mcnemar_exact_and_mid_p() -> None:
    from scipy.stats import binomtest

    from migrate_eval.verdict.stats import mcnemar

    assert mcnemar(0, 0) == 1.0
    exact = binomtest(2, 12, 0.5).pvalue
    assert mcnemar(2, 10, mid_p=False) == pytest.approx(exact)
    assert mcnemar(10, 2) == pytest.approx(exact - 66 * 0.5**12)  # 2 (P(X<=2) - P(X=2) / 2)
    assert mcnemar(6, 6) == pytest.approx(1.0)


def test_holm_bonferroni() -> None:
    from migrate_eval.verdict.stats import holm

    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])  # type: ignore[arg-type]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_compare_paired_candidates_on_the_same_exchanges() -> None:
    from migrate_eval.verdict.stats import compare_paired

    rng = np.random.default_rng(3)
    a = pd.Series(np.clip(rng.normal(0.9, 0.05, 200), 0, 1), index=[f"e{i}" for i in range(200)])
    b = (a - 0.1).clip(0, 1)
    out = compare_paired(a, b, pass_threshold=0.85)
    assert out.n == 200
    assert out.mean_difference == pytest.approx(0.1, abs=0.01)
    assert out.ci_low is not None and out.ci_low > 0.05
    assert out.wilcoxon_p is not None and out.wilcoxon_p < 1e-10
    assert out.mcnemar_p is not None and out.mcnemar_p < 1e-6
    assert out.second_only_passes == 0
    same = compare_paired(a, a)
    assert same.mean_difference == 0.0 and same.wilcoxon_p is None and same.mcnemar_p == 1.0


def _noise(mean: float, n: int = 50) -> Any:
    from migrate_eval.verdict.noise import NoiseFloor, TaskNoise

    return NoiseFloor(
        source="duplicates", tasks={"t": TaskNoise(mean=mean, n=n)}, overall=mean, n=n
    )


def test_noise_floor_lowers_the_bar_to_floor_minus_margin() -> None:
    rows = _rows([0.75, 0.8, 0.85] * 20)  # mean 0.8
    th = TH.model_copy(update={"min_parity": 0.9, "margin": 0.05})
    [res] = aggregate(_frame(rows), [_task(min_parity=0.9)], [_cand()], th, Gate())
    assert res.tasks[0].verdict == "not_ready"  # no noise floor: 0.8 < 0.9
    assert res.tasks[0].effective_threshold == 0.9 and res.noise_floor is None
    [res] = aggregate(
        _frame(rows), [_task(min_parity=0.9)], [_cand()], th, Gate(), noise_floor=_noise(0.82)
    )
    t = res.tasks[0]
    assert t.noise_floor == 0.82 and res.noise_floor == 0.82
    assert t.effective_threshold == pytest.approx(0.77)
    assert t.non_inferior is True
    assert t.verdict == "ready" and t.p_value is not None and t.p_value < 0.05
    # a floor above min_parity never raises the bar
    [res] = aggregate(
        _frame(rows), [_task(min_parity=0.7)], [_cand()], th, Gate(), noise_floor=_noise(0.99)
    )
    assert res.tasks[0].effective_threshold == 0.7
    assert res.tasks[0].non_inferior is False  # CI below 0.94, reported, not the verdict
    assert res.tasks[0].verdict == "ready"


def test_noise_floor_on_few_pairs_is_a_caveat() -> None:
    rows = _rows([0.8] * 40)
    th = TH.model_copy(update={"min_parity": 0.9})
    [res] = aggregate(
        _frame(rows), [_task(min_parity=0.9)], [_cand()], th, Gate(), noise_floor=_noise(0.85, n=5)
    )
    assert res.tasks[0].verdict == "ready_with_caveats"
    assert "noise_floor_small_sample" in _codes(res.tasks[0])


def test_holm_correction_makes_weak_evidence_a_caveat() -> None:
    # 6 exchanges all above the bar: the interval clears it and the one-sided Wilcoxon p is
    # 1/64 alone, but not after Holm over 40 tests (40/64 > 0.05)
    tasks = [_task(f"t{i}", min_parity=0.5) for i in range(40)]
    rows: list[dict[str, Any]] = []
    for i in range(40):
        rows += _rows([0.52, 0.56, 0.6, 0.53, 0.58, 0.55], task=f"t{i}")
    from migrate_eval.verdict.noise import NoiseFloor, TaskNoise

    floor = NoiseFloor(
        source="duplicates",
        tasks={f"t{i}": TaskNoise(mean=0.6, n=50) for i in range(40)},
        overall=0.6,
        n=2000,
    )
    th = TH.model_copy(update={"min_samples": 1})
    [res] = aggregate(_frame(rows), tasks, [_cand()], th, Gate(), noise_floor=floor)
    t = res.tasks[0]
    assert t.p_value == pytest.approx(1 / 64)
    assert t.p_value_adjusted == pytest.approx(40 / 64)
    assert t.verdict == "ready_with_caveats"
    assert _codes(t) == ["not_significant_after_correction"]
    assert res.verdict == "ready_with_caveats"
    assert any(r.code == "not_significant_after_correction" for r in res.reasons)
    # the same evidence alone is significant: ready
    [one] = aggregate(_frame(rows[:6]), tasks[:1], [_cand()], th, Gate(), noise_floor=floor)
    assert one.tasks[0].verdict == "ready"


def _ex(i: str, content: str, text: str, ts: int) -> Exchange:
    return Exchange(
        id=i,
        source=Source(file="f", line=ts, format="t"),
        timestamp=datetime(2026, 1, 1, 0, ts, tzinfo=UTC),
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": content}]},
        response=Response(text=text),
    )


def test_noise_floor_from_duplicates_and_from_replays() -> None:
    from migrate_eval.verdict.noise import noise_floor_from_duplicates, noise_floor_from_replays

    task = TaskInfo(
        name="t",
        output="classification",
        metrics=["normalized_match"],
        min_parity=0.8,
        n=6,
        source="suite",
    )
    exs = [
        _ex("a1", "hi", "Positive", 1),
        _ex("a2", "hi", "positive.", 2),
        _ex("a3", "hi", "negative", 3),
        _ex("b1", "yo", "neutral", 1),
        _ex("b2", "yo", "neutral", 2),
        _ex("c1", "alone", "neutral", 1),
    ]
    assignment = {e.id: "t" for e in exs}
    floor = noise_floor_from_duplicates(exs, [task], assignment)
    assert floor is not None and floor.source == "duplicates"
    # pairs: a1-a2 agree, a2-a3 disagree, b1-b2 agree
    assert floor.tasks["t"].n == 3 and floor.tasks["t"].mean == pytest.approx(2 / 3)
    assert noise_floor_from_duplicates(exs[-1:], [task], assignment) is None
    replays = [
        ReplayResult(exchange_id="a1", candidate="baseline", response=Response(text="positive")),
        ReplayResult(exchange_id="b1", candidate="baseline", response=Response(text="negative")),
        ReplayResult(exchange_id="c1", candidate="baseline", error="boom"),
    ]
    rep = noise_floor_from_replays(exs, [task], assignment, replays)
    assert rep.source == "baseline_replay" and rep.tasks["t"].mean == 0.5 and rep.n == 2
    assert rep.tasks["t"].parities == {"a1": 1.0, "b1": 0.0}


def test_noise_floor_of_a_large_log_scores_a_seeded_sample_of_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import migrate_eval.plan.traffic as traffic_mod
    import migrate_eval.verdict.noise as stats_mod

    monkeypatch.setattr(traffic_mod, "MAX_NOISE_PAIRS", 40)
    task = TaskInfo(name="t", output="classification", metrics=["normalized_match"], min_parity=0.8, n=0, source="suite")  # fmt: skip
    # 300 requests logged twice: 3 in 4 repeats agree with the first answer
    exs = []
    for i in range(300):
        exs.append(_ex(f"q{i}-1", f"q{i}", "yes", 1))
        exs.append(_ex(f"q{i}-2", f"q{i}", "yes" if i % 4 else "no", 2))
    assignment = {e.id: "t" for e in exs}
    floor = stats_mod.noise_floor_from_duplicates(exs, [task], assignment)
    assert floor is not None and floor.tasks["t"].n == 40 == len(floor.tasks["t"].parities)
    again = stats_mod.noise_floor_from_duplicates(exs, [task], assignment)
    assert again == floor  # the same sample every time
    assert 0.5 < (floor.tasks["t"].mean or 0) < 0.95  # an estimate of the true 0.75


def test_task_rates_come_from_the_agreement_metrics() -> None:
    rows = _rows([1.0, 0.0] * 20)
    for r in rows:
        r["no_unexpected_tool_call"] = r["parity"]
    df = pd.DataFrame(rows)
    df["prompt_tokens"] = df["prompt_tokens"].astype("Int64")
    df["completion_tokens"] = df["completion_tokens"].astype("Int64")
    [res] = aggregate(df, [_task(metrics=["m", "no_unexpected_tool_call"])], [_cand()], TH, Gate())
    assert res.tasks[0].rates == {"unexpected_tool_call_rate": pytest.approx(0.5)}


@pytest.mark.slow
def test_demo_run_measures_the_noise_floor_from_duplicate_requests(tmp_path: Any) -> None:
    import migrate_eval

    outcome = migrate_eval.run(out=tmp_path / "run", offline=True)
    cand = outcome.results.candidates[0]
    measured = [t for t in cand.tasks if t.noise_floor_n]
    assert measured, "the demo logs repeat requests: some task has a noise floor"
    assert cand.noise_floor is not None
    for t in measured:
        # one bar per task, named: the noise floor minus the margin where it set it, and never
        # below the floor of the output kind
        assert t.bar_source in ("min_parity", "noise_floor", "absolute_floor", "chance_level")
        if t.bar_source == "noise_floor":
            assert t.effective_threshold == pytest.approx((t.noise_floor or 0) - 0.05)
        assert (t.effective_threshold or 0) >= ABSOLUTE_FLOOR["free_text"]
        assert t.bar_explained and f"{t.effective_threshold:.3f}" in t.bar_explained
        assert t.p_value_adjusted is not None
    triage = next(t for t in cand.tasks if t.task == "ticket-triage")
    assert triage.kappa is not None and triage.confusion


# ---------------------------------------------------------------------------- candidate pairs


def _pair_scores(parities: dict[str, list[float]], task: str = "t") -> pd.DataFrame:
    rows = [
        {
            "exchange_id": f"{task}-{i}",
            "task": task,
            "candidate": cand,
            "status": "ok",
            "error": "",
            "parity": p,
            "latency_ms": 100.0,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "cached": False,
        }
        for cand, values in parities.items()
        for i, p in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def _pair_task(name: str = "t", n: int = 60) -> TaskInfo:
    return TaskInfo(
        name=name, output="free_text", metrics=["m"], min_parity=0.8, n=n, source="suite"
    )


def test_compare_candidates_finds_a_clearly_better_candidate() -> None:
    rng = np.random.default_rng(11)
    good = np.clip(rng.normal(0.92, 0.05, 60), 0, 1)
    bad = np.clip(good - 0.15 + rng.normal(0, 0.03, 60), 0, 1)
    scores = _pair_scores({"good": list(good), "bad": list(bad), "twin": list(good)})
    out = compare_candidates(scores, [_pair_task()], ["good", "bad", "twin"], Thresholds())
    by_pair = {(c.a, c.b): c for c in out}
    assert set(by_pair) == {("good", "bad"), ("good", "twin"), ("bad", "twin")}

    better = by_pair[("good", "bad")]
    assert better.task == "t" and better.n == 60
    assert better.mean_diff == pytest.approx(float((good - bad).mean()))
    assert better.ci_low is not None and better.ci_high is not None
    assert better.mean_diff is not None
    assert 0 < better.ci_low <= better.mean_diff <= better.ci_high
    assert better.p_wilcoxon is not None and better.p_wilcoxon < 0.05
    assert better.p_mcnemar is not None and better.p_mcnemar < 0.05
    assert better.a_only_passes > 0 and better.b_only_passes == 0
    # the other order of the same pair: the difference changes sign, the p-values do not
    worse = by_pair[("bad", "twin")]
    assert worse.mean_diff == pytest.approx(-float((good - bad).mean()))
    assert worse.ci_high is not None and worse.ci_high < 0
    assert worse.p_wilcoxon == pytest.approx(better.p_wilcoxon)

    same = by_pair[("good", "twin")]
    assert same.mean_diff == 0.0 and same.ci_low == 0.0 and same.ci_high == 0.0
    assert same.p_wilcoxon == 1.0 and same.p_mcnemar == 1.0

    # Holm over every comparison of the run: never below the raw p-value, 1 stays 1
    for c in out:
        assert c.p_adjusted is not None and c.p_wilcoxon is not None
        assert c.p_wilcoxon <= c.p_adjusted <= 1.0
    assert same.p_adjusted == 1.0
    assert better.p_adjusted is not None and better.p_adjusted < 0.05


def test_compare_candidates_pairs_only_exchanges_scored_for_both() -> None:
    scores = _pair_scores({"a": [0.9] * 10, "b": [0.5] * 10})
    # a failed call and an exchange the second candidate never saw are left out
    scores.loc[(scores["candidate"] == "b") & (scores["exchange_id"] == "t-0"), "status"] = "error"
    scores = scores[~((scores["candidate"] == "b") & (scores["exchange_id"] == "t-1"))]
    out = compare_candidates(scores, [_pair_task(), _pair_task("empty")], ["a", "b"], Thresholds())
    assert len(out) == 1  # the task without scores gives no comparison
    assert out[0].n == 8 and out[0].mean_diff == pytest.approx(0.4)
    # one candidate: nothing to compare
    assert compare_candidates(scores, [_pair_task()], ["a"], Thresholds()) == []


def test_comparisons_are_ordered_by_task_then_candidate_order() -> None:
    scores = pd.concat(
        [
            _pair_scores({"x": [0.9, 0.8, 0.7], "y": [0.9, 0.8, 0.6]}, task="t2"),
            _pair_scores({"x": [0.5, 0.6, 0.7], "y": [0.4, 0.6, 0.7]}, task="t1"),
        ],
        ignore_index=True,
    )
    out = compare_candidates(scores, [_pair_task("t1"), _pair_task("t2")], ["y", "x"], Thresholds())
    assert [(c.task, c.a, c.b) for c in out] == [("t1", "y", "x"), ("t2", "y", "x")]


def _pivot_comparisons(
    scores: pd.DataFrame, tasks: list[TaskInfo], names: list[str]
) -> list[tuple[str, str, str, list[float], list[float]]]:
    """The pairs as the former pivot of the whole frame gave them (the reference)."""
    ok = scores[(scores["status"] == "ok") & scores["parity"].notna()]
    ok = ok[ok["candidate"].isin(names)]
    every = ok.pivot_table(
        index=["task", "exchange_id"], columns="candidate", values="parity", aggfunc="mean"
    )
    out = []
    for task in tasks:
        if task.name not in set(every.index.get_level_values(0)):
            continue
        wide = every.xs(task.name, level="task")
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if a in wide.columns and b in wide.columns:
                    pair = wide[[a, b]].dropna()
                    if not pair.empty:
                        out.append((task.name, a, b, pair[a].tolist(), pair[b].tolist()))
    return out


def test_candidate_pairs_from_codes_equal_the_pivot_of_the_frame() -> None:
    # a million exchanges are not pivoted any more (it held copies of every id): the pairs,
    # their order by exchange id and the means of repeated rows are the pivot's, to the bit
    from migrate_eval.verdict.aggregate import _paired_parities

    rng = np.random.default_rng(5)
    rows = []
    for _ in range(3000):
        task = f"t{rng.integers(3)}"
        ex = f"ex-{rng.integers(200):04d}{'x' * int(rng.integers(3))}"  # ids of unequal length
        rows.append(
            {
                "exchange_id": ex,
                "task": task,
                "candidate": ["a", "b", "c", "d"][int(rng.integers(4))],
                "status": "ok" if rng.random() > 0.1 else "error",
                "parity": float(rng.random()) if rng.random() > 0.05 else float("nan"),
            }
        )
    scores = pd.DataFrame(rows)
    tasks = [_pair_task("t2"), _pair_task("t0"), _pair_task("none"), _pair_task("t1")]
    names = ["c", "a", "b"]
    got = [
        (t, a, b, x.tolist(), y.tolist())
        for t, a, b, x, y in _paired_parities(scores, tasks, names)
    ]
    assert got == _pivot_comparisons(scores, tasks, names)
    assert len(got) == 9 and any(len(x) > 20 for *_, x, _ in got)
