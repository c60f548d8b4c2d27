"""LLM-as-judge: pairwise comparison with the logged answer, and rubric grading.

Any provider can be the judge: the suite's ``judge:`` section is a candidate specification
(provider, model, base URL, key variable, concurrency, timeout, price) plus an optional
``rubric``. Judge calls run in the scoring stage, asynchronously with at most
``judge.concurrency`` requests in flight, through the same :class:`~migrate_eval.replay.cache.ResponseCache`
as replay (keyed by the judge's identity and the exact judge request), so a re-scored run asks
the judge only what it has not answered before; with ``offline`` only the cache is read.

Metrics (registered as ``judge_pairwise`` and ``judge_rubric``):

* ``judge_pairwise``: the judge sees the conversation and two answers, and replies ``[[A]]``,
  ``[[B]]`` or ``[[C]]`` (tie). It is asked twice, with the logged answer first and then with
  the candidate first. Each order gives the candidate 1 (win), 0.5 (tie) or 0 (loss).
  Parity means "at least as good as the logged answer": win/win, win/tie and tie/tie score 1,
  tie/loss 0.5, loss/loss 0. A **split** (a win in one order and a loss in the other: the
  verdict followed the position, not the answers) is counted as a tie of the two orders and
  scores 0.5, the midpoint between "as good" and "worse" (it used to score 1, which let a judge
  that always answers ``[[A]]`` pass anything).
* ``judge_rubric``: the judge grades an answer from 1 to 10 against the rubric (default:
  helpfulness, correctness, following the instructions), replying ``[[score]]``. Both the
  logged answer and the candidate are graded (the logged answer's request is identical for
  every candidate, so the cache asks it once); the metric is ``min(1, candidate / logged)``.

Controls (:func:`run_controls`): in every run, per task and judge metric, a seeded handful of
logged answers (``judge.control_items``, default 10, fewer when the task has fewer exchanges)
are judged against themselves (pairwise: must be a tie), against the logged answer of another
exchange of the run and against their own first 15% of words (both must be judged worse:
pairwise, a mean preference below 0.5 over both orders; rubric, a lower grade). Control calls
go through the same cache and are counted in :class:`JudgeControls` (tokens and price). A
judge whose accuracy on them is below ``judge.min_control_accuracy`` (0.8) or whose position
bias (share of control pairs whose verdict changes with the order) is above
``judge.max_position_bias`` (0.2) fails: :func:`task_controls` reports it and scoring makes the
metric NaN on the task with the note ``judge_failed_controls: ...``.

A judge failure (vendor error, unparsable verdict, no cache entry offline) never stops the run:
the metric is NaN on that exchange and the row's ``error`` says why (``metric judge_pairwise:
...``). Tokens: every judge call's usage (cached answers included: what judging the run costs)
is added to the row (``judge_prompt_tokens``, ``judge_completion_tokens``) and summed per
candidate in ``results.json`` (``judge_cost``), priced with ``judge.price``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from migrate_eval.core.errors import OfflineCacheMiss, VendorError
from migrate_eval.core.records import Response
from migrate_eval.core.request import content_text
from migrate_eval.core.results import JudgeControls
from migrate_eval.core.suite import DEFAULT_RUBRIC, JudgeSpec
from migrate_eval.replay.ratelimit import RequestLimits
from migrate_eval.score.registry import MetricContext, register_metric
from migrate_eval.score.text import answer_text

__all__ = [
    "DEFAULT_RUBRIC",
    "JudgeControls",
    "JudgeError",
    "JudgeSession",
    "JudgeSpec",
    "JudgedBatch",
    "judge_backend",
    "judge_batch",
    "judge_session",
    "run_controls",
    "task_controls",
    "usage_of",
]
_MAX_CHARS = 12_000


class JudgeError(VendorError):
    """The judge could not give a usable verdict for one exchange."""


Kind = Literal["pairwise", "rubric"]


@dataclass
class _Outcome:
    value: float | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class JudgeSession:
    """The judge the scoring stage uses, and what it has answered so far."""

    spec: JudgeSpec
    cache_path: Path | None = None
    offline: bool = False
    outcomes: dict[tuple[Kind, str], _Outcome] = field(default_factory=dict)
    #: (kind, task name) -> how the judge did on the task's planted controls
    controls: dict[tuple[Kind, str], JudgeControls] = field(default_factory=dict)
    #: exchange id -> the rubric's grade of its logged answer (compared with user feedback)
    logged_grades: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    cache_hits: int = 0


_ACTIVE: ContextVar[JudgeSession | None] = ContextVar("migrate_eval_judge", default=None)
_LAST: list[JudgeSession] = []


@contextlib.contextmanager
def judge_session(
    spec: JudgeSpec | None, *, cache_path: str | Path | None = None, offline: bool = False
) -> Iterator[JudgeSession | None]:
    """Make ``spec`` the judge of the judge metrics scored inside the ``with`` block."""
    if spec is None:
        yield None
        return
    session = JudgeSession(
        spec=spec, cache_path=Path(cache_path) if cache_path else None, offline=offline
    )
    token = _ACTIVE.set(session)
    _LAST[:] = [session]
    try:
        yield session
    finally:
        _ACTIVE.reset(token)


def _key(ctx: MetricContext) -> str:
    h = hashlib.sha256()
    h.update(ctx.exchange.id.encode("utf-8"))
    h.update(b"\0")
    h.update(ctx.candidate.model_dump_json(exclude={"latency_ms", "ttft_ms", "usage"}).encode())
    return h.hexdigest()


def _session() -> JudgeSession:
    session = _ACTIVE.get()
    if session is None:
        raise JudgeError("no judge configured: add a 'judge:' section to the suite")
    return session


def usage_of(ctx: MetricContext) -> tuple[int, int]:
    """Judge tokens (prompt, completion) spent on one pair in the active (or last) session."""
    session = _ACTIVE.get() or (_LAST[0] if _LAST else None)
    if session is None:
        return 0, 0
    key = _key(ctx)
    p = c = 0
    for kind in ("pairwise", "rubric"):
        out = session.outcomes.get((kind, key))
        if out is not None:
            p += out.prompt_tokens
            c += out.completion_tokens
    return p, c


# --- prompts -----------------------------------------------------------------------------------


def render_conversation(request: Mapping[str, Any]) -> str:
    """The logged conversation as plain text for a judge (roles, tool calls, tool results)."""
    lines: list[str] = []
    for m in request.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", "user"))
        text = content_text(m.get("content"), sep="\n")
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", {}) if isinstance(tc, dict) else {}
            text += f"\n[calls tool {fn.get('name')}({fn.get('arguments')})]"
        lines.append(f"[{role}]\n{text.strip()}")
    return _clip("\n\n".join(lines))


def render_answer(response: Response) -> str:
    text = answer_text(response)
    for tc in response.tool_calls:
        text += f"\n[calls tool {tc.name}({tc.arguments})]"
    return _clip(text.strip() or "(empty answer)")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS] + "\n[... truncated]"


PAIRWISE_SYSTEM = (
    "You are an impartial judge. Compare two assistant answers to the same conversation. "
    "Judge correctness, helpfulness, completeness and whether the answer follows the "
    "instructions; ignore the order in which the answers are shown and their length as such. "
    "Explain briefly, then give your verdict on the last line as exactly one of: [[A]] if "
    "answer A is better, [[B]] if answer B is better, [[C]] for a tie."
)

RUBRIC_SYSTEM = (
    "You are an impartial judge. Grade the assistant's answer to the conversation against the "
    "rubric. Explain briefly, then give the grade on the last line as [[N]], N an integer "
    "from 1 (worst) to 10 (best)."
)


def pairwise_request(spec: JudgeSpec, request: Mapping[str, Any], a: str, b: str) -> dict[str, Any]:
    user = (
        f"<conversation>\n{render_conversation(request)}\n</conversation>\n\n"
        f"<answer_A>\n{a}\n</answer_A>\n\n<answer_B>\n{b}\n</answer_B>"
    )
    return _request(spec, PAIRWISE_SYSTEM, user)


def rubric_request(spec: JudgeSpec, request: Mapping[str, Any], answer: str) -> dict[str, Any]:
    user = (
        f"<rubric>\n{spec.rubric or DEFAULT_RUBRIC}\n</rubric>\n\n"
        f"<conversation>\n{render_conversation(request)}\n</conversation>\n\n"
        f"<answer>\n{answer}\n</answer>"
    )
    return _request(spec, RUBRIC_SYSTEM, user)


def _request(spec: JudgeSpec, system: str, user: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
    }
    body.update({k: v for k, v in spec.params.items() if v is not None})
    for k, v in spec.params.items():
        if v is None:
            body.pop(k, None)
    return body


_PAIR_RE = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_GRADE_RE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def parse_pairwise(text: str) -> Literal["A", "B", "C"]:
    """The last ``[[A]]`` / ``[[B]]`` / ``[[C]]`` in a judge's answer."""
    found = _PAIR_RE.findall(text or "")
    if not found:
        raise JudgeError(f"the judge gave no [[A]]/[[B]]/[[C]] verdict: {(text or '')[:120]!r}")
    verdict: Literal["A", "B", "C"] = found[-1]
    return verdict


