"""The results of a run: what ``results.json`` holds (versioned schema) and what reports render.

The scores stage produces a pandas DataFrame with one row per (exchange, candidate) and these
columns (see :data:`SCORE_COLUMNS`), plus one float column per metric, named after the metric:

* ``exchange_id``, ``task``, ``candidate``
* ``status``: ``ok`` (scored), ``error`` (the candidate call failed), ``unsupported``
* ``error``: the error message, or empty
* ``parity``: the exchange's parity in [0, 1] (mean of the task's parity metrics), NaN unless ok
* ``latency_ms``, ``prompt_tokens``, ``completion_tokens``, ``cached``
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from migrate_eval.core.hardware import HardwareFit
from migrate_eval.core.records import OutputKind, StrictModel

SCHEMA_VERSION = "1.2"

SCORE_COLUMNS = (
    "exchange_id",
    "task",
    "candidate",
    "status",
    "error",
    "parity",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached",
)

Verdict = Literal["ready", "ready_with_caveats", "needs_evidence", "not_ready", "cannot_judge"]


class JudgeControls(StrictModel):
    """How the LLM judge did on the planted controls of one task, for one judge metric.

    Every run that scores a judge metric plants controls (docs/metrics.md, "Judge controls"):
    per task a seeded handful of logged answers, each judged against itself (pairwise: must be
    a tie), against an unrelated logged answer of another exchange and against its own first
    15% of words (both must be judged worse). A judge that fails them is not trusted: its
    metrics on the task are NaN and the task is ``cannot_judge`` (``judge_failed_controls``).
    """

    metric: str = Field(description="judge_pairwise or judge_rubric")
    items: int = Field(description="logged answers used as controls")
    checks: int = Field(description="control checks the judge answered")
    correct: int = Field(description="control checks the judge got right")
    errors: int = Field(default=0, description="control checks the judge failed to answer")
    failed: dict[str, int] = Field(
        default_factory=dict,
        description="checks got wrong, by kind: self (vs itself), unrelated, truncated",
    )
    accuracy: float | None = Field(description="correct / checks (None: none answered)")
    position_bias: float | None = Field(
        default=None,
        description="pairwise: share of control pairs of distinct answers whose verdict "
        "changes with the order (None for the rubric)",
    )
    self_agreement: float | None = Field(
        default=None,
        description="pairwise: share of 'logged answer vs itself' controls judged a tie",
    )
    min_accuracy: float = Field(description="the accuracy bar (judge.min_control_accuracy)")
    max_position_bias: float = Field(description="the bias bar (judge.max_position_bias)")
    passed: bool = Field(description="accuracy and position bias within their bars")
    reason: str | None = Field(default=None, description="why the judge is not trusted")
    feedback: dict[str, dict[str, int]] | None = Field(
        default=None,
        description="rubric: the task's logged answers with end-user feedback in the logs' "
        "metadata, counted by feedback (good/bad), then the judge's grade (>= 6: good)",
    )
    feedback_kappa: float | None = Field(
        default=None,
        description="rubric: Cohen's kappa between end-user feedback and the judge (None: no "
        "feedback)",
    )
    prompt_tokens: int = Field(default=0, description="judge tokens the controls spent")
    completion_tokens: int = 0
    cost_usd: float | None = Field(default=None, description="their price with judge.price")


class TaskInfo(StrictModel):
    """A task the traffic performs, as the tasks stage found or the suite named it."""

    name: str
    description: str = ""
    output: OutputKind
    metrics: list[str]
    min_parity: float
    n: int = Field(description="exchanges of this task in the run")
    source: Literal["suite", "metadata", "system_prompt", "fallback", "cluster"]
    metric_weights: dict[str, float] | None = Field(
        default=None, description="weight of each metric in the parity mean (default 1 each)"
    )
    judge_controls: dict[str, JudgeControls] | None = Field(
        default=None,
        description="per judge metric, how the judge did on this task's planted controls",
    )


class Interval(StrictModel):
    mean: float | None
    ci_low: float | None
    ci_high: float | None


class Reason(StrictModel):
    """A machine-readable reason for a verdict, with a sentence for humans."""

    code: str
    message: str


class LatencyStats(StrictModel):
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    # Time to first token, over streamed answers (candidates with `stream: true`).
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None


class CostStats(StrictModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_usd: float | None = None
    per_request_usd: float | None = None
    # Projections at the logged volume and task mix (migrate_eval.verdict.costs); None: unknown.
    monthly_usd: float | None = Field(
        default=None, description="projected cost per month at the logged volume and task mix"
    )
    baseline_per_request_usd: float | None = Field(
        default=None, description="the logged OpenAI model's cost per request (its logged usage)"
    )
    baseline_monthly_usd: float | None = Field(
        default=None, description="the logged OpenAI model's cost per month at the same volume"
    )
    requests_per_day: float | None = Field(
        default=None, description="logged requests per day the projection uses"
    )
    price_source: str | None = Field(
        default=None,
        description="'suite', 'table <as_of>' or 'self-hosted' (where prices came from)",
    )
    servers: int | None = Field(
        default=None,
        description="self-hosted: servers (GPUs) needed for the logged peak rate at the throughput",
    )
    peak_rps: float | None = Field(
        default=None, description="logged peak requests per second (the busiest clock hour)"
    )
    throughput_rps: float | None = Field(
        default=None,
        description="self-hosted: requests per second one server sustains (suite or measured)",
    )
    cost_basis: str | None = Field(
        default=None,
        description="self-hosted: how the monthly cost was computed (servers, hours, rates)",
    )
    throughput_tokens_per_s: float | None = Field(
        default=None,
        description="self-hosted: answer tokens per second one server produced (measured)",
    )
    gpu: str | None = Field(default=None, description="self-hosted: the GPU it is priced on")
    gpus: int | None = Field(
        default=None, description="self-hosted: GPUs needed in all (servers x GPUs per server)"
    )
    gpu_hour_usd: float | None = Field(
        default=None, description="self-hosted: the price of one GPU-hour used"
    )


class ErrorStats(StrictModel):
    count: int = 0
    rate: float = 0.0
    by_kind: dict[str, int] = Field(default_factory=dict)


class LabelAgreement(StrictModel):
    """How the metrics agree with the gold labels of the logs (docs/metrics.md)."""

    n: int = Field(description="scored exchanges with a gold label")
    kappa: dict[str, float | None] = Field(
        description="per metric (and 'parity'), Cohen's kappa between 'passes at "
        "pass_threshold' and 'the candidate matches the gold label'"
    )


class FlipTable(StrictModel):
    """Per item, the candidate against a reference answer: how many exchanges it passes where
    the reference fails (better), fails where the reference passes (worse), or neither."""

    against: Literal["baseline_replay", "logged"] = Field(
        description="baseline_replay: the baseline's re-run of the same request, scored like the "
        "candidate; logged: the logged answer itself (which always passes against itself)"
    )
    better: int
    worse: int
    same: int
    p_mcnemar: float | None = Field(
        default=None, description="McNemar (mid-p) on better vs worse; None without a baseline"
    )


class TaskResult(StrictModel):
    task: str
    n: int = Field(description="exchanges scored (status ok)")
    n_total: int = Field(description="exchanges attempted")
    verdict: Verdict
    reasons: list[Reason]
    parity: Interval
    pass_rate: float | None
    min_parity: float
    metrics: dict[str, float | None] = Field(
        description="mean of each metric over scored exchanges"
    )
    errors: ErrorStats
    kappa: float | None = Field(
        default=None,
        description="classification: Cohen's kappa between logged and candidate labels",
    )
    confusion: dict[str, dict[str, int]] | None = Field(
        default=None,
        description="classification: counts by logged label, then candidate label",
    )
    noise_floor: float | None = Field(
        default=None, description="baseline self-agreement on this task, when measured"
    )
    noise_floor_n: int | None = Field(
        default=None, description="pairs the task's noise floor was measured on"
    )
    effective_threshold: float | None = Field(
        default=None, description="the parity bar the verdict applied (see docs/metrics.md)"
    )
    non_inferior: bool | None = Field(
        default=None,
        description="the CI lower bound is at least noise_floor - margin (None: no noise floor)",
    )
    p_value: float | None = Field(
        default=None,
        description="one-sided p-value that parity is below noise_floor - margin (Wilcoxon/McNemar)",
    )
    p_value_adjusted: float | None = Field(
        default=None, description="p_value after Holm-Bonferroni over all tasks and candidates"
    )
    rates: dict[str, float] = Field(
        default_factory=dict,
        description="event rates, e.g. unexpected_tool_call_rate, missed_tool_call_rate, refusal_mismatch_rate",
    )
    bar_source: Literal["min_parity", "noise_floor", "absolute_floor", "chance_level"] | None = (
        Field(
            default=None,
            description="what set the bar (effective_threshold): the suite's min_parity, the "
            "measured noise floor minus the margin, the absolute floor of the output type, or the "
            "level unrelated answers reach plus the margin",
        )
    )
    bar_explained: str | None = Field(default=None, description="the bar and why, in words")
    evidence: Literal["metrics", "noise_floor", "judge", "none"] | None = Field(
        default=None,
        description="what the verdict rests on: metrics with a meaning of their own (exact, "
        "structural), a measured noise floor, a judge, or none (similarity alone: needs evidence)",
    )
    chance_level: float | None = Field(
        default=None,
        description="parity of logged answers scored against unrelated logged answers of the "
        "same task: what a candidate answering off-topic reaches",
    )
    noise_floor_status: Literal["used", "broken", "none"] | None = Field(
        default=None, description="broken: the baseline re-run disagreed too much to be trusted"
    )
    noise_floor_problem: str | None = None
    flips: FlipTable | None = None
    min_detectable_drop: float | None = Field(
        default=None,
        description="the smallest drop in mean parity this sample detects at 80% power "
        "(one-sided, at the run's confidence)",
    )
    clusters: int | None = Field(
        default=None,
        description="groups of exchanges sharing a conversation, user or session, when the "
        "interval was widened for them (clustered standard error)",
    )
    label_agreement: LabelAgreement | None = Field(
        default=None,
        description="agreement of the judge and the metrics with the logs' gold labels",
    )
    dropped_params: dict[str, int] | None = Field(
        default=None,
        description="soft request fields the candidate's API has no equivalent for, removed "
        "before sending: field -> exchanges of n_total (absent: none dropped)",
    )


class CandidateResult(StrictModel):
    name: str
    provider: str
    model: str
    base_url: str | None = None
    verdict: Verdict
    reasons: list[Reason]
    parity: Interval
    noise_floor: float | None = Field(
        default=None, description="baseline self-agreement, when measured"
    )
    errors: ErrorStats
    latency: LatencyStats
    cost: CostStats
    tasks: list[TaskResult]
    judge_cost: CostStats | None = Field(
        default=None, description="tokens (and price) the LLM judge spent on this candidate"
    )
    hardware: HardwareFit | None = Field(
        default=None,
        description="self-hosted: memory needed at the logged contexts and whether it fits a GPU",
    )


class CandidateComparison(StrictModel):
    """Two candidates compared on the same exchanges of one task (paired tests, docs/metrics.md)."""

    task: str
    a: str = Field(description="first candidate (suite order)")
    b: str = Field(description="second candidate")
    n: int = Field(description="exchanges scored for both candidates")
    mean_diff: float | None = Field(
        description="mean of parity(a) - parity(b) over those exchanges"
    )
    ci_low: float | None = Field(description="paired bootstrap interval of mean_diff, low end")
    ci_high: float | None = Field(description="paired bootstrap interval of mean_diff, high end")
    p_wilcoxon: float | None = Field(
        description="two-sided Wilcoxon signed-rank p-value on the parity differences"
    )
    p_mcnemar: float | None = Field(
        description="two-sided McNemar mid-p on pass/fail at the pass threshold"
    )
    p_adjusted: float | None = Field(
        default=None,
        description="p_wilcoxon after Holm-Bonferroni over all comparisons of the run",
    )
    a_only_passes: int = Field(default=0, description="exchanges a passes and b fails")
    b_only_passes: int = Field(default=0, description="exchanges b passes and a fails")


class IngestSummary(StrictModel):
    files: list[str]
    formats: dict[str, int]
    lines_read: int
    exchanges: int
    skipped: int
    skipped_by_reason: dict[str, int]
    examples: list[str] = Field(
        default_factory=list, description="first few skipped lines, 'file:line: ...'"
    )


class Results(StrictModel):
    schema_version: str = SCHEMA_VERSION
    tool_version: str
    suite: str
    simulated: bool = False
    created: str = Field(description="ISO 8601 time the run finished")
    command: str = Field(description="command that reproduces the run")
    thresholds: dict[str, Any]
    ingest: IngestSummary
    tasks: list[TaskInfo]
    candidates: list[CandidateResult]
    gate: Literal["pass", "fail", "error"]
    exit_code: int
    profile: Profile | None = Field(
        default=None, description="traffic profile of the logs read (migrate_eval/profile.py)"
    )
    sampling: SamplingSummary | None = Field(
        default=None, description="deduplication and per-task sample sizes"
    )
    redaction: RedactionSummary | None = Field(
        default=None, description="PII redaction applied before replay"
    )
    comparisons: list[CandidateComparison] = Field(
        default_factory=list,
        description="per task, every pair of candidates compared on the same exchanges",
    )
    adaptation: AdaptationSummary | None = Field(
        default=None,
        description="prompt adaptation of not-ready tasks (migrate-eval adapt; schema 1.2)",
    )


class RedactionSummary(StrictModel):
    """What redaction did in a run (for the report)."""

    enabled: bool
    entities: list[str]
    exchanges: int = Field(description="exchanges examined")
    exchanges_affected: int = Field(description="exchanges where at least one value was redacted")
    values: int = Field(default=0, description="distinct values replaced (per exchange)")
    by_entity: dict[str, int] = Field(
        default_factory=dict, description="distinct values replaced, by entity type"
    )
    occurrences_by_entity: dict[str, int] = Field(
        default_factory=dict, description="occurrences replaced, by entity type"
    )
    names: str | None = Field(
        default=None,
        description="how person names were looked for: 'heuristic' (titles, greetings, a "
        "first-name list: modest recall), 'presidio', or None when they were not",
    )


class TaskSampling(StrictModel):
    """How one task was sampled."""

    task: str
    available: int = Field(description="exchanges of the task before deduplication")
    duplicates: int = Field(description="identical requests dropped (copies of a kept one)")
    unique: int = Field(description="distinct requests")
    target: int | None = Field(description="sample size asked for (limit / ci_width), or None")
    sampled: int = Field(description="exchanges kept for the run")


class SamplingSummary(StrictModel):
    """How the run's exchanges were chosen (for the report)."""

    seed: int
    dedupe: bool
    limit: int | None = None
    ci_width: float | None = None
    confidence: float = 0.95
    available: int
    duplicates: int
    sampled: int
    tasks: list[TaskSampling]


