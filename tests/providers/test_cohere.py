"""The Cohere provider through the real cohere SDK against a loopback Chat v2 API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("cohere")

from migrate_eval.errors import ConfigError, MissingExtraError, VendorError
from migrate_eval.providers import UnsupportedRequestError, VendorTimeout, get_provider
from migrate_eval.providers.base import MalformedResponseError
from migrate_eval.records import Response
from migrate_eval.suite import CandidateSpec
from tests.providers.fake_vendors import FakeVendors, Reply, cohere_text

KEY = "co-test-secret-123456"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


@pytest.fixture
def server() -> Iterator[FakeVendors]:
    with FakeVendors() as s:
        yield s


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CO_API_KEY", KEY)


def spec(server: FakeVendors, **kw: Any) -> CandidateSpec:
    return CandidateSpec(
        name="co", provider="cohere", model="command-test", base_url=server.url, **kw
    )


def call(server: FakeVendors, request: dict[str, Any], **kw: Any) -> Response:
    async def go() -> Response:
        async with get_provider(spec(server, **kw)) as p:
            return (await p.complete(request)).response

    return asyncio.run(go())


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


@pytest.mark.parametrize(
    ("finish", "expected"), [("MAX_TOKENS", "length"), ("STOP_SEQUENCE", "stop")]
)
def test_finish_reasons(server: FakeVendors, finish: str, expected: str) -> None:
    server.script("cohere", Reply(body=cohere_text("t", finish=finish)))
    assert (
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]}).finish_reason
        == expected
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 4}, "n=4"),
        ({"logprobs": True}, "logprobs=True"),
        ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls=False"),
    ],
)
def test_unsupported(server: FakeVendors, extra: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedRequestError, match=named):
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra})
    assert server.received == []


def test_audio_input_is_unsupported(server: FakeVendors) -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(UnsupportedRequestError, match="audio input"):
        call(server, {"model": "m", "messages": [{"role": "user", "content": [part]}]})


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (404, False), (500, True), (503, True)]
)
def test_http_errors(server: FakeVendors, status: int, retryable: bool) -> None:
    server.script("cohere", Reply(status=status, body={"message": f"bad {status}"}))
    with pytest.raises(VendorError) as info:
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert info.value.status == status and info.value.retryable is retryable
    assert f"bad {status}" in str(info.value) and KEY not in str(info.value)
    assert len(server.received) == 1


def test_rate_limit_retry_after(server: FakeVendors) -> None:
    server.script(
        "cohere", Reply(status=429, body={"message": "too many"}, headers={"Retry-After": "4"})
    )
    with pytest.raises(VendorError) as info:
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert info.value.status == 429 and info.value.retryable and info.value.retry_after == 4.0
    assert len(server.received) == 1


def test_timeout(server: FakeVendors) -> None:
    server.script("cohere", Reply(body=cohere_text("late"), delay=1.0))
    with pytest.raises(VendorTimeout):
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, timeout=0.3)


@pytest.mark.parametrize("body", ["this is not json", {"id": "x", "finish_reason": "COMPLETE"}])
def test_malformed(server: FakeVendors, body: Any) -> None:
    server.script("cohere", Reply(body=body))
    with pytest.raises(MalformedResponseError):
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})


def test_connection_refused() -> None:
    s = CandidateSpec(name="c", provider="cohere", model="m", base_url="http://127.0.0.1:9")

    async def go() -> None:
        async with get_provider(s) as p:
            await p.complete({"model": "m", "messages": [{"role": "user", "content": "x"}]})

    with pytest.raises(VendorError) as info:
        asyncio.run(go())
    assert info.value.retryable


def test_missing_key(server: FakeVendors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CO_API_KEY")
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="CO_API_KEY"):
        call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})


def test_missing_sdk_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cohere" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"migrate-eval\[cohere\]"):
        get_provider(CandidateSpec(name="c", provider="cohere", model="m"))


def test_engine_retries_rate_limits_and_server_errors(server: FakeVendors, tmp_path: Any) -> None:
    from migrate_eval.cache import ResponseCache
    from migrate_eval.records import Exchange, Source
    from migrate_eval.replay import replay

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
