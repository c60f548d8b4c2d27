"""Tool-use metrics: same tools, JSON-equal arguments, parallel calls as a multiset."""

from __future__ import annotations

from typing import Any

import pytest

from migrate_eval.core.records import Exchange, Response, Source, ToolCall
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import MetricContext, get_metric

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


def _call(name: str, arguments: Any) -> ToolCall:
    return ToolCall.from_raw(name, arguments)


def _ctx(reference: Response, candidate: Response) -> MetricContext:
    ex = Exchange(
        id="x1",
        source=Source(file="log.jsonl", line=1, format="test"),
        request={"model": "gpt-4o", "messages": [], "tools": [WEATHER_TOOL]},
        response=reference,
    )
    task = TaskInfo(name="t", output="tool_call", metrics=[], min_parity=0.8, n=1, source="suite")
    return MetricContext(exchange=ex, reference=reference, candidate=candidate, task=task)


def _m(name: str, ref: list[ToolCall] | str, cand: list[ToolCall] | str) -> float | None:
    r = Response(text=ref) if isinstance(ref, str) else Response(tool_calls=ref)
    c = Response(text=cand) if isinstance(cand, str) else Response(tool_calls=cand)
    return get_metric(name).func(_ctx(r, c))


def test_same_call_with_reordered_keys_and_int_float_matches() -> None:
    ref = [_call("get_weather", '{"city": "Paris", "days": 3}')]
    cand = [_call("get_weather", '{"days": 3.0,\n "city": "Paris"}')]
    assert _m("tool_call_match", ref, cand) == 1.0


def test_different_arguments_do_not_match_but_names_do() -> None:
    ref = [_call("get_weather", '{"city": "Paris"}')]
    cand = [_call("get_weather", '{"city": "paris"}')]
    assert _m("tool_call_match", ref, cand) == 0.0
    assert _m("tool_name_match", ref, cand) == 1.0


def test_parallel_calls_in_a_different_order_match_as_a_multiset() -> None:
    ref = [
        _call("get_weather", {"city": "Paris"}),
        _call("get_weather", {"city": "Tokyo"}),
        _call("get_time", {"tz": "UTC"}),
    ]
    cand = [
        _call("get_time", '{"tz": "UTC"}'),
        _call("get_weather", '{"city": "Tokyo"}'),
        _call("get_weather", '{"city": "Paris"}'),
    ]
    assert _m("tool_call_match", ref, cand) == 1.0


def test_partial_matches_divide_by_the_longer_list() -> None:
    ref = [_call("a", {"x": 1}), _call("b", {"y": 2})]
    assert _m("tool_call_match", ref, [_call("a", {"x": 1})]) == 0.5
    assert _m("tool_call_match", ref, [*ref, _call("c", {})]) == pytest.approx(2 / 3)
    # duplicates count once each: a multiset, not a set
    assert _m("tool_call_match", [_call("a", {"x": 1})] * 2, [_call("a", {"x": 1})]) == 0.5
    assert _m("tool_name_match", ref, [_call("b", {}), _call("a", {"z": 0})]) == 1.0


def test_text_versus_tool_call() -> None:
    ref = [_call("get_weather", {"city": "Paris"})]
    assert _m("tool_call_match", ref, "It is sunny in Paris.") == 0.0
    assert _m("tool_call_match", "It is sunny in Paris.", ref) == 0.0
    assert _m("tool_call_match", "Hello", "Hi") is None
    assert _m("tool_name_match", ref, "text") == 0.0
    assert _m("tool_name_match", "text", "text") is None


def test_invalid_argument_json() -> None:
    bad = _call("get_weather", '{"city": "Paris"')
    assert bad.arguments_valid_json is False
    good = _call("get_weather", '{"city": "Paris"}')
    assert _m("tool_call_match", [good], [bad]) == 0.0
    assert _m("tool_call_match", [bad], [good]) == 0.0
    # the same broken text on both sides is the same call
    assert _m("tool_call_match", [bad], [_call("get_weather", ' {"city": "Paris" ')]) == 1.0
    assert _m("tool_name_match", [good], [bad]) == 1.0


def test_empty_arguments_equal_an_empty_object() -> None:
    assert _m("tool_call_match", [_call("ping", "")], [_call("ping", "{}")]) == 1.0


def test_tool_args_valid_checks_the_request_tool_schema() -> None:
    ref = [_call("get_weather", {"city": "Paris"})]
    assert _m("tool_args_valid", ref, [_call("get_weather", {"city": "Rome", "unit": "c"})]) == 1.0
    assert _m("tool_args_valid", ref, [_call("get_weather", {"unit": "c"})]) == 0.0  # required
    assert _m("tool_args_valid", ref, [_call("get_weather", {"city": "Rome", "unit": "k"})]) == 0.0
    assert _m("tool_args_valid", ref, [_call("no_such_tool", {})]) == 0.0
    assert _m("tool_args_valid", ref, [_call("get_weather", "{broken")]) == 0.0
    two = [_call("get_weather", {"city": "Rome"}), _call("get_weather", {})]
    assert _m("tool_args_valid", ref, two) == 0.5
    assert _m("tool_args_valid", ref, "text answer") is None