class Distribution(StrictModel):
    """Percentiles of a token count (nearest-rank)."""

    count: int = 0
    estimated: int = Field(default=0, description="values estimated from text (no usage logged)")
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None
    total: float = 0.0


class FeatureUse(StrictModel):
    count: int
    share: float


class TaskVolume(StrictModel):
    name: str
    count: int
    share: float
    source: str
    output: str


class Duplicates(StrictModel):
    """Identical requests (same canonical body, bookkeeping fields aside)."""

    groups: int = Field(default=0, description="distinct requests logged more than once")
    duplicates: int = Field(default=0, description="copies beyond the first")
    share: float = Field(default=0.0, description="duplicates / exchanges")


class LoggedErrors(StrictModel):
    count: int = 0
    rate: float = 0.0
    by_kind: dict[str, int] = Field(default_factory=dict)


class PiiCounts(StrictModel):
    """Personal data and secrets in the logs, counted per kind (never the values), with the
    detectors of ``--redact`` (``migrate_eval.plan.redact``), so that running without redaction
    is an informed choice."""

    examined: int = Field(description="exchanges whose text was examined")
    sampled: bool = Field(
        default=False,
        description="examined is a sample (every exchange up to a bound, then 1 in n)",
    )
    exchanges_with_pii: int = Field(default=0, description="examined exchanges holding any")
    by_kind: dict[str, int] = Field(
        default_factory=dict, description="occurrences in the examined exchanges, by entity kind"
    )


