"""Prompt adaptation (``migrate-eval adapt``): offline, with in-process stand-in endpoints.

The candidate answers in the logged JSON shape only when its system prompt names the schema;
the optimiser stand-in reads the failures it is shown, proposes the schema hint, and records
every request it received, so the tests can prove the held-out exchanges never reached it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from migrate_eval.adapt import (
    Adaptation,
    parse_proposal,
    parse_response_format,
    parse_tool_choice,
    plan_requests,
    prompt_diff,
    split_exchanges,
    with_system_prompt,
)
from migrate_eval.core.records import Exchange, Response, Source, ToolCall
from migrate_eval.core.suite import CandidateSpec, LogSpec, Suite, Thresholds
from migrate_eval.replay.providers import Provider, ProviderResponse, registry
from migrate_eval.replay.providers.registry import register_provider

SYSTEM = "You answer customer questions."
HINT = 'Answer only with a JSON object with the keys: "reply".'
LANG_HINT = "Answer in the customer's language."
TOOL_HINT = "Use it when the customer gives an order number."
TOOLS = [
    {"type": "function", "function": {"name": n, "description": d, "parameters": {}}}
    for n, d in (("search_faq", "Search the FAQ."), ("lookup_order", "Look up an order."))
]
N = 40
LABELS = {"refund": "remboursement", "delivery": "livraison", "invoice": "facture"}


def _user(body: dict[str, Any]) -> str:
    return str([m for m in body["messages"] if m["role"] == "user"][-1]["content"])


def _system(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"] if m["role"] == "system")


def _answer_for(user: str) -> str:
    return "answer to " + user.split()[-1]


class SchemaFollower(Provider):
    """Answers in the logged JSON shape only when the system prompt states the schema."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        text = _answer_for(_user(request))
        if HINT in _system(request):
            text = json.dumps({"reply": text})
        return ProviderResponse(response=Response(text=text), raw={}, latency_ms=1.0)

    def identity(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.spec.model}


class LanguageFollower(SchemaFollower):
    """Picks the right label, but in the customer's language only when told to."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        topic = next(t for t in LABELS if t in _user(request))
        text = LABELS[topic] if LANG_HINT in _system(request) else topic
        return ProviderResponse(response=Response(text=text), raw={}, latency_ms=1.0)


class ToolPicker(SchemaFollower):
    """Calls lookup_order only when its description says when to use it; else search_faq."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        descriptions = {
            t["function"]["name"]: t["function"]["description"] for t in request["tools"]
        }
        name = "lookup_order" if TOOL_HINT in descriptions["lookup_order"] else "search_faq"
        arguments = json.dumps({"order": _user(request).split()[-1]})
        call = ToolCall(
            id="c1", name=name, arguments=arguments, parsed_arguments=json.loads(arguments)
        )
        response = Response(tool_calls=[call], finish_reason="tool_calls")
        return ProviderResponse(response=response, raw={}, latency_ms=1.0)


