"""Prompt adaptation: from "not ready" to "ready after these changes", proven on held-out traffic.

For each task and candidate of a finished run that is not ready (:func:`adapt_run`):

1. the task's exchanges are split into an adaptation set and a held-out set (seeded, stratified
   by the logged label where the task has labels, disjoint); the held-out set is never shown to
   the optimiser;
2. the optimiser (any provider: the suite's candidate itself by default) is shown failures from
   the adaptation set (request, logged answer, candidate answer), a few logged answers as
   examples and the current request options, and asked for an edited system prompt and,
   where they help, tool descriptions, ``response_format`` and ``tool_choice``; a few
   proposals are asked for;
3. each proposal is applied to the adaptation set's requests (the system message replaced, or
   prepended when there is none; the options set) and replayed; the round's best one is the
   start of the next round, which is shown the adaptation-set failures it still leaves (up to
   ``rounds`` rounds; it stops when none is left or a round does not improve). The best of
   all rounds is kept;
4. the held-out set is replayed once, with the kept proposal, and scored with the run's
   metrics, then aggregated with the run's thresholds, gate and noise floor, before (the run's
   own answers on those exchanges) and after; the paired test (one-sided Wilcoxon signed-rank,
   after better) says whether the gain is reliable. A gain within noise is "no reliable gain"
   and never makes a task ready.

Every call (optimiser and candidate) goes through the response cache and
:func:`~migrate_eval.replay.engine.replay`, so an interrupted adaptation resumes where it
stopped. The plan (requests and money) is known before the first request and handed to
``notify``; a ``budget`` in requests covers every round and shrinks the plan (fewer rounds,
fewer proposals, a smaller adaptation replay) or skips a pair with the reason.
:meth:`Adaptation.summary` is what ``results.json`` carries (``Results.adaptation``).
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
from migrate_eval.core.request import ChatRequest, parse_output_format
from migrate_eval.core.results import (
    AdaptationOutcome,
    AdaptationPaired,
    AdaptationSummary,
    AdaptCost,
    Results,
    TaskAdaptationResult,
    TaskInfo,
    TaskResult,
    Verdict,
)
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
    "You improve the requests of an application so that a new model answers like the logged "
    "answers. You are shown the current system prompt, the current request options "
    "(response_format, tool_choice, the tools' descriptions), failures (the request, the "
    "expected logged answer, the new model's answer) and examples of expected answers. Write "
    "an edited system prompt: add instructions, output format hints (the exact JSON shape, the "
    "language, the length) and, where useful, few-shot examples taken from the expected "
    "answers. Where the expected answers are JSON and the new model misses the shape, you may "
    "also set response_format (an OpenAI response_format object: a json_schema with the "
    "expected keys, or json_object). Where the application offers tools and the new model picks "
    "the wrong tool or none, you may rewrite tool descriptions (say when to use each tool) and "
    "set tool_choice (auto, required, or a named function). Answer with one JSON object: "
    '{"system_prompt": "<the whole new system prompt>", "tool_descriptions": {"<tool name>": '
    '"<new description>"}, "response_format": {...}, "tool_choice": ...}; every key is '
    "optional: what you leave out stays as it is."
)

GainLabel = Literal["reliable_gain", "no_reliable_gain", "worse"]


class Proposal(StrictModel):
    """One proposed request (system prompt and options), and how it did on the adaptation set."""

    index: int
    round: int = Field(default=0, description="the round that proposed it (0: the first)")
    system_prompt: str
    tool_descriptions: dict[str, str] = Field(
        default_factory=dict, description="new description per tool name (others unchanged)"
    )
    response_format: dict[str, Any] | None = Field(
        default=None, description="the response_format the requests get (None: as logged)"
    )
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="the tool_choice the requests with tools get (None: as logged)"
    )
    adaptation_parity: float | None = Field(
        description="mean parity on the adaptation set's replay with this prompt"
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
    response_format_before: dict[str, Any] | None = None
    response_format_after: dict[str, Any] | None = None
    tool_choice_before: str | dict[str, Any] | None = None
    tool_choice_after: str | dict[str, Any] | None = None
    prompt_diff: str = Field(
        default="",
        description="unified diff of the system prompt, tool descriptions and request options",
    )
    rounds: int = Field(default=0, description="rounds of proposals run")
    proposals: list[Proposal] = Field(default_factory=list)
    cost: AdaptCost

    @property
    def outcome(self) -> AdaptationOutcome:
        """ready after adaptation / no reliable gain / not ready after adaptation / not adapted"""
        if self.status != "adapted":
            return "not_adapted"
        if self.ready_after:
            return "ready_after_adaptation"
        if self.gain != "reliable_gain":
            return "no_reliable_gain"
        return "not_ready_after_adaptation"

    def changes(self) -> list[str]:
        """What the adapted request changes, in the words of ``results.json``."""
        if self.status != "adapted":
            return []
        out = []
        if (self.system_prompt_after or "") != self.system_prompt_before:
            out.append("system_prompt")
        out += [f"tools/{n}/description" for n in sorted(self.tool_descriptions_after)]
        if self.response_format_after != self.response_format_before:
            out.append("response_format")
        if self.tool_choice_after != self.tool_choice_before:
            out.append("tool_choice")
        return out


class Adaptation(StrictModel):
    """``adaptation.json``: the whole attempt on a run folder."""

    run_dir: str
    seed: int
    held_out_fraction: float
    alpha: float = Field(description="a gain is reliable when the paired p-value is below this")
    budget: int | None
    rounds: int = Field(default=1, description="rounds of proposals allowed per pair")
    planned_requests: int
    results: list[TaskAdaptation]

    def summary(self) -> AdaptationSummary:
        """What ``results.json`` carries (``Results.adaptation``)."""
        return AdaptationSummary(
            seed=self.seed,
            held_out_fraction=self.held_out_fraction,
            alpha=self.alpha,
            rounds=self.rounds,
            budget=self.budget,
            planned_requests=self.planned_requests,
            details=ADAPTATION_FILE,
            results=[
                TaskAdaptationResult(
                    task=r.task,
                    candidate=r.candidate,
                    optimiser=r.optimiser,
                    outcome=r.outcome,
                    reason=r.reason,
                    run_verdict=r.run_verdict,
                    verdict_before=r.verdict_before,
                    verdict_after=r.verdict_after,
                    parity_before=r.parity_before,
                    parity_after=r.parity_after,
                    n_adaptation=len(r.adaptation_ids),
                    n_held_out=len(r.held_out_ids),
                    paired=None
                    if r.paired is None
                    else AdaptationPaired(
                        n=r.paired.n,
                        mean_difference=r.paired.mean_difference,
                        ci_low=r.paired.ci_low,
                        ci_high=r.paired.ci_high,
                        wilcoxon_p=r.paired.wilcoxon_p,
                        mcnemar_p=r.paired.mcnemar_p,
                        after_only_passes=r.paired.first_only_passes,
                        before_only_passes=r.paired.second_only_passes,
                    ),
                    rounds=r.rounds,
                    changes=r.changes(),
                    prompt_diff=r.prompt_diff,
                    cost=r.cost,
                )
                for r in self.results
            ],
        )


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
    response_format: Mapping[str, Any] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
) -> Exchange:
    """The exchange with its system message replaced by ``prompt`` (prepended if none), the
    named tools' descriptions replaced (tools the request does not have are ignored) and, when
    given, ``response_format`` set and ``tool_choice`` set (on a request with tools only).

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
    if response_format is not None:
        body["response_format"] = json.loads(json.dumps(response_format))
    if tool_choice is not None and body.get("tools"):
        body["tool_choice"] = json.loads(json.dumps(tool_choice))
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


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