def parse_grade(text: str) -> float:
    """The last ``[[N]]`` grade (1-10) in a judge's answer."""
    found = _GRADE_RE.findall(text or "")
    if not found:
        raise JudgeError(f"the judge gave no [[N]] grade: {(text or '')[:120]!r}")
    grade = float(found[-1])
    if not 1.0 <= grade <= 10.0:
        raise JudgeError(f"the judge's grade {grade} is outside 1-10")
    return grade


def order_scores(first: str, second: str) -> tuple[float, float]:
    """The candidate's score (1 win, 0.5 tie, 0 loss) in each order: first the logged answer
    is A, then the candidate is A."""
    return {"A": 0.0, "B": 1.0, "C": 0.5}[first], {"A": 1.0, "B": 0.0, "C": 0.5}[second]


def is_split(first: str, second: str) -> bool:
    """The two orders name different winners (a tie counts as its own outcome): the verdict
    changed with the position of the answers."""
    as_b, as_a = order_scores(first, second)
    return as_b != as_a


def pairwise_value(first: str, second: str) -> float:
    """Parity from the two verdicts (logged answer = A first, then candidate = A), see above:
    a win in one order and a loss in the other is a tie of the orders and scores 0.5."""
    as_b, as_a = order_scores(first, second)
    if {as_b, as_a} == {0.0, 1.0}:  # split: the judge followed the position
        return 0.5
    return min(1.0, as_a + as_b)