class Profile(StrictModel):
    """A traffic profile (``migrate-eval profile --json`` prints one)."""

    exchanges: int
    lines_read: int = 0
    files: list[str] = Field(default_factory=list)
    formats: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict, description="skipped lines by reason")
    skipped_total: int = 0
    skipped_examples: list[str] = Field(
        default_factory=list,
        description="the first skipped lines, 'file:line: field 'f': reason' (profile lists them)",
    )
    first: str | None = Field(default=None, description="earliest timestamp (ISO 8601)")
    last: str | None = None
    by_day: dict[str, int] = Field(default_factory=dict, description="exchanges per UTC day")
    undated: int = 0
    by_model: dict[str, int] = Field(default_factory=dict)
    tasks: list[TaskVolume] = Field(default_factory=list)
    features: dict[str, FeatureUse] = Field(default_factory=dict)
    prompt_tokens: Distribution = Field(default_factory=Distribution)
    completion_tokens: Distribution = Field(default_factory=Distribution)
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    duplicates: Duplicates = Field(default_factory=Duplicates)
    errors: LoggedErrors = Field(default_factory=LoggedErrors)
    notes: list[str] = Field(default_factory=list)
    pii: PiiCounts | None = Field(
        default=None, description="personal data and secrets found, per kind (no values)"
    )


