"""chat-jsonl: request/response pairs, checked against real recorded OpenAI traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.records import Exchange
from migrate_eval.ingest import read_logs
from tests.ingest.helpers import cassette_pairs, completion, write_jsonl


def _sdk_dump(pair: dict[str, Any]) -> dict[str, Any]:
    """The shape an SDK wrapper logs: the request kwargs and ``completion.model_dump()``."""
    body = json.loads(pair["response"]["body"])
    return {"id": pair["id"], "request": pair["request"], "response": body, "latency_ms": 640}


@pytest.fixture
def cassettes(tmp_path: Path) -> dict[str, Exchange]:
    pairs = cassette_pairs("test_chat_completion_*.yaml")
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        # Successful calls as SDK dumps; errors and streams as a proxy logs them (status + body).
        [
            _sdk_dump(p)
            if p["response"]["status_code"] == 200 and p["response"]["body"].startswith("{")
            else p
            for p in pairs
        ],
    )
    result = read_logs([path])
    assert result.skipped == []
    assert result.lines_read == len(pairs) == len(result.exchanges)
    assert result.formats == {"chat-jsonl": len(pairs)}
    return {ex.id: ex for ex in result.exchanges}


def test_tool_calls_usage_and_finish_reasons_survive(cassettes: dict[str, Exchange]) -> None:
    first = cassettes["test_chat_completion_tool_calls_with_content#0"]
    assert first.request["tool_choice"] == "auto"
    assert first.request["tools"][0]["function"]["name"] == "get_current_weather"
    response = first.response
    assert response is not None
    assert response.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments, c.parsed_arguments) for c in response.tool_calls] == [
        (
            "call_JpNb8OiAkbIbHzDggfpdDHpi",
            "get_current_weather",
            '{"location": "Seattle, WA"}',
            {"location": "Seattle, WA"},
        ),
        (
            "call_vaFQc3zK6hHTRZKXRI5Eo2cJ",
            "get_current_weather",
            '{"location": "San Francisco, CA"}',
            {"location": "San Francisco, CA"},
        ),
    ]
    assert response.usage is not None
    assert response.usage.model_dump() == {
        "prompt_tokens": 75,
        "completion_tokens": 51,
        "total_tokens": 126,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.latency_ms == 640
    assert first.timestamp == datetime.fromtimestamp(1731368634, tz=UTC)

    # The follow-up call carries the tool results in its request.
    second = cassettes["test_chat_completion_tool_calls_with_content#1"]
    roles = [m["role"] for m in second.request["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    assert second.request["messages"][3]["tool_call_id"] == "call_JpNb8OiAkbIbHzDggfpdDHpi"
    assert second.response is not None and second.response.finish_reason == "stop"
    assert second.response.text is not None and "Seattle" in second.response.text


def test_n_greater_than_one_keeps_the_other_choices(cassettes: dict[str, Exchange]) -> None:
    ex = cassettes["test_chat_completion_multiple_choices#0"]
    assert ex.request["n"] == 2
    assert ex.response is not None and ex.response.text
    (other,) = ex.metadata["other_choices"]
    assert other["finish_reason"] == "stop" and other["text"]

    streamed = cassettes["test_chat_completion_multiple_choices_streaming#0"]
    assert streamed.response is not None and streamed.response.text
    assert len(streamed.metadata["other_choices"]) == 1


def test_a_404_is_a_logged_error_not_a_skipped_line(cassettes: dict[str, Exchange]) -> None:
    ex = cassettes["test_chat_completion_404#0"]
    assert ex.response is None
    assert ex.error == (
        "HTTP 404: model_not_found: The model `this-model-does-not-exist` does not exist "
        "or you do not have access to it."
    )
    assert ex.model == "this-model-does-not-exist"


def test_streamed_responses_are_assembled(cassettes: dict[str, Exchange]) -> None:
    tools = cassettes["test_chat_completion_multiple_tools_streaming_with_content#0"].response
    assert tools is not None and tools.finish_reason == "tool_calls"
    assert [c.parsed_arguments for c in tools.tool_calls] == [
        {"location": "Seattle, WA"},
        {"location": "San Francisco, CA"},
    ]
    assert tools.usage is not None and tools.usage.prompt_tokens == 75
    text = cassettes["test_chat_completion_streaming#0"].response
    assert text is not None and text.finish_reason == "stop"
    assert text.text is not None and "This is a test" in text.text


def test_alternative_keys_metadata_tags_gold_and_timestamps(tmp_path: Path) -> None:
    request = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "2+2?"}],
        "metadata": {"feature": "math"},
    }
    lines = [
        {
            "req": request,
            "res": completion("4"),
            "timestamp": "2025-03-01T12:00:00Z",
            "tags": ["prod", "eu"],
            "gold": "4",
        },
        {
            "input": request,
            "output": completion("4", id="chatcmpl-xyz"),
            "created_at": 1740830400123,
            "metadata": {"user_rating": 5},
            "label": 4,
        },
        {
            "request": {"url": "/v1/chat/completions", "body": json.dumps(request)},
            "response": {"status_code": 429, "body": "Rate limit reached"},
        },
        {"request": request},
    ]
    result = read_logs([write_jsonl(tmp_path / "proxy.jsonl", lines)])
    assert result.skipped == [] and len(result.exchanges) == 4
    a, b, c, d = result.exchanges
    assert a.metadata == {"feature": "math", "tags": ["prod", "eu"]}
    assert a.gold == "4" and a.timestamp == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert b.id == "chatcmpl-xyz"  # the logged response id
    assert b.metadata == {"feature": "math", "user_rating": 5}
    assert b.gold == "4"
    assert b.timestamp == datetime.fromtimestamp(1740830400.123, tz=UTC)
    assert c.error == "HTTP 429: Rate limit reached" and c.request["model"] == "gpt-4o"
    assert d.response is None and d.error is None
    # No id in the log: the file name and line, stable across runs.
    assert read_logs([tmp_path / "proxy.jsonl"]).exchanges[3].id == d.id


@pytest.mark.parametrize(
    ("line", "field", "category"),
    [
        (
            {"request": {"model": "m", "messages": "hi"}, "response": completion("x")},
            "request.messages",
            "wrong type",
        ),
        (
            {"request": {"model": 4, "messages": [{"role": "user", "content": "hi"}]}},
            "request.model",
            "wrong type",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {"choices": []},
            },
            "response.choices",
            "malformed logged response",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {"choices": [{"message": "hi"}]},
            },
            "response.choices[0].message",
            "wrong type",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {
                    "choices": [
                        {
                            "message": {
                                "role": "assistant",
                                "tool_calls": [{"function": {"arguments": "{}"}}],
                            }
                        }
                    ]
                },
            },
            "response.choices[0].message.tool_calls[0].function.name",
            "missing field",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {**completion("x"), "usage": {"prompt_tokens": "many"}},
            },
            "response.usage.prompt_tokens",
            "malformed logged response",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {"text": "hi"},
            },
            "response",
            "malformed logged response",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "timestamp": "yesterday",
            },
            "timestamp",
            "invalid value",
        ),
        (
            {"request": {"messages": [{"role": "user", "content": "hi"}]}, "latency_ms": "fast"},
            "latency_ms",
            "wrong type",
        ),
        (
            {"request": {"messages": [{"role": "user", "content": "hi"}]}, "metadata": ["a"]},
            "metadata",
            "wrong type",
        ),
        ({"request": "not a request"}, "request", "wrong type"),
    ],
)
def test_bad_lines_name_their_field(
    tmp_path: Path, line: dict[str, Any], field: str, category: str
) -> None:
    good = {
        "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "response": completion("hello"),
    }
    result = read_logs([write_jsonl(tmp_path / "log.jsonl", [good, line, good])])
    assert len(result.exchanges) == 2
    (issue,) = result.skipped
    assert (issue.line, issue.field) == (2, field)
    assert issue.reason.startswith(category), issue.reason


def test_missing_model_uses_the_response_default_or_unknown(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "log.jsonl", [{"request": {"messages": [{"role": "user", "content": "hi"}]}}]
    )
    assert read_logs([path]).exchanges[0].model == "unknown"
    assert read_logs([path], default_model="gpt-4o").exchanges[0].model == "gpt-4o"
