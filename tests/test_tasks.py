from __future__ import annotations

from typing import Any

import pytest

from migrate_eval.core.records import Exchange, Response, Source, ToolCall
from migrate_eval.core.suite import TaskMatch, TaskSpec
from migrate_eval.plan.sampling import sample
from migrate_eval.plan.tasks import assign_tasks, infer_output_kind, prompt_template


def ex(
    i: int,
    system: str | None,
    answer: str = "ok",
    *,
    meta: dict[str, Any] | None = None,
    tools: bool = False,
    json_schema: bool = False,
) -> Exchange:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": f"question {i}"}]
    if system is not None:
        msgs.insert(0, {"role": "system", "content": system})
    req: dict[str, Any] = {"model": "gpt-4o-mini", "messages": msgs}
    if json_schema:
        req["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        }
    resp = Response(
        text=None if tools else answer,
        tool_calls=[ToolCall.from_raw("lookup", '{"id": 1}')] if tools else [],
    )
    return Exchange(
        id=f"e{i}",
        source=Source(file="f", line=i, format="t"),
        request=req,
        response=resp,
        metadata=meta or {},
    )


def test_template_normalises_variables() -> None:
    a = prompt_template(
        "You help Maya. Today is 2026-10-05. Order NW-12345, email maya@x.com, 3 items."
    )
    b = prompt_template(
        "You help Maya. Today is 2026-11-17. Order NW-99999, email bob@y.org, 12 items."
    )
    assert a == b
    assert "<date>" in a and "<email>" in a


def test_discovery_order_suite_then_metadata_then_template() -> None:
    exchanges = [
        ex(1, "Classify tickets.", meta={"feature": "triage"}),
        ex(2, "Classify tickets.", meta={"feature": "triage"}),
        ex(3, "You advise Maya. Today is 2026-10-01."),
        ex(4, "You advise Liam. Today is 2026-10-09."),
        ex(5, None),
        ex(6, "Special prompt", meta={"feature": "triage"}),
    ]
    spec = TaskSpec(name="special", match=TaskMatch(system_prompt_contains="Special"))
    plan = assign_tasks(exchanges, [spec])
    a = plan.assignment
    assert a["e6"] == "special"  # the suite wins over the metadata tag
    assert a["e1"] == a["e2"] == "triage"
    assert a["e3"] == a["e4"] != "untitled"  # names and dates are template variables
    assert a["e5"] == "untitled"
    sources = {t.name: t.source for t in plan.tasks}
    assert sources["special"] == "suite" and sources["triage"] == "metadata"
    assert sources[a["e3"]] == "system_prompt" and sources["untitled"] == "fallback"
    assert sum(t.n for t in plan.tasks) == len(exchanges)


def test_auto_off_leaves_unmatched_out() -> None:
    plan = assign_tasks(
        [ex(1, "a", meta={"feature": "x"}), ex(2, "b")],
        [TaskSpec(name="x", match=TaskMatch(metadata={"feature": "x"}))],
        auto=False,
    )
    assert plan.assignment == {"e1": "x"}


def test_output_kinds_drive_metrics() -> None:
    tools = [ex(i, "s", tools=True) for i in range(3)]
    structured = [ex(i, "s", '{"a": 1}', json_schema=True) for i in range(3)]
    labels = [
        ex(i, "s", lab) for i, lab in enumerate(["billing", "shipping", "billing", "Billing."] * 3)
    ]
    free = [ex(i, "s", f"A long free answer number {i} with many words in it.") for i in range(6)]
    assert infer_output_kind(tools) == "tool_call"
    assert infer_output_kind(structured) == "structured"
    assert infer_output_kind(labels) == "classification"
    assert infer_output_kind(free) == "free_text"
    plan = assign_tasks(tools, [TaskSpec(name="t", match=TaskMatch())])
    assert plan.tasks[0].output == "tool_call" and plan.tasks[0].metrics == ["tool_call_match"]


def test_sample_is_seeded_per_task_and_keeps_order() -> None:
    exchanges = [
        ex(i, "A" if i % 2 else "B", meta={"feature": "a" if i % 2 else "b"}) for i in range(40)
    ]
    plan = assign_tasks(exchanges)
    kept, plan2 = sample(exchanges, plan, limit=5, seed=1)
    again, _ = sample(exchanges, plan, limit=5, seed=1)
    assert [e.id for e in kept] == [e.id for e in again]
    assert len(kept) == 10 and {t.name: t.n for t in plan2.tasks} == {"a": 5, "b": 5}
    ids = [int(e.id[1:]) for e in kept]
    assert ids == sorted(ids)
    other, _ = sample(exchanges, plan, limit=5, seed=2)
    assert [e.id for e in other] != [e.id for e in kept]


def test_apostrophes_are_not_quoted_text() -> None:
    # regression: "Outfitters' gear advisor. The customer's" was taken for a quoted string
    t = prompt_template("Northwind Outfitters' gear advisor. The customer's name is 'Maya'.")
    assert t == "Northwind Outfitters' gear advisor. The customer's name is <quoted>."


def test_metadata_tags_from_log_tools() -> None:
    from migrate_eval.plan.tasks import metadata_tag

    assert metadata_tag({"feature": "triage", "trace_name": "x"}) == ("feature", "triage")
    assert metadata_tag({"trace_name": "summarise-call"}) == ("trace_name", "summarise-call")
    assert metadata_tag({"prompt_id": "pr-7"}) == ("prompt_id", "pr-7")
    assert metadata_tag({"Helicone-Property-Feature": "search", "Helicone-Property-User": "u"}) == (
        "Helicone-Property-Feature",
        "search",
    )
    assert metadata_tag({"properties": {"Task": "extract"}}) == ("properties.Task", "extract")
    assert metadata_tag({"tags": {"use_case": "faq"}}) == ("tags.use_case", "faq")
    assert metadata_tag({"helicone-property-user": "u1", "tags": ["a"], "task": ""}) is None


def test_discovered_rules_reproduce_the_assignment() -> None:
    from migrate_eval.plan.tasks import template_regex

    exchanges = [
        ex(1, "Help Maya. Today is 2026-10-01. Order NW-1 'red tent'.", meta={"trace_name": "t"}),
        ex(2, "Help Liam. Today is 2026-10-09. Order NW-22 'blue stove'."),
        ex(3, "Help Ana. Today is 2026-11-19. Order NW-333 'a b c'."),
        ex(4, "Translate to French."),
        ex(5, "Translate to French."),
        ex(6, None, meta={"properties": {"feature": "chat"}}),
    ]
    plan = assign_tasks(exchanges)
    assert plan.assignment["e1"] == "t" and plan.assignment["e6"] == "chat"
    assert plan.rules["t"].metadata == {"trace_name": "t"}
    assert plan.rules["chat"].metadata == {"properties.feature": "chat"}
    tpl = plan.assignment["e2"]
    assert plan.assignment["e3"] == tpl != plan.assignment["e4"]
    regex = plan.rules[tpl].system_prompt_regex
    assert regex is not None
    specs = [TaskSpec(name=n, match=r) for n, r in plan.rules.items()]
    specs.sort(key=lambda s: 0 if s.match.metadata else 1)
    again = assign_tasks(exchanges, specs, auto=False)
    assert again.assignment == plan.assignment
    assert {t.source for t in again.tasks} == {"suite"}
    # a template's regex needs its literal text
    import re

    assert re.search(template_regex(prompt_template("Help Bo. Order 7.")), "Help Bo. Order 7.")
    assert not re.search(regex, "Translate to French.")


def test_untitled_says_why_it_is_not_clustered(monkeypatch: Any) -> None:
    from migrate_eval.core import embeddings

    monkeypatch.setattr(embeddings, "available", lambda: False)
    plan = assign_tasks([ex(i, None) for i in range(25)])
    assert [t.name for t in plan.tasks] == ["untitled"]
    assert "migrate-eval[embedding]" in plan.tasks[0].description
    few = assign_tasks([ex(i, None) for i in range(3)])
    assert "too few" in few.tasks[0].description


def _question(i: int, text: str) -> Exchange:
    e = ex(i, None)
    e.request["messages"] = [{"role": "user", "content": text}]
    return e


@pytest.mark.slow
def test_prompt_less_exchanges_are_clustered_by_meaning() -> None:
    from migrate_eval.core import embeddings

    if not embeddings.available():
        pytest.skip("the embedding extra is not installed")
    refunds = [
        "I want a refund for my broken tent",
        "Please refund my order, the stove arrived damaged",
        "How do I get my money back for these boots?",
        "Refund request: the jacket is torn",
        "Can I return the sleeping bag and get a refund?",
        "My backpack broke, I'd like a refund",
        "Requesting reimbursement for a faulty headlamp",
        "Give me my money back for the defective tent poles",
        "I need a refund, the water filter leaks",
        "Refund please, wrong size hiking boots",
        "The trekking poles snapped, I want my money back",
        "Return and refund for a faulty camping stove",
    ]
    poems = [
        "Write a haiku about autumn leaves",
        "Compose a short poem about the sea at night",
        "Write a sonnet about the moon",
        "A limerick about a cat, please",
        "Write a poem about falling snow",
        "Compose a haiku about a mountain lake",
        "Write a short poem about spring rain",
        "A poem about stars over the desert",
        "Write verses about the wind in the trees",
        "Compose a poem about a quiet forest",
        "Write a haiku about the first frost",
        "A short rhyming poem about the ocean waves",
    ]
    exchanges = [_question(i, t) for i, t in enumerate(refunds + poems)]
    plan = assign_tasks(exchanges)
    a = plan.assignment
    refund_tasks = {a[f"e{i}"] for i in range(len(refunds))}
    poem_tasks = {a[f"e{i}"] for i in range(len(refunds), len(exchanges))}
    assert (refund_tasks - {"untitled"}).isdisjoint(poem_tasks - {"untitled"})
    main_refund = max(refund_tasks, key=lambda n: sum(1 for v in a.values() if v == n))
    main_poem = max(poem_tasks, key=lambda n: sum(1 for v in a.values() if v == n))
    assert sum(1 for v in a.values() if v == main_refund) >= 9
    assert sum(1 for v in a.values() if v == main_poem) >= 9
    sources = {t.name: t.source for t in plan.tasks}
    assert sources[main_refund] == sources[main_poem] == "cluster"
    # stable: the same traffic gives the same names
    assert assign_tasks(exchanges).assignment == a


def test_a_task_matched_on_metadata_or_model_does_not_look_for_the_system_prompt() -> None:
    # finding the system prompt reads every message: the traffic pass matches every exchange
    # against the suite's tasks, most of which name a metadata tag
    from migrate_eval.plan.tasks import _matches

    class Logged:
        def __init__(self) -> None:
            self.metadata = {"feature": "support"}
            self.model = "gpt-4o-mini"

        @property
        def system_prompt(self) -> str:
            raise AssertionError("system prompt read")

    ex: Any = Logged()
    assert _matches(ex, TaskMatch(metadata={"feature": "support"}))
    assert _matches(ex, TaskMatch(metadata={"feature": "support"}, model="gpt-4o-mini"))
    assert not _matches(ex, TaskMatch(metadata={"feature": "billing"}))
    with pytest.raises(AssertionError, match="system prompt read"):
        _matches(ex, TaskMatch(metadata={"feature": "support"}, system_prompt_contains="x"))
