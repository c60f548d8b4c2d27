from __future__ import annotations

from typing import Any

from migrate_eval.records import Exchange, Response, Source, ToolCall
from migrate_eval.suite import TaskMatch, TaskSpec
from migrate_eval.tasks import assign_tasks, infer_output_kind, prompt_template, sample


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
