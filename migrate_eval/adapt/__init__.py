"""Prompt adaptation: from "not ready" to "ready after these changes", proven on held-out traffic.

For each task and candidate of a finished run that is not ready (:func:`adapt_run`):

1. the task's exchanges are split into an adaptation set and a held-out set (seeded, stratified
   by the logged label where the task has labels, disjoint); the held-out set is never shown to
   the optimiser;
2. the optimiser (any provider: the suite's candidate itself by default) is shown failures from
   the adaptation set (request, logged answer, candidate answer) and a few logged answers as
   examples, and asked for an edited system prompt; a few proposals are asked for;
3. each proposal is applied to the adaptation set's requests (the system message replaced, or
   prepended when there is none) and replayed; the best one on the adaptation set is kept;
4. the held-out set is replayed with the best proposal and scored with the run's metrics, then
   aggregated with the run's thresholds, gate and noise floor, before (the run's own answers
   on those exchanges) and after; the paired test (one-sided Wilcoxon signed-rank, after better)
   says whether the gain is reliable. A gain within noise is "no reliable gain" and never makes
   a task ready.

Every call (optimiser and candidate) goes through the response cache and
:func:`~migrate_eval.replay.engine.replay`, so an interrupted adaptation resumes where it
stopped. The plan (requests and money) is known before the first request and handed to
``notify``; a ``budget`` in requests shrinks the plan (fewer proposals, a smaller adaptation
replay) or skips a pair with the reason.
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from migrate_eval.core.errors import UserError
from migrate_eval.core.prices import candidate_price, cost_of
from migrate_eval.core.records import Exchange, ReplayResult, StrictModel
from migrate_eval.core.request import ChatRequest
from migrate_eval.core.results import Results, TaskInfo, TaskResult, Verdict
from migrate_eval.core.run_folder import RunFolder
from migrate_eval.core.suite import CandidateSpec, Suite
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.score import score
from migrate_eval.verdict.aggregate import aggregate, clusters_of
from migrate_eval.verdict.noise import NoiseFloor, TaskNoise, chance_levels
from migrate_eval.verdict.stats import PairedComparison, compare_paired

ADAPTATION_FILE = "adaptation.json"

#: What the optimiser is told (its system message). The user message carries the task.
OPTIMISER_INSTRUCTIONS = (
    "You improve the system prompt of an application so that a new model answers like the "
    "logged answers. You are shown the current system prompt, failures (the request, the "
    "expected logged answer, the new model's answer) and examples of expected answers. Write "
    "an edited system prompt: add instructions, output format hints (the exact JSON shape, the "
    "language, the length) and, where useful, few-shot examples taken from the expected "
    "answers. Where the application offers tools and the new model picks the wrong one, you may "
    "also rewrite tool descriptions (say when to use each tool). Answer with one JSON object: "
    '{"system_prompt": "<the whole new system prompt>", "tool_descriptions": {"<tool name>": '
    '"<new description>"}} (tool_descriptions is optional).'
)

GainLabel = Literal["reliable_gain", "no_reliable_gain", "worse"]


class Proposal(StrictModel):
    """One edited system prompt the optimiser proposed, and how it did on the adaptation set."""

    index: int
    system_prompt: str
    tool_descriptions: dict[str, str] = Field(
        default_factory=dict, description="new description per tool name (others unchanged)"
    )
    adaptation_parity: float | None = Field(
        description="mean parity on the adaptation set's replay with this prompt"
    )


class AdaptCost(StrictModel):
    """What the attempt took: requests planned, sent and served from the cache, and money."""

    planned_requests: int
    optimiser_requests: int = 0
    candidate_requests: int = 0
    cached: int = Field(default=0, description="of those, answered from the response cache")
    cost_usd: float | None = Field(
        default=None, description="priced answers not served from the cache (None: no price)"
    )


class TaskAdaptation(StrictModel):
    """One task and candidate: before and after on the same held-out exchanges."""

    task: str
    candidate: str
    optimiser: str
    status: Literal["adapted", "skipped"]
    reason: str | None = Field(default=None, description="why it was skipped")
    run_verdict: Verdict
    adaptation_ids: list[str] = Field(default_factory=list)
    held_out_ids: list[str] = Field(default_factory=list)
    verdict_before: Verdict | None = Field(
        default=None, description="held-out exchanges, the run's answers, the run's bar"
    )
    verdict_after: Verdict | None = Field(
        default=None, description="held-out exchanges, the adapted prompt, the same bar"
    )
    parity_before: float | None = None
    parity_after: float | None = None
    paired: PairedComparison | None = Field(
        default=None, description="after vs before on the held-out exchanges (after better)"
    )
    gain: GainLabel | None = None
    ready_after: bool = Field(
        default=False,
        description="ready (by the run's gate) after adaptation, with a reliable gain",
    )
    system_prompt_before: str = ""
    system_prompt_after: str | None = None
    tool_descriptions_after: dict[str, str] = Field(
        default_factory=dict, description="tool descriptions the adapted requests carry"
    )
    prompt_diff: str = Field(default="", description="unified diff of the system prompt")
    proposals: list[Proposal] = Field(default_factory=list)
    cost: AdaptCost


class Adaptation(StrictModel):
    """``adaptation.json``: the whole attempt on a run folder."""

    run_dir: str
    seed: int
    held_out_fraction: float
    alpha: float = Field(description="a gain is reliable when the paired p-value is below this")
    budget: int | None
    planned_requests: int
    results: list[TaskAdaptation]


# --- splitting ------------------------------------------------------------------------------


def split_exchanges(
    exchanges: Sequence[Exchange], *, held_out_fraction: float, seed: int, stratify: bool
) -> tuple[list[str], list[str]]:
    """Adaptation and held-out exchange ids: seeded, disjoint, stratified by logged label.

    With ``stratify``, each logged label (the gold label, else the logged answer's text) is
    split on its own, so both sets carry every label the task has in the same proportions.
    """
    strata: dict[str, list[str]] = {}
    for ex in sorted(exchanges, key=lambda e: e.id):
        key = ""
        if stratify:
            key = ex.gold or (ex.response.text if ex.response is not None else "") or ""
        strata.setdefault(key.strip(), []).append(ex.id)
    rng = random.Random(seed)
    adapt_ids: list[str] = []
    held: list[str] = []
    for key in sorted(strata):
        ids = strata[key]
        rng.shuffle(ids)
        n_held = round(len(ids) * held_out_fraction)
        if len(ids) >= 2:
            n_held = min(max(n_held, 1), len(ids) - 1)
        held.extend(ids[:n_held])
        adapt_ids.extend(ids[n_held:])
    return sorted(adapt_ids), sorted(held)


# --- proposals ------------------------------------------------------------------------------


def with_system_prompt(
    ex: Exchange,
    prompt: str,
    tool_descriptions: Mapping[str, str] | None = None,
    *,
    base: str | None = None,
) -> Exchange:
    """The exchange with its system message replaced by ``prompt`` (prepended if none) and the
    named tools' descriptions replaced (tools the request does not have are ignored).

    With ``base`` (the system prompt the optimiser saw) and an exchange whose own system prompt
    differs from it (a per-request template: context, the user's data), its system messages are
    kept and ``prompt`` is prepended, so that nothing of the request is lost.
    """
    body = json.loads(json.dumps(ex.request.body))
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    keep_own = base is not None and ex.system_prompt not in ("", base)
    rest = (
        messages
        if keep_own
        else [m for m in messages if m.get("role") not in ("system", "developer")]
    )
    body["messages"] = [{"role": "system", "content": prompt}, *rest]
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name") in (tool_descriptions or {}):
            fn["description"] = (tool_descriptions or {})[fn["name"]]
    return ex.model_copy(update={"request": ChatRequest(body)})


def tool_descriptions(exchanges: Sequence[Exchange]) -> dict[str, str]:
    """Each tool the requests offer, by name: its description (the first one seen)."""
    out: dict[str, str] = {}
    for ex in exchanges:
        for tool in ex.request.body.get("tools") or []:
            fn = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                out.setdefault(fn["name"], str(fn.get("description") or ""))
    return out


def _answer_text(r: Any) -> str:
    if r is None:
        return "(no answer)"
    if getattr(r, "tool_calls", None):
        calls = [{"name": c.name, "arguments": c.arguments} for c in r.tool_calls]
        return json.dumps(calls, ensure_ascii=False)
    return str(r.text or "")


def optimiser_request(
    spec: CandidateSpec,
    current_prompt: str,
    failures: Sequence[tuple[Exchange, ReplayResult | None]],
    examples: Sequence[Exchange],
    attempt: int,
    tools: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The request the optimiser gets: adaptation-set material only."""
    shown = {
        "attempt": attempt,
        "current_system_prompt": current_prompt,
        "tool_descriptions": dict(tools or {}),
        "failures": [
            {
                "request": [
                    m
                    for m in ex.request.body.get("messages") or []
                    if isinstance(m, dict) and m.get("role") not in ("system", "developer")
                ],
                "expected_answer": _answer_text(ex.response),
                "new_model_answer": _answer_text(r.response if r is not None else None)
                if r is not None and r.ok
                else f"(error: {r.error if r is not None else 'no answer'})",
            }
            for ex, r in failures
        ],
        "examples_of_expected_answers": [_answer_text(ex.response) for ex in examples],
    }
    return {
        "model": spec.model,
        "messages": [
            {"role": "system", "content": OPTIMISER_INSTRUCTIONS},
            {"role": "user", "content": json.dumps(shown, ensure_ascii=False, indent=1)},
        ],
    }


def parse_tool_descriptions(text: str | None) -> dict[str, str]:
    """The ``tool_descriptions`` object of the optimiser's answer (empty when absent)."""
    s = (text or "").strip()
    start, end = s.find("{"), s.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        doc = json.loads(s[start : end + 1])
    except ValueError:
        return {}
    tools = doc.get("tool_descriptions") if isinstance(doc, dict) else None
    if not isinstance(tools, dict):
        return {}
    return {str(k): v for k, v in tools.items() if isinstance(v, str) and v.strip()}


def parse_proposal(text: str | None) -> str | None:
    """The system prompt in the optimiser's answer (a JSON object, or the bare text)."""
    if not text or not text.strip():
        return None
    s = text.strip()
    if s.startswith("```"):
        s = s.strip("`")
        s = s.split("\n", 1)[1] if "\n" in s else s
    start, end = s.find("{"), s.rfind("}")
    if start >= 0 and end > start:
        try:
            doc = json.loads(s[start : end + 1])
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("system_prompt"), str):
            return str(doc["system_prompt"]).strip() or None
    return s


def prompt_diff(before: str, after: str, task: str, what: str = "system_prompt") -> str:
    """A unified diff of the system prompt (or of ``what``: a tool's description) a developer
    can paste (or apply with ``patch``)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{task}/{what} (before)",
        tofile=f"{task}/{what} (adapted)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --- the loop -------------------------------------------------------------------------------


class _Ledger:
    def __init__(self) -> None:
        self.optimiser = 0
        self.candidate = 0
        self.cached = 0
        self.cost: float | None = None

    def add(self, rows: Sequence[ReplayResult], spec: CandidateSpec, role: str) -> None:
        if role == "optimiser":
            self.optimiser += len(rows)
        else:
            self.candidate += len(rows)
        price, _ = candidate_price(spec)
        for r in rows:
            if r.cached:
                self.cached += 1
                continue
            if price is not None and r.response is not None:
                c = cost_of(r.response.usage, price)
                if c is not None:
                    self.cost = (self.cost or 0.0) + c


def _is_ready(verdict: Verdict | None, allow_caveats: bool) -> bool:
    return verdict == "ready" or (verdict == "ready_with_caveats" and allow_caveats)


def _noise_floor(results: Results) -> NoiseFloor | None:
    tasks: dict[str, TaskNoise] = {}
    for c in results.candidates:
        for t in c.tasks:
            if t.noise_floor is not None and t.task not in tasks:
                tasks[t.task] = TaskNoise(mean=t.noise_floor, n=t.noise_floor_n or 0)
    if not tasks:
        return None
    return NoiseFloor(source="baseline_replay", tasks=tasks, overall=None, n=0)


def _task_result(
    frame: pd.DataFrame,
    task: TaskInfo,
    spec: CandidateSpec,
    suite: Suite,
    noise: NoiseFloor | None,
    chance: Mapping[str, float],
    clusters: Mapping[str, str],
) -> TaskResult:
    res = aggregate(
        frame.reset_index(drop=True),
        [task],
        [spec],
        suite.thresholds,
        suite.gate.model_copy(update={"tasks": None}),
        noise_floor=noise,
        chance=chance,
        clusters=clusters,
    )
    return res[0].tasks[0]


def _parities(frame: pd.DataFrame) -> pd.Series:
    ok = frame[frame["status"] == "ok"]
    s = pd.Series(ok["parity"].to_numpy(dtype=float), index=ok["exchange_id"].astype(str))
    # an error row counts as parity 0 in the paired test: an edit that breaks answers is worse
    errors = frame[frame["status"] != "ok"]["exchange_id"].astype(str)
    joined: pd.Series = pd.concat([s, pd.Series(0.0, index=errors)]).sort_index()
    return joined


def plan_requests(n_adapt: int, n_held: int, proposals: int) -> int:
    """Requests one task and candidate needs: the proposals, their replays, the held-out set."""
    return proposals + proposals * n_adapt + n_held


def adapt_run(
    run_dir: str | Path,
    *,
    cache_path: Path,
    tasks: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    optimiser: CandidateSpec | None = None,
    budget: int | None = None,
    proposals: int = 3,
    held_out_fraction: float = 0.5,
    seed: int | None = None,
    alpha: float | None = None,
    max_failures: int = 5,
    max_examples: int = 3,
    offline: bool = False,
    notify: Callable[[str], None] | None = None,
    confirm: Callable[[int, float | None], bool] | None = None,
) -> Adaptation:
    """Adapt the prompts of every task and candidate of a run that is not ready (module doc).

    ``optimiser``: the endpoint that proposes edits (default: each candidate itself).
    ``budget``: at most this many requests in all (cache hits included: they are what a fresh
    cache would send). ``notify`` hears the plan before the first request; ``confirm`` (given the
    planned requests and the money where priced) may refuse it, then nothing is sent.
    """
    if not 0 < held_out_fraction < 1:
        raise UserError(f"held_out_fraction must be between 0 and 1, got {held_out_fraction}")
    if proposals < 1:
        raise UserError(f"proposals must be at least 1, got {proposals}")
    folder = RunFolder(Path(run_dir))
    results = folder.results()
    suite = folder.suite()
    task_infos, assignment = folder.tasks()
    scores = folder.scores()
    exchanges = {e.id: e for e in folder.exchanges()}
    answers = {(r.candidate, r.exchange_id): r for r in folder.responses()}
    seed = suite.sampling.seed if seed is None else seed
    alpha = 1.0 - suite.thresholds.confidence if alpha is None else alpha
    info_by_name = {t.name: t for t in task_infos}
    spec_by_name = {c.name: c for c in suite.candidates}
    for name in tasks or []:
        if name not in info_by_name:
            raise UserError(f"--task {name!r}: no such task in the run ({', '.join(info_by_name)})")
    for name in candidates or []:
        if name not in spec_by_name:
            raise UserError(
                f"--candidate {name!r}: no such candidate in the run ({', '.join(spec_by_name)})"
            )
    # the run's bar: its noise floor and chance levels (logged answers against unrelated
    # logged answers, computed as the run did), so before and after are judged alike
    noise = _noise_floor(results)
    chance = chance_levels(
        list(exchanges.values()), task_infos, assignment, seed=suite.sampling.seed
    )
    clusters = clusters_of(list(exchanges.values()))

    # the plan: every pair, its split and its request count, before anything is sent
    plans: list[dict[str, Any]] = []
    out: list[TaskAdaptation] = []
    for cand in results.candidates:
        if candidates and cand.name not in candidates:
            continue
        spec = spec_by_name[cand.name]
        for tr in cand.tasks:
            if tasks and tr.task not in tasks:
                continue
            if _is_ready(tr.verdict, suite.gate.allow_caveats):
                continue
            opt = optimiser or spec
            info = info_by_name[tr.task]
            members = [
                exchanges[i] for i, t in assignment.items() if t == tr.task and i in exchanges
            ]
            adapt_ids, held = split_exchanges(
                members,
                held_out_fraction=held_out_fraction,
                seed=seed,
                stratify=info.output == "classification",
            )
            base = TaskAdaptation(
                task=tr.task,
                candidate=cand.name,
                optimiser=opt.name,
                status="skipped",
                run_verdict=tr.verdict,
                adaptation_ids=adapt_ids,
                held_out_ids=held,
                system_prompt_before=members[0].system_prompt if members else "",
                cost=AdaptCost(planned_requests=0),
            )
            if not adapt_ids or not held:
                out.append(base.model_copy(update={"reason": "too few exchanges to split"}))
                continue
            plans.append(
                {"base": base, "spec": spec, "opt": opt, "info": info, "k": proposals, "n": None}
            )

    total = sum(
        plan_requests(len(p["base"].adaptation_ids), len(p["base"].held_out_ids), p["k"])
        for p in plans
    )
    if budget is not None:
        remaining = budget
        for p in plans:
            b: TaskAdaptation = p["base"]
            n_a, n_h = len(b.adaptation_ids), len(b.held_out_ids)
            k = p["k"]
            while k > 1 and plan_requests(n_a, n_h, k) > remaining:
                k -= 1
            n_replay = n_a
            while n_replay > 1 and plan_requests(n_replay, n_h, k) > remaining:
                n_replay -= 1
            need = plan_requests(n_replay, n_h, k)
            if need > remaining:
                p["skip"] = f"the budget ({budget} requests) leaves {remaining}, {need} needed"
                continue
            p["k"], p["n"] = k, n_replay
            remaining -= need
        total = budget - remaining
    money = _planned_money(plans)
    if notify is not None:
        where = f", about ${money:.4f} where priced" if money is not None else ""
        notify(
            f"adaptation plan: {len([p for p in plans if 'skip' not in p])} task/candidate pair(s), "
            f"{total} requests at most{where} (cache hits cost nothing)"
        )
    if confirm is not None and not confirm(total, money):
        raise UserError("adaptation not confirmed: nothing was sent")

    judge = suite.judge
    from migrate_eval.score.judge import judge_session

    with (
        ResponseCache(cache_path) as rc,
        judge_session(judge, cache_path=cache_path, offline=offline),
    ):
        for p in plans:
            b = p["base"]
            if "skip" in p:
                out.append(b.model_copy(update={"reason": p["skip"]}))
                continue
            out.append(
                _adapt_one(
                    p,
                    exchanges=exchanges,
                    answers=answers,
                    scores=scores,
                    suite=suite,
                    noise=noise,
                    chance=chance,
                    clusters=clusters,
                    cache=rc,
                    offline=offline,
                    alpha=alpha,
                    max_failures=max_failures,
                    max_examples=max_examples,
                )
            )
    return Adaptation(
        run_dir=str(folder.path),
        seed=seed,
        held_out_fraction=held_out_fraction,
        alpha=alpha,
        budget=budget,
        planned_requests=total,
        results=out,
    )


def _planned_money(plans: Sequence[dict[str, Any]]) -> float | None:
    """A rough upper bound in dollars: each request priced like the run's average answer."""
    total: float | None = None
    for p in plans:
        if "skip" in p:
            continue
        price, _ = candidate_price(p["spec"])
        if price is None or price.per_hour_usd is not None:
            continue
        b: TaskAdaptation = p["base"]
        n = plan_requests(p["n"] or len(b.adaptation_ids), len(b.held_out_ids), p["k"])
        # 2,000 prompt and 500 answer tokens a request: a ceiling, said as "about"
        total = (total or 0.0) + n * (
            2000 * price.input_per_mtok + 500 * price.output_per_mtok
        ) / 1e6
    return total


def _adapt_one(
    p: Mapping[str, Any],
    *,
    exchanges: Mapping[str, Exchange],
    answers: Mapping[tuple[str, str], ReplayResult],
    scores: pd.DataFrame,
    suite: Suite,
    noise: NoiseFloor | None,
    chance: Mapping[str, float],
    clusters: Mapping[str, str],
    cache: ResponseCache,
    offline: bool,
    alpha: float,
    max_failures: int,
    max_examples: int,
) -> TaskAdaptation:
    b: TaskAdaptation = p["base"]
    spec: CandidateSpec = p["spec"]
    opt: CandidateSpec = p["opt"]
    info: TaskInfo = p["info"]
    k: int = p["k"]
    ledger = _Ledger()
    task_rows = scores[(scores["candidate"] == spec.name) & (scores["task"] == b.task)]
    by_id = {str(r["exchange_id"]): r for r in task_rows.to_dict("records")}
    pass_at = suite.thresholds.pass_threshold

    # failures from the adaptation set only (the run's answers are in responses/)
    adapt_ex = [exchanges[i] for i in b.adaptation_ids]
    failing = [
        ex
        for ex in adapt_ex
        if by_id.get(ex.id) is None
        or by_id[ex.id].get("status") != "ok"
        or float(by_id[ex.id].get("parity") or 0.0) < pass_at
    ]
    passing = [ex for ex in adapt_ex if ex not in failing]
    shown_failures = [(ex, answers.get((spec.name, ex.id))) for ex in failing[:max_failures]]
    examples = (passing + failing)[:max_examples]
    tools_before = tool_descriptions(adapt_ex)

    # 1. the proposals (each a distinct, cached request)
    opt_ex = [
        Exchange(
            id=f"adapt:{b.task}:{spec.name}:{i}",
            source=adapt_ex[0].source,
            request=optimiser_request(
                opt, b.system_prompt_before, shown_failures, examples, i, tools_before
            ),
        )
        for i in range(k)
    ]
    opt_rows = replay(opt_ex, [opt], cache=cache, offline=offline, interruptible=False)
    ledger.add(opt_rows, opt, "optimiser")
    prompts: list[tuple[str, dict[str, str]]] = []
    for r in opt_rows:
        raw = r.response.text if r.ok and r.response is not None else None
        tools = {k: v for k, v in parse_tool_descriptions(raw).items() if k in tools_before}
        text = parse_proposal(raw)
        if text is not None and text.lstrip().startswith("{") and tools:
            text = b.system_prompt_before  # only tool descriptions were proposed
        if text and (text, tools) not in prompts:
            prompts.append((text, tools))

    # 2. each proposal on the adaptation set; the best one is kept
    replay_ids = b.adaptation_ids[: p["n"] or len(b.adaptation_ids)]
    tried: list[Proposal] = []
    for i, (prompt, tools) in enumerate(prompts):
        edited = [
            with_system_prompt(exchanges[x], prompt, tools, base=b.system_prompt_before)
            for x in replay_ids
        ]
        rows = replay(edited, [spec], cache=cache, offline=offline, interruptible=False)
        ledger.add(rows, spec, "candidate")
        frame = score(edited, [info], {x: b.task for x in replay_ids}, rows)
        tried.append(
            Proposal(
                index=i,
                system_prompt=prompt,
                tool_descriptions=tools,
                adaptation_parity=_mean(frame),
            )
        )
    cost = AdaptCost(
        planned_requests=plan_requests(len(replay_ids), len(b.held_out_ids), k),
        optimiser_requests=ledger.optimiser,
        candidate_requests=ledger.candidate,
        cached=ledger.cached,
        cost_usd=ledger.cost,
    )
    if not tried:
        return b.model_copy(
            update={"reason": "the optimiser proposed no usable prompt", "cost": cost}
        )
    best = max(tried, key=lambda t: -1.0 if t.adaptation_parity is None else t.adaptation_parity)

    # 3. the held-out set with the best proposal, scored and judged like the run
    held_ex = [
        with_system_prompt(
            exchanges[x], best.system_prompt, best.tool_descriptions, base=b.system_prompt_before
        )
        for x in b.held_out_ids
    ]
    held_rows = replay(held_ex, [spec], cache=cache, offline=offline, interruptible=False)
    ledger.add(held_rows, spec, "candidate")
    after = score(held_ex, [info], {x: b.task for x in b.held_out_ids}, held_rows)
    before = task_rows[task_rows["exchange_id"].astype(str).isin(set(b.held_out_ids))]
    tr_before = _task_result(before, info, spec, suite, noise, chance, clusters)
    tr_after = _task_result(after, info, spec, suite, noise, chance, clusters)
    paired = compare_paired(
        _parities(after),
        _parities(before),
        pass_threshold=pass_at,
        confidence=suite.thresholds.confidence,
        seed=suite.sampling.seed,
    )
    diff = paired.mean_difference
    p_value = paired.wilcoxon_p
    gain: GainLabel
    if diff is not None and diff > 0 and p_value is not None and p_value < alpha:
        gain = "reliable_gain"
    elif diff is not None and diff < 0 and paired.ci_high is not None and paired.ci_high < 0:
        gain = "worse"
    else:
        gain = "no_reliable_gain"
    cost = cost.model_copy(
        update={
            "candidate_requests": ledger.candidate,
            "cached": ledger.cached,
            "cost_usd": ledger.cost,
        }
    )
    return b.model_copy(
        update={
            "status": "adapted",
            "verdict_before": tr_before.verdict,
            "verdict_after": tr_after.verdict,
            "parity_before": tr_before.parity.mean,
            "parity_after": tr_after.parity.mean,
            "paired": paired,
            "gain": gain,
            "ready_after": gain == "reliable_gain"
            and _is_ready(tr_after.verdict, suite.gate.allow_caveats),
            "system_prompt_after": best.system_prompt,
            "tool_descriptions_after": best.tool_descriptions,
            "prompt_diff": prompt_diff(b.system_prompt_before, best.system_prompt, b.task)
            + "".join(
                prompt_diff(tools_before.get(name, ""), desc, b.task, f"tools/{name}/description")
                for name, desc in sorted(best.tool_descriptions.items())
            ),
            "proposals": tried,
            "cost": cost,
        }
    )


def _mean(frame: pd.DataFrame) -> float | None:
    if not len(frame):
        return None
    values = frame["parity"].where(frame["status"] == "ok", 0.0).astype(float)
    return float(values.mean())


def write_adaptation(adaptation: Adaptation, run_dir: str | Path) -> Path:
    """Write ``adaptation.json`` into the run folder."""
    path = Path(run_dir) / ADAPTATION_FILE
    path.write_text(adaptation.model_dump_json(indent=2), encoding="utf-8")
    return path


def summary_lines(adaptation: Adaptation) -> list[str]:
    """The section summary.md carries: one line per task and candidate."""
    lines = ["## Prompt adaptation", ""]
    for r in adaptation.results:
        where = f"{r.candidate} / {r.task}"
        if r.status == "skipped":
            lines.append(f"- {where}: not adapted ({r.reason})")
            continue
        before = "n/a" if r.parity_before is None else f"{r.parity_before:.3f}"
        after = "n/a" if r.parity_after is None else f"{r.parity_after:.3f}"
        p = r.paired.wilcoxon_p if r.paired is not None else None
        p_text = "n/a" if p is None else f"{p:.3g}"
        outcome = "ready after adaptation" if r.ready_after else "not ready after adaptation"
        gain = (r.gain or "no_reliable_gain").replace("_", " ")
        lines.append(
            f"- {where}: {outcome}; held-out parity {before} -> {after} "
            f"(n={len(r.held_out_ids)}, paired p={p_text}: {gain}); "
            f"verdict {r.verdict_before} -> {r.verdict_after}; "
            f"{r.cost.optimiser_requests + r.cost.candidate_requests} requests"
        )
    return lines
