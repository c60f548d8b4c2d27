"""The openai-sdk provider: the official SDK on its aiohttp transport, against the loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.replay.providers import (
    MalformedResponseError,
    VendorConnectionError,
    VendorTimeout,
)
from tests.providers.calls import call, call_error
from tests.servers import LoopbackServer

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(max_requests=200, lifetime=120.0) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    monkeypatch.setenv("SDK_TEST_KEY", "sk-test-sdk-key-1234567")


def spec_for(server: LoopbackServer, **kw: Any) -> CandidateSpec:
    kw.setdefault("api_key_env", "SDK_TEST_KEY")
    return CandidateSpec(
        name="sdk", provider="openai-sdk", model="m1", base_url=server.base_url, **kw
    )


def test_request_reaches_the_server_unchanged_with_the_key(server: LoopbackServer) -> None:
    request = {
        "model": "m1",
        "messages": [{"role": "user", "content": "hello"}],
        "tools": TOOLS,
        "tool_choice": "required",
        "temperature": 0.3,
        "seed": 5,
        "some_vendor_field": {"x": 1},  # not named by the SDK: sent through extra_body
    }
    answer = call(spec_for(server), request)
    assert server.bodies == [request]
    assert server.auth_headers == ["Bearer sk-test-sdk-key-1234567"]
    assert answer.response.tool_calls[0].name == "f"
    assert answer.raw["object"] == "chat.completion" and answer.raw_json


def test_errors_are_mapped(server: LoopbackServer) -> None:
    chat = {"model": "m1", "messages": [{"role": "user", "content": "x"}]}
    server.fail(429, retry_after="3")
    err = call_error(spec_for(server), chat)
    assert (err.status, err.retryable, err.retry_after) == (429, True, 3.0)
    server.fail(500)
    assert call_error(spec_for(server), chat).retryable
    server.fail(401, body='{"error": {"message": "bad key sk-test-sdk-key-1234567"}}')
    err = call_error(spec_for(server), chat)
    assert err.status == 401 and not err.retryable
    assert "sk-test-sdk-key-1234567" not in str(err)
    server.slow(2.0)
    assert isinstance(call_error(spec_for(server, timeout=0.3), chat), VendorTimeout)
    server.malformed()
    assert isinstance(call_error(spec_for(server), chat), MalformedResponseError)
    assert server.total == 5  # the SDK's own retries are off


def test_missing_key_and_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    chat = {"model": "m1", "messages": [{"role": "user", "content": "x"}]}
    monkeypatch.delenv("SDK_TEST_KEY")
    with pytest.raises(ConfigError, match="SDK_TEST_KEY"):
        call(
            CandidateSpec(name="s", provider="openai-sdk", model="m", api_key_env="SDK_TEST_KEY"),
            chat,
        )
    spec = CandidateSpec(
        name="s", provider="openai-sdk", model="m", base_url="http://127.0.0.1:9/v1"
    )
    assert isinstance(call_error(spec, chat), VendorConnectionError)


def test_replay_end_to_end(server: LoopbackServer, tmp_path: Path) -> None:
    exchanges = [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="chat-jsonl"),
            request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i}"}]},
        )
        for i in range(4)
    ]
    server.fail(503)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        results = replay(exchanges, [spec_for(server)], cache=cache, backoff_base=0.01)
    assert [r.response.text for r in results if r.response] == [f"echo: q{i}" for i in range(4)]
    assert server.total == 5