# --- calling the judge -------------------------------------------------------------------------


class _Caller:
    def __init__(self, session: JudgeSession) -> None:
        from migrate_eval.replay.providers import get_provider

        self.session = session
        self.provider = get_provider(session.spec)
        self.identity = self.provider.identity()
        self.sem = asyncio.Semaphore(session.spec.concurrency)
        # the judge's own limits, as a candidate's (the endpoint may be a candidate's too)
        self.limits = RequestLimits(session.spec.rpm, session.spec.tpm)
        self.cache: Any = None
        self.inflight: dict[str, asyncio.Future[Response]] = {}

    async def ask(self, body: dict[str, Any]) -> Response:
        from migrate_eval.replay.cache import ResponseCache

        # the judge's own temperature, on a vendor without one (Anthropic), is a soft gap
        dropped = () if self.session.spec.strict_params else self.provider.soft_drops(body)
        if dropped:
            body = {k: v for k, v in body.items() if k not in dropped}
        key = ResponseCache.key_for(self.identity, body)
        if key in self.inflight:  # the same judge request for several pairs: ask once
            return await asyncio.shield(self.inflight[key])
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            resp = await self._ask(key, body)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning
            raise
        fut.set_result(resp)
        return resp

    async def _within_limits(self, body: dict[str, Any]) -> int:
        """Wait for the judge's ``rpm`` and ``tpm``: the tokens charged (estimated)."""
        charged = 0
        if self.limits.counts_tokens:
            from migrate_eval.replay.tokens import estimate_request_tokens

            charged = estimate_request_tokens(body)
        await self.limits.admit(charged)
        return charged

    async def _ask(self, key: str, body: dict[str, Any]) -> Response:
        if self.cache is not None:
            entry = self.cache.get(key)
            if entry is not None:
                self.session.cache_hits += 1
                resp: Response = entry.response
                return resp
        if self.session.offline:
            raise OfflineCacheMiss()
        spec = self.session.spec
        last: VendorError | None = None
        async with self.sem:
            for attempt in range(spec.max_retries + 1):
                charged = await self._within_limits(body)
                try:
                    self.session.calls += 1
                    out = await asyncio.wait_for(self.provider.complete(body), spec.timeout)
                except TimeoutError:
                    last = JudgeError(f"judge timed out after {spec.timeout:g} s")
                except VendorError as e:
                    last = e
                    if e.status == 429:  # a rejected call used no tokens
                        self.limits.settle(charged, None)
                    if not e.retryable:
                        break
                else:
                    self.limits.settle(charged, sum(_tokens(out.response)))
                    if self.cache is not None:
                        self.cache.put(
                            key, self.identity, body, out.raw, out.response, out.latency_ms
                        )
                    return out.response
                await asyncio.sleep(
                    min(getattr(last, "retry_after", None) or 0.2 * 2**attempt, 10.0)
                )
        assert last is not None
        raise last