class Hopeless(SchemaFollower):
    """Ignores every instruction."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        return ProviderResponse(response=Response(text="sorry"), raw={}, latency_ms=1.0)


class OptimiserStandIn(Provider):
    """Proposes the schema hint from the expected answers it is shown; records all it saw."""

    seen: ClassVar[list[str]] = []

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        OptimiserStandIn.seen.append(json.dumps(request, ensure_ascii=False))
        shown = json.loads(_user(request))
        keys: list[str] = []
        other_words = False
        tools: dict[str, str] = {}
        for f in shown["failures"]:
            try:
                doc = json.loads(f["expected_answer"])
            except ValueError:
                other_words = other_words or f["expected_answer"] != f["new_model_answer"]
                continue
            if isinstance(doc, list):  # tool calls: say when to use the expected tool
                for call in doc:
                    name = call["name"]
                    tools[name] = shown["tool_descriptions"][name] + " " + TOOL_HINT
                continue
            keys += [k for k in doc if k not in keys]
        attempt = shown["attempt"]
        prompt = shown["current_system_prompt"]
        if attempt == 0:  # the first proposal is a useless one: the best is picked
            prompt += "\nBe concise."
        elif keys:
            prompt += "\n" + 'Answer only with a JSON object with the keys: "reply".'
        elif other_words:
            prompt += "\n" + LANG_HINT
        answer: dict[str, Any] = {"system_prompt": prompt}
        if tools and attempt > 0:
            answer = {"tool_descriptions": tools}
        text = json.dumps(answer)
        return ProviderResponse(response=Response(text=text), raw={}, latency_ms=1.0)

    def identity(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.spec.model}


@pytest.fixture(autouse=True)
def _providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.PROVIDERS, "_entries", dict(registry.PROVIDERS._entries))
    register_provider("schema-follower")(SchemaFollower)
    register_provider("hopeless")(Hopeless)
    register_provider("language-follower")(LanguageFollower)
    register_provider("tool-picker")(ToolPicker)
    register_provider("optimiser-standin")(OptimiserStandIn)
    OptimiserStandIn.seen.clear()


def _log(path: Path, french: bool = False, tools: bool = False) -> Path:
    topics = list(LABELS)
    with path.open("w", encoding="utf-8") as f:
        for i in range(N):
            user = f"question zq{i:03d}"
            answer = json.dumps({"reply": _answer_for(user)})
            if french:
                topic = topics[i % len(topics)]
                user = f"Bonjour, un {topic} pour la commande zq{i:03d} svp"
                answer = LABELS[topic]
            request: dict[str, Any] = {
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": user},
                ],
            }
            message: dict[str, Any] = {"role": "assistant", "content": answer}
            if tools:
                request["tools"] = TOOLS
                arguments = json.dumps({"order": user.split()[-1]})
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": arguments},
                        }
                    ],
                }
            response = {
                "object": "chat.completion",
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if tools else "stop",
                    }
                ],
            }
            f.write(json.dumps({"request": request, "response": response}) + "\n")
    return path


def _run(tmp_path: Path, provider: str, french: bool = False, tools: bool = False) -> Path:
    from migrate_eval.api import run

    suite = Suite(
        name="adapt",
        logs=[LogSpec(path=str(_log(tmp_path / "log.jsonl", french, tools)))],
        candidates=[CandidateSpec(name="cand", provider=provider, model="m")],
        thresholds=Thresholds(min_samples=10),
        base_dir=tmp_path,
    )
    outcome = run(suite, out=tmp_path / "run", cache=tmp_path / "cache.db", baseline=False)
    verdicts = {t.verdict for c in outcome.results.candidates for t in c.tasks}
    assert verdicts == {"not_ready"}
    return outcome.run_dir


OPTIMISER = CandidateSpec(name="opt", provider="optimiser-standin", model="o")


@pytest.mark.slow  # a whole run, then the adaptation
def test_adapt_finds_the_schema_hint_and_the_verdict_flips(tmp_path: Path) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "schema-follower")
    told: list[str] = []
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db", notify=told.append)
    assert told and "requests at most" in told[0]  # the plan is shown before it is spent
    (r,) = result.results
    assert r.status == "adapted" and r.gain == "reliable_gain"
    assert r.verdict_before == "not_ready"
    assert r.verdict_after in ("ready", "ready_with_caveats") and r.ready_after
    assert r.parity_after is not None and r.parity_before is not None
    assert r.parity_after > r.parity_before
    assert r.paired is not None and r.paired.n == len(r.held_out_ids)
    assert HINT in (r.system_prompt_after or "")
    assert "+" + HINT in r.prompt_diff  # a diff a developer can paste
    # three asked, two distinct; the useless one scored lower on the adaptation set
    assert len(r.proposals) == 2 and r.system_prompt_after == r.proposals[1].system_prompt
    assert (r.proposals[0].adaptation_parity or 0) < (r.proposals[1].adaptation_parity or 0)
    assert r.cost.optimiser_requests == 3 and r.cost.cached == 0

    saved = Adaptation.model_validate_json((run_dir / "adaptation.json").read_text("utf-8"))
    assert saved.results[0].ready_after
    assert "ready after adaptation" in (run_dir / "summary.md").read_text("utf-8")
    # results.json and report.html carry it too (re-rendered in the run folder)
    from migrate_eval.api import load_run

    carried = load_run(run_dir).results.adaptation
    assert carried is not None and carried.rounds == 3
    (entry,) = carried.results
    assert entry.outcome == "ready_after_adaptation" and entry.changes == ["system_prompt"]
    assert entry.paired is not None and entry.paired.wilcoxon_p == r.paired.wilcoxon_p
    assert entry.prompt_diff == r.prompt_diff and entry.rounds == 1  # nothing left to fix
    assert entry.cost == r.cost
    page = (run_dir / "report.html").read_text("utf-8")
    assert 'id="adaptation"' in page and "ready after adaptation" in page
    assert "+" + HINT.replace('"', "&#34;") in page  # the diff, escaped
    from migrate_eval.api import rerender

    rerender(run_dir)  # a later re-render keeps the section: it comes from results.json
    assert 'id="adaptation"' in (run_dir / "report.html").read_text("utf-8")
    # an older run's results.json gets the version of the field it now holds
    from migrate_eval.core.results import SCHEMA_VERSION

    doc = json.loads((run_dir / "results.json").read_text("utf-8"))
    (run_dir / "results.json").write_text(
        json.dumps({**doc, "schema_version": "1.1", "adaptation": None}), "utf-8"
    )
    adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db")
    doc = json.loads((run_dir / "results.json").read_text("utf-8"))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["adaptation"] is not None

    # the held-out set is provably unseen: none of its requests or answers reached the optimiser
    assert set(r.held_out_ids).isdisjoint(r.adaptation_ids)
    shown = "\n".join(OptimiserStandIn.seen)
    by_id = {e.id: e for e in _exchanges(run_dir)}
    for ex_id in r.held_out_ids:
        word = _user(by_id[ex_id].request.body).split()[-1]
        assert word not in shown
    assert any(_user(by_id[x].request.body).split()[-1] in shown for x in r.adaptation_ids)

    # every call is cached: a second attempt sends nothing new
    again = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db")
    n = again.results[0].cost
    assert n.cached == n.optimiser_requests + n.candidate_requests
    assert again.results[0].system_prompt_after == r.system_prompt_after
    summary = (run_dir / "summary.md").read_text("utf-8")
    assert summary.count("## Prompt adaptation") == 1  # replaced, not appended again


@pytest.mark.slow
def test_adapt_tells_the_candidate_to_answer_in_the_customers_language(tmp_path: Path) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "language-follower", french=True)
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db")
    (r,) = result.results
    assert r.gain == "reliable_gain" and r.ready_after, r
    assert "+" + LANG_HINT in r.prompt_diff
    # classification: both sets carry every label (stratified split)
    by_id = {e.id: e for e in _exchanges(run_dir)}

    def labels(ids: list[str]) -> set[str]:
        return {by_id[x].response.text or "" for x in ids if by_id[x].response is not None}

    assert labels(r.held_out_ids) == labels(r.adaptation_ids) == set(LABELS.values())
    shown = "\n".join(OptimiserStandIn.seen)
    for ex_id in r.held_out_ids:  # no held-out order number reached the optimiser
        assert _user(by_id[ex_id].request.body).split()[-2] not in shown
    assert any(_user(by_id[x].request.body) in shown for x in r.adaptation_ids)


@pytest.mark.slow
def test_adapt_rewrites_a_tool_description_the_candidate_reads_differently(
    tmp_path: Path,
) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "tool-picker", tools=True)
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db")
    (r,) = result.results
    assert r.gain == "reliable_gain" and r.ready_after, r
    assert r.tool_descriptions_after == {"lookup_order": "Look up an order. " + TOOL_HINT}
    assert "+++ " + r.task + "/tools/lookup_order/description (adapted)" in r.prompt_diff
    assert "+Look up an order. " + TOOL_HINT in r.prompt_diff
    assert r.system_prompt_after == SYSTEM


@pytest.mark.slow
def test_a_candidate_that_cannot_be_helped_gets_no_reliable_gain(tmp_path: Path) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "hopeless")
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db")
    (r,) = result.results
    assert r.status == "adapted"
    assert r.gain == "no_reliable_gain" and not r.ready_after
    assert r.verdict_after == "not_ready"


@pytest.mark.slow
def test_a_budget_too_small_skips_with_the_reason(tmp_path: Path) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "schema-follower")
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db", budget=5)
    (r,) = result.results
    assert r.status == "skipped" and r.reason is not None and "budget" in r.reason
    assert OptimiserStandIn.seen == []  # nothing was sent


@pytest.mark.slow
def test_a_tight_budget_asks_for_fewer_proposals(tmp_path: Path) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "schema-follower")
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db", budget=41)
    (r,) = result.results
    assert result.planned_requests <= 41
    assert r.cost.optimiser_requests == 1 and len(OptimiserStandIn.seen) == 1
    assert r.cost.optimiser_requests + r.cost.candidate_requests <= 41


def _exchanges(run_dir: Path) -> list[Exchange]:
    from migrate_eval.api import load_run

    return load_run(run_dir).exchanges


def _ex(i: int, label: str) -> Exchange:
    return Exchange(
        id=f"e{i:03d}",
        source=Source(file="f", line=i + 1, format="chat-jsonl"),
        request={"model": "m", "messages": [{"role": "user", "content": str(i)}]},
        response=Response(text=label),
    )


def test_the_split_is_seeded_disjoint_and_stratified() -> None:
    exs = [_ex(i, "yes" if i % 4 == 0 else "no") for i in range(40)]
    a, h = split_exchanges(exs, held_out_fraction=0.5, seed=7, stratify=True)
    assert set(a).isdisjoint(h) and len(a) + len(h) == 40
    assert (a, h) == split_exchanges(exs, held_out_fraction=0.5, seed=7, stratify=True)
    assert (a, h) != split_exchanges(exs, held_out_fraction=0.5, seed=8, stratify=True)
    yes = {e.id for e in exs if e.response is not None and e.response.text == "yes"}
    assert len(yes & set(h)) == 5 and len(yes & set(a)) == 5


def test_a_proposal_replaces_or_prepends_the_system_message() -> None:
    ex = _ex(1, "x")
    edited = with_system_prompt(ex, "Be brief.")
    assert edited.request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert ex.request.body["messages"][0]["role"] == "user"  # the original is untouched
    again = with_system_prompt(edited, "Be kind.")
    assert [m["role"] for m in again.request.body["messages"]] == ["system", "user"]
    # a request whose own system prompt differs from the one the optimiser saw keeps it
    kept = with_system_prompt(edited, "New.", base="Shared prompt.")
    assert [m["content"] for m in kept.request.body["messages"][:2]] == ["New.", "Be brief."]
    replaced = with_system_prompt(edited, "New.", base="Be brief.")
    assert [m["role"] for m in replaced.request.body["messages"]] == ["system", "user"]


def test_proposals_are_read_from_json_or_bare_text_and_diffed() -> None:
    assert parse_proposal('```json\n{"system_prompt": "A"}\n```') == "A"
    assert parse_proposal("Just this prompt") == "Just this prompt"
    assert parse_proposal("  ") is None
    # options only: the prompt stays; a bare prompt that shows a JSON example is a prompt
    assert parse_proposal('{"tool_choice": "required"}') is None
    assert parse_proposal('Answer like {"reply": "..."}') == 'Answer like {"reply": "..."}'
    diff = prompt_diff("a\n", "a\nb\n", "t")
    assert "+b" in diff and diff.startswith("--- t/system_prompt (before)")
    # a line appended to a prompt without a final line break is one added line
    appended = prompt_diff("You help.", "You help.\nBe brief.", "t")
    assert [x for x in appended.splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")] == [
        "+Be brief."
    ]


@pytest.mark.slow
def test_the_cli_prints_the_plan_then_the_outcome(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from migrate_eval.cli import main

    run_dir = _run(tmp_path, "schema-follower")
    res = CliRunner().invoke(
        main,
        [
            "adapt",
            str(run_dir),
            "--optimiser",
            "opt=optimiser-standin:o",
            "--cache",
            str(tmp_path / "cache.db"),
            "--proposals",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "requests at most" in res.stderr
    assert "ready after adaptation" in res.stdout
    assert (run_dir / "adaptation.json").is_file()


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    from migrate_eval.api import adapt
    from migrate_eval.core.errors import UserError

    with pytest.raises(UserError, match="not a run folder"):
        adapt(tmp_path, cache=tmp_path / "c.db")


@pytest.mark.slow
def test_adapt_in_the_suite_runs_after_the_run(tmp_path: Path) -> None:
    from migrate_eval.api import run
    from migrate_eval.core.suite import AdaptSpec

    suite = Suite(
        name="adapt",
        logs=[LogSpec(path=str(_log(tmp_path / "log.jsonl")))],
        candidates=[CandidateSpec(name="cand", provider="schema-follower", model="m")],
        thresholds=Thresholds(min_samples=10),
        adapt=AdaptSpec(optimiser=OPTIMISER),
        base_dir=tmp_path,
    )
    told: list[str] = []
    outcome = run(
        suite, out=tmp_path / "run", cache=tmp_path / "c.db", baseline=False, notify=told.append
    )
    assert int(outcome.exit_code) != 0  # the run's own gate outcome is unchanged
    saved = Adaptation.model_validate_json((outcome.run_dir / "adaptation.json").read_text("utf-8"))
    assert saved.results[0].ready_after
    assert any("adaptation plan" in m for m in told)
    # the run folder's reports were re-rendered with it
    assert 'id="adaptation"' in (outcome.run_dir / "report.html").read_text("utf-8")
    results = json.loads((outcome.run_dir / "results.json").read_text("utf-8"))
    assert results["adaptation"]["results"][0]["outcome"] == "ready_after_adaptation"
    assert results["exit_code"] == int(outcome.exit_code)  # the gate outcome is unchanged
    doc = suite.dump()
    assert Suite.model_validate({**doc, "adapt": True}).adapt == AdaptSpec()
    assert Suite.model_validate({**doc, "adapt": False}).adapt is None


def test_request_options_are_read_only_when_a_vendor_can_take_them() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    assert parse_response_format(json.dumps({"response_format": schema})) == schema
    assert parse_response_format('{"response_format": {"type": "json_object"}}') == {
        "type": "json_object"
    }
    assert parse_response_format('{"response_format": {"type": "yaml"}}') is None
    assert parse_response_format('{"response_format": {"type": "json_schema"}}') is None
    assert parse_tool_choice('{"tool_choice": "required"}', ["a"]) == "required"
    named = {"type": "function", "function": {"name": "a"}}
    assert parse_tool_choice(json.dumps({"tool_choice": named}), ["a"]) == named
    assert parse_tool_choice('{"tool_choice": {"function": {"name": "zz"}}}', ["a"]) is None
    assert parse_tool_choice('{"tool_choice": "always"}', ["a"]) is None


def test_options_are_set_on_the_request_tool_choice_only_where_tools_are() -> None:
    fmt = {"type": "json_object"}
    plain = with_system_prompt(_ex(1, "x"), "P", response_format=fmt, tool_choice="required")
    assert plain.request.body["response_format"] == fmt
    assert "tool_choice" not in plain.request.body  # a request without tools gets none
    with_tools = Exchange(
        id="t",
        source=Source(file="f", line=1, format="chat-jsonl"),
        request={"model": "m", "messages": [{"role": "user", "content": "q"}], "tools": TOOLS},
    )
    edited = with_system_prompt(with_tools, "P", {"lookup_order": "New."}, tool_choice="required")
    assert edited.request.body["tool_choice"] == "required"
    assert [t["function"]["description"] for t in edited.request.body["tools"]] == [
        "Search the FAQ.",
        "New.",
    ]
    assert TOOLS[1]["function"]["description"] == "Look up an order."  # the original untouched


def test_the_plan_counts_every_round_and_the_held_out_set_once() -> None:
    # per round: 3 proposals and their replays on 20 exchanges; then 20 held out, once
    assert plan_requests(20, 20, 3, 2) == 2 * (3 + 60) + 20
    assert plan_requests(20, 20, 3) == 3 + 60 + 20


@pytest.mark.slow
def test_a_budget_for_one_round_runs_one_round(tmp_path: Path) -> None:
    from migrate_eval.api import adapt

    run_dir = _run(tmp_path, "schema-follower")
    result = adapt(run_dir, optimiser=OPTIMISER, cache=tmp_path / "cache.db", budget=83, rounds=3)
    (r,) = result.results
    assert result.planned_requests == 83 and r.cost.planned_requests == 83  # 1 round of 3
    assert r.rounds == 1 and r.ready_after
