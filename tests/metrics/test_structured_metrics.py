"""Structured-output metrics: JSON validity (fences), schema validity, field-by-field parity."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from migrate_eval.core.records import Exchange, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import MetricContext, get_metric
from migrate_eval.score._json import json_equal, parse_json_answer
from migrate_eval.score.structured import json_field_parity

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _request(schema: Any = None, rf_type: str = "json_schema") -> dict[str, Any]:
    req: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "extract"}]}
    if rf_type == "json_schema":
        req["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": schema},
        }
    elif rf_type == "json_object":
        req["response_format"] = {"type": "json_object"}
    return req


def _ctx(
    reference: str | None, candidate: str | None, request: dict[str, Any] | None = None
) -> MetricContext:
    ref, cand = Response(text=reference), Response(text=candidate)
    ex = Exchange(
        id="x1",
        source=Source(file="log.jsonl", line=1, format="test"),
        request=request or _request(rf_type="none"),
        response=ref,
    )
    task = TaskInfo(name="t", output="structured", metrics=[], min_parity=0.8, n=1, source="suite")
    return MetricContext(exchange=ex, reference=ref, candidate=cand, task=task)


def _m(name: str, ctx: MetricContext) -> float | None:
    return get_metric(name).func(ctx)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        "  [1, 2, 3]\n",
        '"just a string"',
        "42",
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        '\n```JSON\n{\n  "a": [1, 2]\n}\n```\n',
        '{"ключ": "значение 🎉"}',
    ],
)
def test_json_valid_accepts_json_and_a_single_fenced_block(text: str) -> None:
    assert _m("json_valid", _ctx('{"a": 1}', text)) == 1.0


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "{'a': 1}",  # Python, not JSON
        '{"a": 1,}',
        'Here you go: ```json\n{"a": 1}\n```',  # prose around the fence is not accepted
        '```json\n{"a": 1}\n``` and more',
        '```json\n{"a": \n```',
    ],
)
def test_json_valid_rejects_non_json(text: str | None) -> None:
    assert _m("json_valid", _ctx('{"a": 1}', text)) == 0.0


def test_parse_json_answer_unwraps_fence() -> None:
    assert parse_json_answer('```json\n{"a": [1, {"b": null}]}\n```') == (
        True,
        {"a": [1, {"b": None}]},
    )
    assert parse_json_answer("nope") == (False, None)


def test_json_schema_valid_checks_required_fields_and_types() -> None:
    req = _request(SCHEMA)
    ok = '{"name": "Ada", "age": 36, "tags": ["math"]}'
    assert _m("json_schema_valid", _ctx(ok, ok, req)) == 1.0
    assert _m("json_schema_valid", _ctx(ok, '```json\n{"age": 36, "name": "Ada"}\n```', req)) == 1.0
    assert _m("json_schema_valid", _ctx(ok, '{"name": "Ada"}', req)) == 0.0  # missing required
    assert (
        _m("json_schema_valid", _ctx(ok, '{"name": "Ada", "age": "36"}', req)) == 0.0
    )  # wrong type
    assert _m("json_schema_valid", _ctx(ok, '{"name": "Ada", "age": -1}', req)) == 0.0  # minimum
    assert (
        _m("json_schema_valid", _ctx(ok, '{"name": "Ada", "age": 1, "x": 0}', req)) == 0.0
    )  # extra
    assert _m("json_schema_valid", _ctx(ok, "not json", req)) == 0.0


def test_json_schema_valid_uses_draft_2020_12() -> None:
    # prefixItems only exists from Draft 2020-12 on
    schema = {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "items": False,
    }
    req = _request(schema)
    assert _m("json_schema_valid", _ctx('[1, "a"]', '[1, "a"]', req)) == 1.0
    assert _m("json_schema_valid", _ctx('[1, "a"]', '["a", 1]', req)) == 0.0
    assert _m("json_schema_valid", _ctx('[1, "a"]', '[1, "a", 2]', req)) == 0.0


def test_json_schema_valid_is_not_applicable_without_a_schema() -> None:
    assert _m("json_schema_valid", _ctx("{}", "{}", _request(rf_type="json_object"))) is None
    assert _m("json_schema_valid", _ctx("{}", "{}", _request(rf_type="none"))) is None


def test_invalid_schema_raises_so_scoring_can_report_it() -> None:
    req = _request({"type": "no-such-type"})
    with pytest.raises(jsonschema.SchemaError, match="no-such-type"):
        _m("json_schema_valid", _ctx("{}", "{}", req))


def test_json_match_ignores_key_order_and_int_float() -> None:
    ref = '{"a": 1, "b": {"c": [1, 2], "d": "x"}}'
    cand = '{"b": {"d": "x", "c": [1.0, 2]}, "a": 1.0}'
    assert _m("json_match", _ctx(ref, cand)) == 1.0


def test_json_match_scores_the_share_of_equal_leaf_fields() -> None:
    ref = {"name": "Ada", "age": 36, "address": {"city": "London", "zip": "N1"}}
    one_wrong = {"name": "Ada", "age": 37, "address": {"city": "London", "zip": "N1"}}
    nested_wrong = {"name": "Ada", "age": 36, "address": {"city": "Paris", "zip": "N1"}}
    missing = {"name": "Ada", "age": 36, "address": {"city": "London"}}
    extra = {**ref, "email": "ada@example.org"}
    assert _m("json_match", _ctx(json.dumps(ref), json.dumps(one_wrong))) == 0.75
    assert _m("json_match", _ctx(json.dumps(ref), json.dumps(nested_wrong))) == 0.75
    assert _m("json_match", _ctx(json.dumps(ref), json.dumps(missing))) == 0.75
    # an extra key adds one path to the union: 4 matched of 5
    assert _m("json_match", _ctx(json.dumps(ref), json.dumps(extra))) == 0.8


def test_json_match_lists_are_position_wise() -> None:
    assert json_field_parity([1, 2, 3], [1, 2, 3]) == 1.0
    assert json_field_parity([1, 2, 3], [3, 2, 1]) == pytest.approx(1 / 3)
    assert json_field_parity([1, 2], [1, 2, 3]) == pytest.approx(2 / 3)  # extra item
    assert json_field_parity({"xs": [{"a": 1}, {"a": 2}]}, {"xs": [{"a": 1}, {"a": 5}]}) == 0.5


def test_json_match_type_mismatches_and_booleans() -> None:
    assert json_field_parity({"a": True}, {"a": 1}) == 0.0  # a boolean is not a number
    assert json_field_parity({"a": None}, {"a": "null"}) == 0.0
    assert json_field_parity({"a": {"b": 1}}, {"a": 1}) == 0.0
    assert json_field_parity({}, {}) == 1.0
    assert json_field_parity("x", "x") == 1.0
    assert json_field_parity({"a": [], "b": 1}, {"a": [], "b": 1}) == 1.0


def test_json_match_candidate_not_json_is_zero_reference_not_json_is_na() -> None:
    assert _m("json_match", _ctx('{"a": 1}', "sorry, I cannot")) == 0.0
    assert _m("json_match", _ctx("plain text", '{"a": 1}')) is None
    assert _m("json_match", _ctx('{"a": 1}', '```json\n{"a": 1}\n```')) == 1.0


def test_json_equal() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert json_equal("é", "é")
