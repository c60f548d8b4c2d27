"""The Cohere provider through the real cohere SDK against a loopback Chat v2 API."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("cohere")

from tests.providers.fake_vendors import COHERE, WEATHER, FakeVendors, Reply, cohere_text

KEY = COHERE.key
spec = COHERE.spec
call = COHERE.call
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}

_key = COHERE.key_fixture()


def test_text_system_prompt_and_sampling(server: FakeVendors) -> None:
    server.script("cohere", Reply(body=cohere_text("Bonjour")))
    resp = call(
        server,
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "developer", "content": "Translate to French."},
                {"role": "user", "content": "Hello"},
            ],
            "temperature": 0.3,
            "top_p": 1,
            "seed": 9,
            "max_completion_tokens": 40,
            "stop": ["END"],
            "frequency_penalty": 0.2,
        },
    )
    got = server.last("cohere")
    assert got.path == "/v2/chat"
    assert got.headers["authorization"] == f"Bearer {KEY}"
    body = got.body
    assert body["model"] == "command-test" and body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": "Translate to French."},
        {"role": "user", "content": "Hello"},
    ]
    assert body["temperature"] == 0.3 and body["p"] == 0.99 and body["seed"] == 9
    assert body["max_tokens"] == 40 and body["stop_sequences"] == ["END"]
    assert body["frequency_penalty"] == 0.2
    assert resp.text == "Bonjour" and resp.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 12
    assert resp.usage.completion_tokens == 3 and resp.usage.total_tokens == 15


def test_multi_turn_tool_results_and_parallel_calls(server: FakeVendors) -> None:
    server.script(
        "cohere",
        Reply(
            body={
                "id": "c2",
                "finish_reason": "TOOL_CALL",
                "message": {
                    "role": "assistant",
                    "tool_plan": "I will look both up.",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "t2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                },
                "usage": {"tokens": {"input_tokens": 30, "output_tokens": 9}, "cached_tokens": 16},
            }
        ),
    )
    resp = call(
        server,
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
                {"role": "assistant", "content": "Rain."},
                {"role": "user", "content": "Paris and Rome?"},
            ],
            "tools": [WEATHER],
            "tool_choice": "required",
        },
    )
    body = server.last("cohere").body
    assert body["messages"][1] == {
        "role": "assistant",
        "tool_plan": "Let me check.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_a", "content": "rain"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["function"]["parameters"],
            },
        }
    ]
    assert body["tool_choice"] == "REQUIRED"
    assert resp.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.parsed_arguments) for c in resp.tool_calls] == [
        ("t1", "get_weather", {"city": "Paris"}),
        ("t2", "get_weather", {"city": "Rome"}),
    ]
    assert resp.usage is not None and resp.usage.cached_tokens == 16


def test_named_tool_choice_is_emulated(server: FakeVendors) -> None:
    call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER, CLOCK],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        },
    )
    body = server.last("cohere").body
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    assert body["tool_choice"] == "REQUIRED"


def test_tool_choice_none_and_auto(server: FakeVendors) -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    call(server, {**base, "tool_choice": "none"})
    assert server.last("cohere").body["tool_choice"] == "NONE"
    call(server, {**base, "tool_choice": "auto"})
    assert "tool_choice" not in server.last("cohere").body


def test_structured_output(server: FakeVendors) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    server.script("cohere", Reply(body=cohere_text('{"label": "neutral"}')))
    resp = call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "meh"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": schema},
            },
        },
    )
    assert server.last("cohere").body["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }
    assert json.loads(resp.text or "") == {"label": "neutral"}
    call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        },
    )
    assert server.last("cohere").body["response_format"] == {"type": "json_object"}


def test_images(server: FakeVendors) -> None:
    call(
        server,
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ],
        },
    )
    content = server.last("cohere").body["messages"][0]["content"]
    assert content[1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert content[2] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}


def test_engine_retries_rate_limits_and_server_errors(server: FakeVendors, tmp_path: Any) -> None:
    from migrate_eval.core.records import Exchange, Source
    from migrate_eval.replay.cache import ResponseCache
    from migrate_eval.replay.engine import replay

    server.script(
        "cohere",
        Reply(status=429, body={"message": "slow down"}, headers={"Retry-After": "0"}),
        Reply(status=503, body={"message": "busy"}),
        Reply(body=cohere_text("finally")),
    )
    ex = Exchange(
        id="e1",
        source=Source(file="log.jsonl", line=1, format="chat-jsonl"),
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]},
    )
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        (row,) = replay([ex], [spec(server)], cache=cache, backoff_base=0.01)
    assert row.ok and row.response is not None and row.response.text == "finally"
    assert row.attempts == 3
    assert len(server.received) == 3