def _tokens(resp: Response) -> tuple[int, int]:
    u = resp.usage
    if u is None:
        return 0, 0
    return u.prompt_tokens or 0, u.completion_tokens or 0


async def _judge_one(caller: _Caller, kind: Kind, ctx: MetricContext) -> _Outcome:
    spec = caller.session.spec
    ref, cand = render_answer(ctx.reference), render_answer(ctx.candidate)
    req = ctx.exchange.request
    out = _Outcome()
    try:
        if kind == "pairwise":
            r1, r2 = await asyncio.gather(
                caller.ask(pairwise_request(spec, req, ref, cand)),
                caller.ask(pairwise_request(spec, req, cand, ref)),
            )
            responses = [r1, r2]
            out.value = pairwise_value(parse_pairwise(r1.text or ""), parse_pairwise(r2.text or ""))
        else:
            r1, r2 = await asyncio.gather(
                caller.ask(rubric_request(spec, req, ref)),
                caller.ask(rubric_request(spec, req, cand)),
            )
            responses = [r1, r2]
            ref_grade, cand_grade = parse_grade(r1.text or ""), parse_grade(r2.text or "")
            caller.session.logged_grades[ctx.exchange.id] = ref_grade
            out.value = min(1.0, cand_grade / ref_grade)
        for r in responses:
            p, c = _tokens(r)
            out.prompt_tokens += p
            out.completion_tokens += c
    except VendorError as e:
        out.error = f"judge: {e}"
    except Exception as e:  # a provider bug must not stop the run either
        out.error = f"judge: {type(e).__name__}: {e}"
    return out


@dataclass
class JudgedBatch:
    """What judging a batch of pairs elsewhere brings back (:func:`judge_batch`)."""

    outcomes: dict[str, _Outcome]
    logged_grades: dict[str, float]
    calls: int
    cache_hits: int

    def merge_into(self, session: JudgeSession, kind: Kind) -> None:
        for key, out in self.outcomes.items():
            session.outcomes[(kind, key)] = out
        session.logged_grades.update(self.logged_grades)
        session.calls += self.calls
        session.cache_hits += self.cache_hits


#: Judges a batch of pairs elsewhere: ``(session, kind, {pair key: context})``, merged into
#: the session (``--executor ray``: Ray tasks, :func:`migrate_eval.score.cluster.ray_scoring`).
JudgeBatchFn = Callable[[JudgeSession, Kind, dict[str, MetricContext]], None]
_BATCH: ContextVar[JudgeBatchFn | None] = ContextVar("migrate_eval_judge_batch", default=None)


