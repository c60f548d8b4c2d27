"""The openai-compatible provider against a loopback server: wire format, keys, error mapping."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers import (
    OPENAI_BASE_URL,
    MalformedResponseError,
    OpenAICompatibleProvider,
    OpenAIProvider,
    ProviderResponse,
    VendorConnectionError,
    VendorTimeout,
    get_provider,
    parse_retry_after,
)
from tests.providers.calls import call, call_error
from tests.servers import Fault, LoopbackServer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: LoopbackServer) -> None:
    server.reset()
    server.delay = 0.0


def spec_for(server: LoopbackServer, **kw: Any) -> CandidateSpec:
    return CandidateSpec(name="cand", model="local-model", base_url=server.base_url, **kw)


def chat(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "local-model", "messages": [{"role": "user", "content": text}], **extra}


def test_success_normalises_and_keeps_raw_body(server: LoopbackServer) -> None:
    answer = call(spec_for(server), chat("what is up"))
    assert answer.response.text == "echo: what is up"
    assert answer.response.finish_reason == "stop"
    assert answer.response.model == "local-model"
    assert answer.response.usage is not None and answer.response.usage.completion_tokens == 4
    assert answer.raw["object"] == "chat.completion"
    assert answer.raw["system_fingerprint"] == "fp_loopback"
    assert answer.latency_ms > 0
    assert answer.response.latency_ms == answer.latency_ms
    assert answer.status == 200


def test_tools_and_response_format_reach_the_server_unchanged(server: LoopbackServer) -> None:
    tool_request = chat(
        "weather in Paris",
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        temperature=0.2,
        seed=7,
        stop=["\n\n"],
    )
    schema_request = chat(
        "extract",
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "strict": True,
                "schema": {"type": "object", "properties": {"echo": {"type": "string"}}},
            },
        },
        max_tokens=50,
    )
    spec = spec_for(server)
    tool_answer = call(spec, tool_request)
    schema_answer = call(spec, schema_request)
    assert server.bodies == [tool_request, schema_request]
    (tc,) = tool_answer.response.tool_calls
    assert tc.name == "get_weather"
    assert tc.parsed_arguments == {"text": "weather in Paris"}
    assert tool_answer.response.finish_reason == "tool_calls"
    assert schema_answer.response.text == '{"echo": "extract"}'


def test_api_key_is_sent_as_bearer_and_never_in_identity(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_VENDOR_KEY", "sk-test-secret-123456789")
    spec = spec_for(server, api_key_env="MY_VENDOR_KEY")
    call(spec, chat())
    assert server.auth_headers == ["Bearer sk-test-secret-123456789"]
    identity = get_provider(spec).identity()
    assert identity == {
        "provider": "openai-compatible",
        "base_url": server.base_url,
        "model": "local-model",
    }
    assert "sk-test" not in repr(identity)


def test_custom_base_url_without_key_sends_no_authorization(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak-to-local-servers")
    call(spec_for(server), chat())
    assert server.auth_headers == [None]


def test_default_base_url_is_openai_and_needs_openai_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = CandidateSpec(name="base", model="gpt-4o-mini")
    provider = get_provider(spec)
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.identity()["base_url"] == OPENAI_BASE_URL
    # The missing key is reported on first use, before any connection is made.
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        asyncio.run(provider.complete(chat()))
    asyncio.run(provider.aclose())


def test_openai_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    provider = get_provider(CandidateSpec(name="oa", provider="openai", model="gpt-4o"))
    assert isinstance(provider, OpenAIProvider)
    assert provider.identity() == {
        "provider": "openai",
        "base_url": OPENAI_BASE_URL,
        "model": "gpt-4o",
    }


def test_named_key_variable_missing_is_a_config_error(server: LoopbackServer) -> None:
    spec = spec_for(server, api_key_env="MIGRATE_EVAL_TEST_UNSET_VAR")
    with pytest.raises(ConfigError, match="MIGRATE_EVAL_TEST_UNSET_VAR"):
        call(spec, chat())
    assert server.total == 0


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        get_provider(CandidateSpec(name="bad", model="m", base_url="ftp://example.org/v1"))


def test_trailing_slash_in_base_url_is_normalised(server: LoopbackServer) -> None:
    spec = CandidateSpec(name="c", model="m", base_url=server.base_url + "/")
    assert get_provider(spec).identity()["base_url"] == server.base_url
    assert call(spec, chat()).response.text == "echo: hello there"


def test_429_with_retry_after_seconds(server: LoopbackServer) -> None:
    server.fail(429, retry_after="7")
    err = call_error(spec_for(server), chat())
    assert (err.status, err.retryable, err.retry_after) == (429, True, 7.0)
    assert "scripted failure 429" in str(err)


def test_429_with_retry_after_ms_and_http_date(server: LoopbackServer) -> None:
    server.fail(429, retry_after="30", retry_after_ms="1500")
    err = call_error(spec_for(server), chat())
    assert err.retry_after == 1.5  # retry-after-ms wins: it is the more precise
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    server.fail(429, retry_after=when)
    err = call_error(spec_for(server), chat())
    assert err.retry_after is not None and 17 <= err.retry_after <= 20


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409])
def test_server_errors_are_retryable(server: LoopbackServer, status: int) -> None:
    server.fail(status)
    err = call_error(spec_for(server), chat())
    assert err.status == status and err.retryable


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retryable(server: LoopbackServer, status: int) -> None:
    server.fail(status, body='{"error": {"message": "model not found", "type": "x"}}')
    err = call_error(spec_for(server), chat())
    assert err.status == status and not err.retryable
    assert str(err) == f"HTTP {status}: model not found"


def test_redirects_are_not_followed(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_VENDOR_KEY", "sk-test-secret-123456789")
    server.add_fault(Fault(status=307, headers={"Location": server.base_url + "/chat/completions"}))
    err = call_error(spec_for(server, api_key_env="MY_VENDOR_KEY"), chat())
    assert err.status == 307 and not err.retryable
    assert server.total == 1  # the key was not sent on to the Location


def test_key_is_redacted_from_error_messages(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_VENDOR_KEY", "key-abcdef-0123456789")
    server.fail(401, body='{"error": {"message": "Incorrect API key: key-abcdef-0123456789"}}')
    err = call_error(spec_for(server, api_key_env="MY_VENDOR_KEY"), chat())
    assert "key-abcdef" not in str(err)
    assert "[redacted]" in str(err)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"object": "chat.completion", "choices": []}', "no choices"),
        ('["a", "list"]', "JSON list"),
        ('{"error": {"message": "upstream exploded"}}', "upstream exploded"),
        ('{"choices": [{"message": {"content": 42}}]}', "unexpected type"),
    ],
)
def test_malformed_bodies_are_non_retryable_errors(
    server: LoopbackServer, body: str, reason: str
) -> None:
    server.malformed(body)
    err = call_error(spec_for(server), chat())
    assert isinstance(err, MalformedResponseError)
    assert not err.retryable
    assert reason in str(err)


@pytest.mark.parametrize("body", ["this is not json", '{"id": "chatcmpl-1", "choices": [{"mes'])
def test_bodies_that_are_not_json_are_retryable(server: LoopbackServer, body: str) -> None:
    server.malformed(body)  # truncated or garbled on the way, with status 200
    err = call_error(spec_for(server), chat())
    assert isinstance(err, MalformedResponseError)
    assert err.retryable and "not JSON" in str(err)


def test_timeout(server: LoopbackServer) -> None:
    server.slow(5.0)  # a client that waited for this answer would get it
    err = call_error(spec_for(server, timeout=0.3), chat())
    assert isinstance(err, VendorTimeout) and err.retryable


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = CandidateSpec(name="dead", model="m", base_url=f"http://127.0.0.1:{port}/v1")
    err = call_error(spec, chat())
    assert isinstance(err, VendorConnectionError) and err.retryable


def test_one_session_serves_many_concurrent_calls() -> None:
    async def go(server: LoopbackServer) -> list[ProviderResponse]:
        async with get_provider(spec_for(server, concurrency=4)) as provider:
            return await asyncio.gather(*(provider.complete(chat(f"q{i}")) for i in range(12)))

    with LoopbackServer(delay=0.05) as fresh:  # no slow answers left over from other tests
        answers = asyncio.run(go(fresh))
        # the connector is sized to the concurrency, with room for one hedge per request
        assert 2 <= fresh.max_in_flight <= 2 * 4 + 2
    assert [a.response.text for a in answers] == [f"echo: q{i}" for i in range(12)]


def test_aclose_is_idempotent(server: LoopbackServer) -> None:
    async def go() -> None:
        provider = get_provider(spec_for(server))
        await provider.complete(chat())
        await provider.aclose()
        await provider.aclose()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "3600"}, 60.0),  # capped
        ({"retry-after": "-4"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "2"}, 2.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date_in_the_future() -> None:
    now = time.time()
    header = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=now) == pytest.approx(10, abs=1)


def test_the_prepared_canonical_json_is_sent_as_the_body(server: LoopbackServer) -> None:
    from migrate_eval.core.json import canonical_json

    request = chat("prepared ünïcode", tools=TOOLS, temperature=0.2)

    async def go() -> ProviderResponse:
        async with get_provider(spec_for(server)) as provider:
            return await provider.complete_prepared(request, canonical_json(request))

    answer = asyncio.run(go())
    assert server.bodies == [request]
    assert answer.response.text == "echo: prepared ünïcode"


def test_a_subclass_that_changes_complete_gets_prepared_requests_too(
    server: LoopbackServer,
) -> None:
    from migrate_eval.core.json import canonical_json

    class Renaming(OpenAICompatibleProvider):
        async def complete(self, request: dict[str, Any]) -> ProviderResponse:
            return await super().complete({**request, "model": "renamed"})

    request = chat("hi")

    async def go() -> ProviderResponse:
        async with Renaming(spec_for(server)) as provider:
            return await provider.complete_prepared(request, canonical_json(request))

    asyncio.run(go())
    assert server.bodies == [{**request, "model": "renamed"}]