# --- prompt adaptation (``migrate-eval adapt``, docs/adapt.md) -----------------------------------

#: Per task and candidate: ready (by the run's gate) after adaptation with a reliable gain; a
#: gain within noise; a reliable gain that still misses the bar; or not attempted (``reason``).
AdaptationOutcome = Literal[
    "ready_after_adaptation", "no_reliable_gain", "not_ready_after_adaptation", "not_adapted"
]


class AdaptCost(StrictModel):
    """What an adaptation attempt took: requests planned, sent and served from the cache, money."""

    planned_requests: int
    optimiser_requests: int = 0
    candidate_requests: int = 0
    cached: int = Field(default=0, description="of those, answered from the response cache")
    cost_usd: float | None = Field(
        default=None, description="priced answers not served from the cache (None: no price)"
    )


class AdaptationPaired(StrictModel):
    """After vs before on the same held-out exchanges (after better: positive differences)."""

    n: int
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    wilcoxon_p: float | None = Field(default=None, description="one-sided: after > before")
    mcnemar_p: float | None = Field(default=None, description="two-sided mid-p on pass/fail")
    after_only_passes: int = 0
    before_only_passes: int = 0


class TaskAdaptationResult(StrictModel):
    """One task and candidate in ``results.json`` (the full record is in ``adaptation.json``)."""

    task: str
    candidate: str
    optimiser: str
    outcome: AdaptationOutcome
    reason: str | None = Field(default=None, description="why it was not adapted")
    run_verdict: Verdict
    verdict_before: Verdict | None = None
    verdict_after: Verdict | None = None
    parity_before: float | None = Field(default=None, description="held-out set, run's answers")
    parity_after: float | None = Field(default=None, description="held-out set, adapted request")
    n_adaptation: int = 0
    n_held_out: int = 0
    paired: AdaptationPaired | None = None
    rounds: int = Field(default=0, description="rounds of proposals run")
    changes: list[str] = Field(
        default_factory=list,
        description="what the adapted request changes: system_prompt, tools/NAME/description, "
        "response_format, tool_choice",
    )
    prompt_diff: str = Field(default="", description="unified diff a developer can paste")
    cost: AdaptCost


class AdaptationSummary(StrictModel):
    """``results.json``'s ``adaptation``: the attempt's settings and one entry per pair."""

    seed: int
    held_out_fraction: float
    alpha: float = Field(description="a gain is reliable when the paired p-value is below this")
    rounds: int = Field(description="rounds of proposals allowed per task and candidate")
    budget: int | None = None
    planned_requests: int
    details: str = Field(default="adaptation.json", description="the full record, in the run")
    results: list[TaskAdaptationResult] = Field(default_factory=list)