@contextlib.contextmanager
def judge_backend(judge: JudgeBatchFn | None) -> Iterator[None]:
    """Within the block, the pairs a judge metric scores are judged by ``judge`` (the planted
    controls stay here: a few calls per task)."""
    token = _BATCH.set(judge)
    try:
        yield
    finally:
        _BATCH.reset(token)


def judge_batch(
    spec: JudgeSpec,
    cache_path: Path | None,
    offline: bool,
    kind: Kind,
    todo: dict[str, MetricContext],
) -> JudgedBatch:
    """Judge ``todo`` in a session of its own (a Ray task), through the shared cache."""
    session = JudgeSession(spec=spec, cache_path=cache_path, offline=offline)
    _run(_judge_pairs(session, kind, todo, None))
    return JudgedBatch(
        outcomes={key: session.outcomes[(kind, key)] for key in todo},
        logged_grades=session.logged_grades,
        calls=session.calls,
        cache_hits=session.cache_hits,
    )


async def _judge_pairs(
    session: JudgeSession, kind: Kind, todo: dict[str, MetricContext], caller: _Caller | None
) -> None:
    """Judge every pair of ``todo`` into ``session.outcomes`` (with a caller of its own when
    ``caller`` is None)."""
    from migrate_eval.replay.cache import ResponseCache

    own = caller is None
    if caller is None:
        caller = _Caller(session)
        caller.cache = ResponseCache(session.cache_path) if session.cache_path is not None else None
    try:
        keys = list(todo)
        results = await asyncio.gather(*(_judge_one(caller, kind, todo[k]) for k in keys))
        for k, r in zip(keys, results, strict=True):
            session.outcomes[(kind, k)] = r
    finally:
        if own:
            await caller.provider.aclose()
            if caller.cache is not None:
                caller.cache.close()


async def _judge_all(session: JudgeSession, kind: Kind, contexts: Sequence[MetricContext]) -> None:
    from migrate_eval.replay.cache import ResponseCache

    caller = _Caller(session)
    cache = ResponseCache(session.cache_path) if session.cache_path is not None else None
    caller.cache = cache
    try:
        todo = {_key(c): c for c in contexts if (kind, _key(c)) not in session.outcomes}
        await _judge_pairs(session, kind, todo, caller)
        by_task: dict[str, list[MetricContext]] = {}
        for c in contexts:
            by_task.setdefault(c.task.name, []).append(c)
        pending = [t for t in by_task if (kind, t) not in session.controls]
        done = await asyncio.gather(
            *(run_controls(caller, kind, by_task[t], contexts) for t in pending)
        )
        for t, ctl in zip(pending, done, strict=True):
            session.controls[(kind, t)] = ctl
    finally:
        await caller.provider.aclose()
        if cache is not None:
            cache.close()


# --- planted controls --------------------------------------------------------------------------

#: Share of a logged answer's words kept in the "truncated" control.
TRUNCATE_SHARE = 0.15
#: A task with fewer exchanges borrows logged answers of the run's other exchanges as controls.
MIN_CONTROL_ITEMS = 3
_METRIC_OF: dict[Kind, str] = {"pairwise": "judge_pairwise", "rubric": "judge_rubric"}


def truncate_words(text: str, share: float = TRUNCATE_SHARE) -> str | None:
    """The first ``share`` of the words of ``text`` (at least one); None when that is all of it."""
    words = text.split()
    k = max(1, int(len(words) * share))
    return " ".join(words[:k]) if k < len(words) else None


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode("utf-8")).digest()[:8], "big")


@dataclass
class _Item:
    ctx: MetricContext
    logged: str
    others: dict[str, str]  # check kind (unrelated, truncated) -> the worse answer


