"""``migrate-eval adapt`` end to end over HTTP: a loopback candidate, a loopback optimiser.

The candidate (:func:`tests.servers.instruction_follower`) answers in the logged JSON shape only
when the request gives the schema, in the customer's language only when told, calls a tool only
when ``tool_choice`` requires one and the right tool only when its description says when. The
optimiser (:func:`tests.servers.prompt_optimiser`) proposes one fix a round from the failures it
is shown, so the second round is what makes both tasks ready. Every request the optimiser
received is recorded at its server: no held-out exchange's text is in any of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.suite import CandidateSpec, LogSpec, Suite, Thresholds
from tests.servers import (
    FRENCH_GREETING,
    LANGUAGE_HINT,
    ORDER_TOOL_HINT,
    LoopbackServer,
    instruction_follower,
    prompt_optimiser,
)

N = 40  # exchanges per task: 20 held out
SUPPORT = "You answer customer questions."
ORDERS = "You help customers with their orders."
TOOLS = [
    {"type": "function", "function": {"name": n, "description": d, "parameters": {}}}
    for n, d in (("search_faq", "Search the FAQ."), ("lookup_order", "Look up an order."))
]


@pytest.fixture
def candidate() -> Iterator[LoopbackServer]:
    with LoopbackServer(behaviour=instruction_follower) as srv:
        yield srv


@pytest.fixture
def optimiser() -> Iterator[LoopbackServer]:
    with LoopbackServer(behaviour=prompt_optimiser) as srv:
        yield srv


def _line(system: str, user: str, message: dict[str, Any], tools: bool) -> str:
    request: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    if tools:
        request["tools"] = TOOLS
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    response = {
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    return json.dumps({"request": request, "response": response}, ensure_ascii=False) + "\n"


def _log(path: Path) -> Path:
    """Two tasks: support (JSON answers, half the customers write French) and orders (a
    lookup_order call when the customer gives an order number, else search_faq)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(N):
            token = f"zq{i:03d}"
            if i % 2:
                user, reply = f"{FRENCH_GREETING}, une question sur {token}", f"réponse à {token}"
            else:
                user, reply = f"Hello, a question about {token}", f"answer to {token}"
            message = {
                "role": "assistant",
                "content": json.dumps({"reply": reply}, ensure_ascii=False),
            }
            f.write(_line(SUPPORT, user, message, tools=False))
        for i in range(N):
            token = f"zo{i:03d}"
            if i % 2:
                user, name, args = f"Where is my order {token}", "lookup_order", {"order": token}
            else:
                user = f"How do refunds work {token}"
                name, args = "search_faq", {"query": user}
            call = {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            f.write(_line(ORDERS, user, message, tools=True))
    return path


@pytest.mark.slow  # a whole run over HTTP, then two rounds of adaptation on two tasks
def test_adapt_over_http_finds_the_edits_in_two_rounds_and_the_verdicts_flip(
    tmp_path: Path, candidate: LoopbackServer, optimiser: LoopbackServer
) -> None:
    from migrate_eval.api import adapt, load_run

    run_dir = _run(tmp_path, candidate)
    sent_by_the_run = candidate.total

    opt = CandidateSpec(name="opt", model="o", base_url=optimiser.base_url)
    told: list[str] = []
    result = adapt(
        run_dir, optimiser=opt, proposals=2, cache=tmp_path / "cache.db", notify=told.append
    )
    assert told and "up to 3 round(s)" in told[0]  # the plan, before anything is sent
    assert len(result.results) == 2
    for r in result.results:
        assert r.status == "adapted" and r.gain == "reliable_gain" and r.ready_after, r
        assert r.verdict_before == "not_ready" and r.verdict_after in (
            "ready",
            "ready_with_caveats",
        )
        assert r.parity_after is not None and r.parity_before is not None
        assert r.parity_after > r.parity_before
        assert r.rounds == 2  # one fix a round: the second round was needed
        assert {p.round for p in r.proposals} == {0, 1}
    support, orders = sorted(result.results, key=lambda r: r.system_prompt_before != SUPPORT)
    assert support.system_prompt_before == SUPPORT and orders.system_prompt_before == ORDERS

    # support: response_format with the logged keys (round 0), the language hint (round 1)
    assert support.response_format_after is not None
    assert support.response_format_after["json_schema"]["schema"]["required"] == ["reply"]
    assert "+" + LANGUAGE_HINT in support.prompt_diff
    assert "+++ " + support.task + "/request/response_format (adapted)" in support.prompt_diff
    # orders: tool_choice required (round 0), lookup_order's description (round 1)
    assert orders.tool_choice_after == "required"
    assert orders.tool_descriptions_after == {
        "lookup_order": f"Look up an order. {ORDER_TOOL_HINT}"
    }
    assert '+"required"' in orders.prompt_diff
    assert f"+Look up an order. {ORDER_TOOL_HINT}" in orders.prompt_diff

    # the held-out replay carried the edits (seen at the candidate's server)
    held_tokens = {t for r in result.results for t in _tokens(run_dir, r.held_out_ids)}
    carried = [b for b in candidate.bodies[sent_by_the_run:] if _token(b) in held_tokens]
    assert len(carried) == sum(len(r.held_out_ids) for r in result.results)  # replayed once
    assert carried and all(
        b.get("response_format") is not None or b.get("tool_choice") == "required" for b in carried
    )

    # results.json, summary.md and report.html carry it, re-rendered in the run folder
    saved = load_run(run_dir).results.adaptation
    assert saved is not None
    assert {e.outcome for e in saved.results} == {"ready_after_adaptation"}
    assert {tuple(e.changes) for e in saved.results} == {
        ("system_prompt", "response_format"),
        ("tools/lookup_order/description", "tool_choice"),
    }
    assert all(e.paired is not None and (e.paired.wilcoxon_p or 1) < 0.05 for e in saved.results)
    summary = (run_dir / "summary.md").read_text("utf-8")
    assert summary.count("## Prompt adaptation") == 1 and "ready after adaptation" in summary
    page = (run_dir / "report.html").read_text("utf-8")
    assert 'id="adaptation"' in page
    assert "+" + LANGUAGE_HINT.replace("'", "&#39;") in page
    assert f"+Look up an order. {ORDER_TOOL_HINT}" in page

    # honesty: no held-out exchange's text reached the optimiser, adaptation-set text did
    shown = "\n".join(json.dumps(b, ensure_ascii=False) for b in optimiser.bodies)
    assert optimiser.total == sum(r.cost.optimiser_requests for r in result.results) == 8
    assert not {t for t in held_tokens if t in shown}
    adapt_tokens = {t for r in result.results for t in _tokens(run_dir, r.adaptation_ids)}
    assert {t for t in adapt_tokens if t in shown}

    # resumable: a second attempt is answered from the cache, nothing reaches either server
    before_opt, before_cand = optimiser.total, candidate.total
    again = adapt(run_dir, optimiser=opt, proposals=2, cache=tmp_path / "cache.db")
    assert (optimiser.total, candidate.total) == (before_opt, before_cand)
    assert [r.prompt_diff for r in again.results] == [r.prompt_diff for r in result.results]


def _run(tmp_path: Path, candidate: LoopbackServer) -> Path:
    from migrate_eval.api import run

    suite = Suite(
        name="adapt-e2e",
        logs=[LogSpec(path=str(_log(tmp_path / "log.jsonl")))],
        candidates=[CandidateSpec(name="cand", model="m", base_url=candidate.base_url)],
        thresholds=Thresholds(min_samples=10),
        base_dir=tmp_path,
    )
    outcome = run(suite, out=tmp_path / "run", cache=tmp_path / "cache.db", baseline=False)
    by_task = {t.task: t.verdict for c in outcome.results.candidates for t in c.tasks}
    assert len(by_task) == 2 and set(by_task.values()) == {"not_ready"}, by_task
    return outcome.run_dir


@pytest.mark.slow
def test_an_interrupted_adaptation_resumes_from_the_cache(
    tmp_path: Path, candidate: LoopbackServer, optimiser: LoopbackServer
) -> None:
    """The optimiser fails in the second round (the attempt ends on round one's best); once it
    is back, a second attempt sends only what the first did not get answered."""
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, candidate)
    opt = CandidateSpec(name="opt", model="o", base_url=optimiser.base_url, max_retries=0)
    optimiser.fail(500, times=1000, match='"round": 1,')
    first = adapt(run_dir, optimiser=opt, proposals=2, cache=tmp_path / "cache.db")
    assert optimiser.total == 8  # 2 tasks x 2 rounds x 2 proposals, round two failed
    for r in first.results:
        assert {p.round for p in r.proposals} == {0} and not r.ready_after

    optimiser.reset()
    sent = candidate.total
    again = adapt(run_dir, optimiser=opt, proposals=2, cache=tmp_path / "cache.db")
    assert optimiser.total == 4  # round one came from the cache: only round two was asked
    for r in again.results:
        assert r.rounds == 2 and r.ready_after, r
        assert r.cost.cached >= r.cost.optimiser_requests // 2
    # the candidate: round two's proposals on the adaptation set and the new held-out replay
    adaptation_n = sum(len(r.adaptation_ids) for r in again.results)
    held_n = sum(len(r.held_out_ids) for r in again.results)
    assert candidate.total - sent == 2 * adaptation_n + held_n


def _token(body: dict[str, Any]) -> str | None:
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    found = re.findall(r"z[qo]\d{3}", str(users[-1].get("content"))) if users else []
    return found[-1] if found else None


def _tokens(run_dir: Path, ids: list[str]) -> list[str]:
    from migrate_eval.api import load_run

    by_id = {e.id: e for e in load_run(run_dir).exchanges}
    return [t for t in (_token(by_id[x].request.body) for x in ids) if t is not None]
