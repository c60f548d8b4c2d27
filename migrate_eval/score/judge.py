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
  the candidate first, to cancel position bias. Each order gives the candidate 1 (win),
  0.5 (tie) or 0 (loss); the mean ``m`` over both orders is the candidate's preference score.
  Parity means "at least as good as the logged answer", so the metric is ``min(1, 2 m)``:
  win/win, win/tie, tie/tie and win/loss (position bias) score 1, tie/loss 0.5, loss/loss 0.
* ``judge_rubric``: the judge grades an answer from 1 to 10 against the rubric (default:
  helpfulness, correctness, following the instructions), replying ``[[score]]``. Both the
  logged answer and the candidate are graded (the logged answer's request is identical for
  every candidate, so the cache asks it once); the metric is ``min(1, candidate / logged)``.

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
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from migrate_eval.core.errors import OfflineCacheMiss, VendorError
from migrate_eval.core.records import Response
from migrate_eval.core.request import content_text
from migrate_eval.core.suite import DEFAULT_RUBRIC, JudgeSpec
from migrate_eval.score.registry import MetricContext, register_metric
from migrate_eval.score.text import answer_text

__all__ = ["DEFAULT_RUBRIC", "JudgeError", "JudgeSession", "JudgeSpec", "judge_session", "usage_of"]
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


def pairwise_value(first: str, second: str) -> float:
    """Parity from the two verdicts (logged answer = A first, then candidate = A), see above."""
    as_b = {"A": 0.0, "B": 1.0, "C": 0.5}[first]
    as_a = {"A": 1.0, "B": 0.0, "C": 0.5}[second]
    return min(1.0, as_a + as_b)


# --- calling the judge -------------------------------------------------------------------------


class _Caller:
    def __init__(self, session: JudgeSession) -> None:
        from migrate_eval.replay.providers import get_provider

        self.session = session
        self.provider = get_provider(session.spec)
        self.identity = self.provider.identity()
        self.sem = asyncio.Semaphore(session.spec.concurrency)
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
                try:
                    self.session.calls += 1
                    out = await asyncio.wait_for(self.provider.complete(body), spec.timeout)
                except TimeoutError:
                    last = JudgeError(f"judge timed out after {spec.timeout:g} s")
                except VendorError as e:
                    last = e
                    if not e.retryable:
                        break
                else:
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


async def _judge_all(session: JudgeSession, kind: Kind, contexts: Sequence[MetricContext]) -> None:
    from migrate_eval.replay.cache import ResponseCache

    caller = _Caller(session)
    cache = ResponseCache(session.cache_path) if session.cache_path is not None else None
    caller.cache = cache
    try:
        todo = {_key(c): c for c in contexts if (kind, _key(c)) not in session.outcomes}
        keys = list(todo)
        results = await asyncio.gather(*(_judge_one(caller, kind, todo[k]) for k in keys))
        for k, r in zip(keys, results, strict=True):
            session.outcomes[(kind, k)] = r
    finally:
        await caller.provider.aclose()
        if cache is not None:
            cache.close()


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
        _run(_judge_all(session, kind, contexts))

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
    "at least as good, 0.5 tie/loss, 0 loss/loss (suite 'judge:').",
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