def _control_items(
    spec: JudgeSpec, task: str, contexts: Sequence[MetricContext], pool: Sequence[MetricContext]
) -> list[_Item]:
    """A seeded sample of the task's logged answers, each with its worse counterparts.

    ``judge.control_items`` of the task's exchanges (all of them when it has fewer); a task with
    fewer than :data:`MIN_CONTROL_ITEMS` exchanges borrows logged answers of other exchanges of
    the run up to that number. The unrelated answer of an item is the logged answer of another
    exchange of the run, seeded by the item's exchange id."""
    import random

    by_id: dict[str, MetricContext] = {}
    for c in contexts:
        by_id.setdefault(c.exchange.id, c)
    everything: dict[str, MetricContext] = {}
    for c in pool:
        everything.setdefault(c.exchange.id, c)
    pool_ids = sorted(everything)
    rng = random.Random(_seed("controls", task))
    chosen = rng.sample(sorted(by_id), min(spec.control_items, len(by_id)))
    if len(chosen) < MIN_CONTROL_ITEMS:
        others = [i for i in pool_ids if i not in by_id]
        chosen += rng.sample(others, min(MIN_CONTROL_ITEMS - len(chosen), len(others)))
    answers: dict[str, str] = {}

    def answer(ex_id: str) -> str:
        if ex_id not in answers:
            answers[ex_id] = render_answer(everything[ex_id].reference)
        return answers[ex_id]

    items: list[_Item] = []
    for ex_id in chosen:
        logged = answer(ex_id)
        worse: dict[str, str] = {}
        pick = random.Random(_seed("unrelated", ex_id))
        for _ in range(32):  # a few seeded draws: another exchange whose answer differs
            other = pool_ids[pick.randrange(len(pool_ids))]
            if other != ex_id and answer(other) != logged:
                worse["unrelated"] = answer(other)
                break
        cut = truncate_words(logged)
        if cut is not None:
            worse["truncated"] = cut
        items.append(_Item(ctx=everything[ex_id], logged=logged, others=worse))
    return items


@dataclass
class _Tally:
    checks: int = 0
    correct: int = 0
    errors: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    pairs: int = 0
    flips: int = 0
    self_checks: int = 0
    self_ties: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seen: set[int] = field(default_factory=set)
    first_error: str | None = None

    def error(self, e: Exception, count: int = 1) -> None:
        self.errors += count
        if self.first_error is None:
            self.first_error = str(e) or type(e).__name__

    def spent(self, *responses: Response) -> None:
        for r in responses:
            if id(r) in self.seen:  # the same request asked once (e.g. both orders of a self-pair)
                continue
            self.seen.add(id(r))
            p, c = _tokens(r)
            self.prompt_tokens += p
            self.completion_tokens += c

    def result(self, check: str, ok: bool) -> None:
        self.checks += 1
        if ok:
            self.correct += 1
        else:
            self.failed[check] = self.failed.get(check, 0) + 1


async def _pairwise_controls(caller: _Caller, item: _Item, tally: _Tally) -> None:
    spec, req, logged = caller.session.spec, item.ctx.exchange.request, item.logged
    try:
        r = await caller.ask(pairwise_request(spec, req, logged, logged))
        tally.spent(r)
        verdict = parse_pairwise(r.text or "")
        tally.self_checks += 1
        tally.self_ties += verdict == "C"
        tally.result("self", verdict == "C")
    except Exception as e:
        tally.error(e)
    for check, other in item.others.items():
        try:
            r1, r2 = await asyncio.gather(
                caller.ask(pairwise_request(spec, req, logged, other)),
                caller.ask(pairwise_request(spec, req, other, logged)),
            )
            tally.spent(r1, r2)
            v1, v2 = parse_pairwise(r1.text or ""), parse_pairwise(r2.text or "")
        except Exception as e:
            tally.error(e)
            continue
        tally.pairs += 1
        tally.flips += is_split(v1, v2)
        tally.result(check, sum(order_scores(v1, v2)) / 2 < 0.5)