def optimiser_request(
    spec: CandidateSpec,
    current_prompt: str,
    failures: Sequence[tuple[Exchange, ReplayResult | None]],
    examples: Sequence[Exchange],
    attempt: int,
    tools: Mapping[str, str] | None = None,
    *,
    round: int = 0,
    response_format: Mapping[str, Any] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The request the optimiser gets: adaptation-set material only."""
    expected = [_answer_text(ex.response) for ex in examples]
    shown = {
        "round": round,
        "attempt": attempt,
        "current_system_prompt": current_prompt,
        "tool_descriptions": dict(tools or {}),
        "response_format": dict(response_format) if response_format is not None else None,
        "tool_choice": tool_choice if not isinstance(tool_choice, Mapping) else dict(tool_choice),
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
        "examples_of_expected_answers": expected,
        "expected_answers_are_json": bool(expected) and all(_is_json(t) for t in expected),
    }
    return {
        "model": spec.model,
        "messages": [
            {"role": "system", "content": OPTIMISER_INSTRUCTIONS},
            {"role": "user", "content": json.dumps(shown, ensure_ascii=False, indent=1)},
        ],
    }


def _json_object(text: str | None) -> dict[str, Any] | None:
    s = (text or "").strip()
    start, end = s.find("{"), s.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        doc = json.loads(s[start : end + 1])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def parse_tool_descriptions(text: str | None) -> dict[str, str]:
    """The ``tool_descriptions`` object of the optimiser's answer (empty when absent)."""
    doc = _json_object(text)
    tools = doc.get("tool_descriptions") if doc is not None else None
    if not isinstance(tools, dict):
        return {}
    return {str(k): v for k, v in tools.items() if isinstance(v, str) and v.strip()}


def parse_response_format(text: str | None) -> dict[str, Any] | None:
    """The ``response_format`` of the optimiser's answer, when it is one a vendor can be asked
    for (``text``, ``json_object``, ``json_schema`` with a schema); else None."""
    doc = _json_object(text)
    value = doc.get("response_format") if doc is not None else None
    if not isinstance(value, dict):
        return None
    fmt = parse_output_format(value)
    return None if fmt.kind == "invalid" or fmt.problem is not None else value


def parse_tool_choice(text: str | None, tools: Sequence[str]) -> str | dict[str, Any] | None:
    """The ``tool_choice`` of the optimiser's answer: ``none``/``auto``/``required`` or a named
    function the requests offer; else None."""
    doc = _json_object(text)
    value = doc.get("tool_choice") if doc is not None else None
    if value in ("none", "auto", "required"):
        return str(value)
    if isinstance(value, dict):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if name in tools:
            return {"type": "function", "function": {"name": name}}
    return None


def parse_proposal(text: str | None) -> str | None:
    """The system prompt in the optimiser's answer (a JSON object, or the bare text).

    A JSON object without ``system_prompt`` (options only) gives None: the prompt stays."""
    if not text or not text.strip():
        return None
    s = text.strip()
    if s.startswith("```"):
        s = s.strip("`")
        s = s.split("\n", 1)[1] if "\n" in s else s
    doc = _json_object(s)
    if doc is not None and _EDIT_KEYS & set(doc):
        prompt = doc.get("system_prompt")
        return (prompt.strip() or None) if isinstance(prompt, str) else None
    return s


_EDIT_KEYS = {"system_prompt", "tool_descriptions", "response_format", "tool_choice"}


def prompt_diff(before: str, after: str, task: str, what: str = "system_prompt") -> str:
    """A unified diff of the system prompt (or of ``what``: a tool's description, a request
    option as JSON) a developer can paste (or apply with ``patch``).

    Both texts are read as ending with a line break, so that a line appended to a prompt shows
    as one added line (not as its last line removed and added again)."""

    def lines_of(text: str) -> list[str]:
        return (text if not text or text.endswith("\n") else text + "\n").splitlines(True)

    lines = difflib.unified_diff(
        lines_of(before),
        lines_of(after),
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


#: Rounds of proposals by default: each round proposes from the failures the previous round's
#: best proposal leaves on the adaptation set.
DEFAULT_ROUNDS = 3


def plan_requests(n_adapt: int, n_held: int, proposals: int, rounds: int = 1) -> int:
    """Requests one task and candidate needs at most: per round the proposals and their
    replays on the adaptation set, then the held-out set once."""
    return rounds * (proposals + proposals * n_adapt) + n_held


def adapt_run(
    run_dir: str | Path,
    *,
    cache_path: Path,
    tasks: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    optimiser: CandidateSpec | None = None,
    budget: int | None = None,
    proposals: int = 3,
    rounds: int = DEFAULT_ROUNDS,
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
    if rounds < 1:
        raise UserError(f"rounds must be at least 1, got {rounds}")
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
                {
                    "base": base,
                    "spec": spec,
                    "opt": opt,
                    "info": info,
                    "k": proposals,
                    "r": rounds,
                    "n": None,
                }
            )

    total = sum(
        plan_requests(len(p["base"].adaptation_ids), len(p["base"].held_out_ids), p["k"], p["r"])
        for p in plans
    )
    if budget is not None:
        # fewer rounds first, then fewer proposals a round, then a smaller adaptation replay
        remaining = budget
        for p in plans:
            b: TaskAdaptation = p["base"]
            n_a, n_h = len(b.adaptation_ids), len(b.held_out_ids)
            k, r = p["k"], p["r"]
            while r > 1 and plan_requests(n_a, n_h, k, r) > remaining:
                r -= 1
            while k > 1 and plan_requests(n_a, n_h, k, r) > remaining:
                k -= 1
            n_replay = n_a
            while n_replay > 1 and plan_requests(n_replay, n_h, k, r) > remaining:
                n_replay -= 1
            need = plan_requests(n_replay, n_h, k, r)
            if need > remaining:
                p["skip"] = f"the budget ({budget} requests) leaves {remaining}, {need} needed"
                continue
            p["k"], p["r"], p["n"] = k, r, n_replay
            remaining -= need
        total = budget - remaining
    money = _planned_money(plans)
    if notify is not None:
        where = f", about ${money:.4f} where priced" if money is not None else ""
        notify(
            f"adaptation plan: {len([p for p in plans if 'skip' not in p])} task/candidate pair(s), "
            f"up to {rounds} round(s) each, {total} requests at most{where} "
            "(cache hits cost nothing)"
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
        rounds=rounds,
        planned_requests=total,
        results=out,
    )


def _planned_money(plans: Sequence[dict[str, Any]]) -> float | None:
    """A rough upper bound in dollars: each request priced like the run's average answer."""
    total: float | None = None
    for p in plans:
        if "skip" in p:
            continue
        b: TaskAdaptation = p["base"]
        n_all = plan_requests(p["n"] or len(b.adaptation_ids), len(b.held_out_ids), p["k"], p["r"])
        n_opt = p["k"] * p["r"]
        for spec, n in ((p["spec"], n_all - n_opt), (p["opt"], n_opt)):
            price, _ = candidate_price(spec)
            if price is None or price.per_hour_usd is not None:
                continue
            # 2,000 prompt and 500 answer tokens a request: a ceiling, said as "about"
            total = (total or 0.0) + n * (
                2000 * price.input_per_mtok + 500 * price.output_per_mtok
            ) / 1e6
    return total


class _State(StrictModel):
    """The request edits in force: the system prompt and the options the requests get."""

    system_prompt: str
    tool_descriptions: dict[str, str] = Field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None

    def key(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _edit(raw: str | None, current: _State, tools: Mapping[str, str]) -> _State | None:
    """The optimiser's answer applied over ``current`` (what it leaves out stays), or None when
    it proposes nothing usable."""
    prompt = parse_proposal(raw)
    new_tools = {k: v for k, v in parse_tool_descriptions(raw).items() if k in tools}
    fmt = parse_response_format(raw)
    choice = parse_tool_choice(raw, list(tools))
    if prompt is None and not new_tools and fmt is None and choice is None:
        return None
    return _State(
        system_prompt=prompt if prompt is not None else current.system_prompt,
        tool_descriptions={**current.tool_descriptions, **new_tools},
        response_format=fmt if fmt is not None else current.response_format,
        tool_choice=choice if choice is not None else current.tool_choice,
    )


def _apply(ex: Exchange, state: _State, base: str, before: _State) -> Exchange:
    return with_system_prompt(
        ex,
        state.system_prompt,
        state.tool_descriptions,
        base=base,
        response_format=state.response_format
        if state.response_format != before.response_format
        else None,
        tool_choice=state.tool_choice if state.tool_choice != before.tool_choice else None,
    )


def _option_text(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False) + "\n"


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
    n_rounds: int = p["r"]
    ledger = _Ledger()
    task_rows = scores[(scores["candidate"] == spec.name) & (scores["task"] == b.task)]
    by_id = {str(r["exchange_id"]): r for r in task_rows.to_dict("records")}
    pass_at = suite.thresholds.pass_threshold

    def failed(row: Mapping[Any, Any] | None) -> bool:
        return row is None or row.get("status") != "ok" or float(row.get("parity") or 0.0) < pass_at

    # round 0 is shown the run's own failures on the adaptation set (the run's responses/)
    adapt_ex = [exchanges[i] for i in b.adaptation_ids]
    failing = [ex for ex in adapt_ex if failed(by_id.get(ex.id))]
    passing = [ex for ex in adapt_ex if ex not in failing]
    shown_failures = [(ex, answers.get((spec.name, ex.id))) for ex in failing[:max_failures]]
    examples = (passing + failing)[:max_examples]
    tools_before = tool_descriptions(adapt_ex)
    first_body = adapt_ex[0].request.body if adapt_ex else {}
    fmt_before = first_body.get("response_format")
    choice_before = first_body.get("tool_choice")
    before = _State(
        system_prompt=b.system_prompt_before,
        response_format=fmt_before if isinstance(fmt_before, dict) else None,
        tool_choice=choice_before if isinstance(choice_before, str | dict) else None,
    )
    replay_ids = b.adaptation_ids[: p["n"] or len(b.adaptation_ids)]
    replay_by = {x: exchanges[x] for x in replay_ids}
    incumbent = before
    incumbent_parity = sum([_row_parity(by_id.get(x)) for x in replay_ids]) / max(
        1, len(replay_ids)
    )
    tried: list[Proposal] = []
    states: list[_State] = []
    seen: set[str] = {before.key()}
    rounds_run = 0
    for rnd in range(n_rounds):
        if not shown_failures:
            break  # nothing left to fix on the adaptation set
        rounds_run += 1
        # 1. the proposals (each a distinct, cached request), from adaptation-set material only
        current_tools = {**tools_before, **incumbent.tool_descriptions}
        opt_ex = [
            Exchange(
                id=f"adapt:{b.task}:{spec.name}:{rnd}:{i}",
                source=adapt_ex[0].source,
                request=optimiser_request(
                    opt,
                    incumbent.system_prompt,
                    shown_failures,
                    examples,
                    i,
                    current_tools,
                    round=rnd,
                    response_format=incumbent.response_format,
                    tool_choice=incumbent.tool_choice,
                ),
            )
            for i in range(k)
        ]
        opt_rows = replay(opt_ex, [opt], cache=cache, offline=offline, interruptible=False)
        ledger.add(opt_rows, opt, "optimiser")
        round_states: list[_State] = []
        for r in opt_rows:
            raw = r.response.text if r.ok and r.response is not None else None
            state = _edit(raw, incumbent, current_tools)
            if state is not None and state.key() not in seen:
                seen.add(state.key())
                round_states.append(state)

        # 2. each proposal on the adaptation set
        round_best: tuple[float, _State, Sequence[ReplayResult], pd.DataFrame] | None = None
        for state in round_states:
            edited = [
                _apply(replay_by[x], state, b.system_prompt_before, before) for x in replay_ids
            ]
            rows = replay(edited, [spec], cache=cache, offline=offline, interruptible=False)
            ledger.add(rows, spec, "candidate")
            frame = score(edited, [info], {x: b.task for x in replay_ids}, rows)
            parity = _mean(frame)
            tried.append(
                Proposal(
                    index=len(tried),
                    round=rnd,
                    system_prompt=state.system_prompt,
                    tool_descriptions=state.tool_descriptions,
                    response_format=state.response_format,
                    tool_choice=state.tool_choice,
                    adaptation_parity=parity,
                )
            )
            states.append(state)
            value = -1.0 if parity is None else parity
            if round_best is None or value > round_best[0]:
                round_best = (value, state, rows, frame)
        if round_best is None or round_best[0] <= incumbent_parity:
            break  # no proposal of this round beats the best so far: stop
        # 3. the next round is shown the failures the round's best proposal leaves
        incumbent_parity, incumbent, rows, frame = round_best
        rows_by = {r.exchange_id: r for r in rows}
        frame_by = {str(r["exchange_id"]): r for r in frame.to_dict("records")}
        left = [x for x in replay_ids if failed(frame_by.get(x))]
        shown_failures = [(exchanges[x], rows_by.get(x)) for x in left[:max_failures]]

    cost = AdaptCost(
        planned_requests=plan_requests(len(replay_ids), len(b.held_out_ids), k, n_rounds),
        optimiser_requests=ledger.optimiser,
        candidate_requests=ledger.candidate,
        cached=ledger.cached,
        cost_usd=ledger.cost,
    )
    if not tried:
        return b.model_copy(
            update={
                "reason": "the optimiser proposed no usable prompt"
                if rounds_run
                else "no failure on the adaptation set to learn from",
                "cost": cost,
                "rounds": rounds_run,
            }
        )
    # the best proposal of all rounds (the earliest of equals)
    best_i = max(
        range(len(tried)),
        key=lambda i: (
            -1.0 if tried[i].adaptation_parity is None else tried[i].adaptation_parity,
            -i,
        ),
    )
    best, best_state = tried[best_i], states[best_i]

    # 4. the held-out set, once, with the best proposal; scored and judged like the run
    held_ex = [
        _apply(exchanges[x], best_state, b.system_prompt_before, before) for x in b.held_out_ids
    ]
    held_rows = replay(held_ex, [spec], cache=cache, offline=offline, interruptible=False)
    ledger.add(held_rows, spec, "candidate")
    after = score(held_ex, [info], {x: b.task for x in b.held_out_ids}, held_rows)
    before_rows = task_rows[task_rows["exchange_id"].astype(str).isin(set(b.held_out_ids))]
    tr_before = _task_result(before_rows, info, spec, suite, noise, chance, clusters)
    tr_after = _task_result(after, info, spec, suite, noise, chance, clusters)
    paired = compare_paired(
        _parities(after),
        _parities(before_rows),
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
    changed_tools = {
        n: d for n, d in best.tool_descriptions.items() if d != tools_before.get(n, "")
    }
    text = prompt_diff(b.system_prompt_before, best.system_prompt, b.task)
    text += "".join(
        prompt_diff(tools_before.get(name, ""), desc, b.task, f"tools/{name}/description")
        for name, desc in sorted(changed_tools.items())
    )
    for option in ("response_format", "tool_choice"):
        old, new = getattr(before, option), getattr(best_state, option)
        if new != old:
            text += prompt_diff(_option_text(old), _option_text(new), b.task, f"request/{option}")
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
            "tool_descriptions_after": changed_tools,
            "response_format_before": before.response_format,
            "response_format_after": best.response_format,
            "tool_choice_before": before.tool_choice,
            "tool_choice_after": best.tool_choice,
            "prompt_diff": text,
            "rounds": rounds_run,
            "proposals": tried,
            "cost": cost,
        }
    )


def _row_parity(row: Mapping[Any, Any] | None) -> float:
    if row is None or row.get("status") != "ok":
        return 0.0
    value = row.get("parity")
    return float(value) if value is not None and value == value else 0.0


def _mean(frame: pd.DataFrame) -> float | None:
    if not len(frame):
        return None
    values = frame["parity"].where(frame["status"] == "ok", 0.0).astype(float)
    return float(values.mean())


def write_adaptation(adaptation: Adaptation, run_dir: str | Path) -> Path:
    """Write ``adaptation.json`` into the run folder (atomically: a sibling renamed into place)."""
    from migrate_eval.core.outputs import write_text_atomic

    path = Path(run_dir) / ADAPTATION_FILE
    write_text_atomic(path, adaptation.model_dump_json(indent=2) + "\n")
    return path