async def _rubric_controls(caller: _Caller, item: _Item, tally: _Tally) -> None:
    spec, req = caller.session.spec, item.ctx.exchange.request
    try:
        r = await caller.ask(rubric_request(spec, req, item.logged))
        tally.spent(r)
        logged_grade = parse_grade(r.text or "")
        caller.session.logged_grades[item.ctx.exchange.id] = logged_grade
    except Exception as e:
        tally.error(e, len(item.others))
        return
    for check, other in item.others.items():
        try:
            r = await caller.ask(rubric_request(spec, req, other))
            tally.spent(r)
            grade = parse_grade(r.text or "")
        except Exception as e:
            tally.error(e)
            continue
        tally.result(check, logged_grade > grade)


#: End-user feedback values read as "the logged answer was good" / "bad".
_GOOD = {
    "up",
    "thumbs_up",
    "thumbsup",
    "good",
    "positive",
    "yes",
    "true",
    "like",
    "+1",
    "\U0001f44d",
}
_BAD = {
    "down",
    "thumbs_down",
    "thumbsdown",
    "bad",
    "negative",
    "no",
    "false",
    "dislike",
    "-1",
    "\U0001f44e",
}


def feedback_label(metadata: Mapping[str, Any]) -> bool | None:
    """End-user feedback on the logged answer in an exchange's ``metadata["feedback"]``: True
    (good), False (bad) or None (none, or not understood). Accepted: a boolean; a number in
    [-1, 1] (above 0.5 is good: scores in [0, 1], thumbs as 1/0 or 1/-1; ratings on other
    scales are not read); a word such as ``up``/``down``,
    ``good``/``bad``, ``positive``/``negative``; a mapping with ``score``, ``value``, ``rating``
    or ``thumbs``."""
    value = metadata.get("feedback")
    for _ in range(3):
        if isinstance(value, Mapping):
            value = next(
                (value[k] for k in ("score", "value", "rating", "thumbs") if k in value), None
            )
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):  # a score in [0, 1] or a thumb (1/0, 1/-1)
        return float(value) > 0.5 if -1.0 <= float(value) <= 1.0 else None
    if isinstance(value, str):
        word = value.strip().lower().replace(" ", "_")
        if word in _GOOD:
            return True
        if word in _BAD:
            return False
    return None


def _feedback_confusion(
    contexts: Sequence[MetricContext], grades: Mapping[str, float]
) -> dict[str, dict[str, int]] | None:
    """Over the task's exchanges with end-user feedback and a rubric grade of the logged answer:
    counts by feedback, then the judge's view (``good``: grade 6 or more); None without any.
    The verdict stage turns it into a kappa."""
    table: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for ctx in contexts:
        ex = ctx.exchange
        if ex.id in seen:
            continue
        seen.add(ex.id)
        label = feedback_label(ex.metadata)
        grade = grades.get(ex.id)
        if label is None or grade is None:
            continue
        row = table.setdefault("good" if label else "bad", {})
        judged = "good" if grade >= 6 else "bad"
        row[judged] = row.get(judged, 0) + 1
    return table or None


async def run_controls(
    caller: _Caller, kind: Kind, contexts: Sequence[MetricContext], pool: Sequence[MetricContext]
) -> JudgeControls:
    """Plant and judge the controls of one task (``contexts``: its pairs; ``pool``: every pair
    of the run, where unrelated answers come from). See the module docstring."""
    spec = caller.session.spec
    task = contexts[0].task.name
    items = _control_items(spec, task, contexts, pool)
    tally = _Tally()
    feedback: dict[str, dict[str, int]] | None = None
    if kind == "pairwise":
        await asyncio.gather(*(_pairwise_controls(caller, it, tally) for it in items))
    else:
        await asyncio.gather(*(_rubric_controls(caller, it, tally) for it in items))
        feedback = _feedback_confusion(contexts, caller.session.logged_grades)
    accuracy = tally.correct / tally.checks if tally.checks else None
    bias = tally.flips / tally.pairs if kind == "pairwise" and tally.pairs else None
    self_agreement = (
        tally.self_ties / tally.self_checks if kind == "pairwise" and tally.self_checks else None
    )
    eps = 1e-9
    reasons: list[str] = []
    if accuracy is None:
        reasons.append(
            f"the judge answered none of its {tally.errors} control checks, so it cannot be "
            f"trusted (first error: {tally.first_error})"
        )
    elif accuracy < spec.min_control_accuracy - eps:
        what = {
            "self": "did not call the logged answer a tie with itself",
            "unrelated": "did not prefer the logged answer to an unrelated answer",
            "truncated": "did not prefer the logged answer to its first 15% of words",
        }
        detail = "; ".join(f"{what[k]} {v} times" for k, v in sorted(tally.failed.items()))
        reasons.append(
            f"the judge got {tally.correct} of {tally.checks} planted control checks right "
            f"(accuracy {accuracy:.2f}, below the {spec.min_control_accuracy:.2f} required): "
            f"{detail}"
        )
    if bias is not None and bias > spec.max_position_bias + eps:
        reasons.append(
            f"its verdict changed with the order of the answers on {tally.flips} of "
            f"{tally.pairs} control pairs (position bias {bias:.2f}, above the "
            f"{spec.max_position_bias:.2f} allowed)"
        )
    price = spec.price
    cost = (
        (
            tally.prompt_tokens * price.input_per_mtok
            + tally.completion_tokens * price.output_per_mtok
        )
        / 1e6
        if price is not None
        else None
    )
    return JudgeControls(
        metric=_METRIC_OF[kind],
        items=len(items),
        checks=tally.checks,
        correct=tally.correct,
        errors=tally.errors,
        failed=dict(sorted(tally.failed.items())),
        accuracy=accuracy,
        position_bias=bias,
        self_agreement=self_agreement,
        min_accuracy=spec.min_control_accuracy,
        max_position_bias=spec.max_position_bias,
        passed=not reasons,
        reason="; ".join(reasons) or None,
        feedback=feedback,
        prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens,
        cost_usd=cost,
    )


def task_controls(task: str) -> dict[str, JudgeControls]:
    """Per judge metric, the controls of ``task`` in the active judge session ({} without one)."""
    session = _ACTIVE.get()
    if session is None:
        return {}
    return {_METRIC_OF[kind]: ctl for (kind, name), ctl in session.controls.items() if name == task}


def _run(coro: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    # Called from inside an event loop (a notebook): run in a thread of its own.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # pragma: no cover - re-raised below
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:  # pragma: no cover
        raise errors[0]


def _prepare(kind: Kind) -> Any:
    def prepare(contexts: Sequence[MetricContext]) -> None:
        session = _session()
        batch = _BATCH.get()
        if batch is not None:
            todo = {_key(c): c for c in contexts if (kind, _key(c)) not in session.outcomes}
            if todo:
                batch(session, kind, todo)
        _run(_judge_all(session, kind, contexts))  # the controls (the pairs are judged)

    return prepare


def _value(kind: Kind, ctx: MetricContext) -> float | None:
    session = _session()
    key = _key(ctx)
    out = session.outcomes.get((kind, key))
    if out is None:
        _run(_judge_all(session, kind, [ctx]))
        out = session.outcomes[(kind, key)]
    if out.error is not None:
        raise JudgeError(out.error.removeprefix("judge: "))
    return out.value


@register_metric(
    "judge_pairwise",
    description="LLM judge, candidate vs logged answer in both orders: 1 when the candidate is "
    "at least as good, 0.5 tie/loss or a split (win/loss), 0 loss/loss; validated on planted "
    "controls (suite 'judge:').",
    prepare=_prepare("pairwise"),
)
def judge_pairwise(ctx: MetricContext) -> float | None:
    return _value("pairwise", ctx)


@register_metric(
    "judge_rubric",
    description="LLM judge grades both answers 1-10 against the rubric: min(1, candidate / "
    "logged) (suite 'judge:').",
    prepare=_prepare("rubric"),
)
def judge_rubric(ctx: MetricContext) -> float | None:
    return _value("rubric", ctx)
