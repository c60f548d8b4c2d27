"""The azure provider against a loopback server that serves Azure's URL shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from migrate_eval.core.errors import ConfigError, UserError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.replay.engine import vendor_error_kind as error_kind
from migrate_eval.replay.providers import VendorTimeout, get_provider
from migrate_eval.replay.providers.azure import DEFAULT_API_VERSION, ContentFilterError
from tests.providers.calls import call, call_error
from tests.servers import LoopbackServer, _Core

KEY = "azure-test-key-123456"


class _AzureCore(_Core):
    """The loopback server's core on ``/openai/deployments/{deployment}/chat/completions``."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.azure)
        return app

    async def azure(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            self.seen.append(
                {
                    "deployment": request.match_info["deployment"],
                    "api_version": request.query.get("api-version"),
                    "api_key": request.headers.get("api-key"),
                    "authorization": request.headers.get("Authorization"),
                }
            )
        return await self.handle(request)


class AzureServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(max_requests=500, lifetime=120.0)
        self._core = _AzureCore(delay=0.0, max_requests=500, lifetime=120.0, record=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[dict[str, Any]]:
        core = self._core
        assert isinstance(core, _AzureCore)
        with core.lock:
            return list(core.seen)

    def reset(self) -> None:
        super().reset()
        core = self._core
        assert isinstance(core, _AzureCore)
        core.seen.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[AzureServer]:
    with AzureServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: AzureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    server.delay = 0.0
    for env in (
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_AD_TOKEN",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_VERSION",
        "OPENAI_API_VERSION",
    ):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)


def spec_for(server: AzureServer, **kw: Any) -> CandidateSpec:
    kw.setdefault("base_url", server.endpoint)
    return CandidateSpec(name="az", provider="azure", model="gpt-4o-prod", **kw)


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


def test_url_deployment_api_version_and_api_key_header(server: AzureServer) -> None:
    answer = call(spec_for(server), chat("hi there"))
    assert answer.response.text == "echo: hi there"
    (seen,) = server.seen
    assert seen == {
        "deployment": "gpt-4o-prod",
        "api_version": DEFAULT_API_VERSION,
        "api_key": KEY,
        "authorization": None,  # the key never travels as a bearer token
    }


def test_deployment_and_api_version_params_are_not_sent_in_the_body(server: AzureServer) -> None:
    spec = spec_for(server, params={"deployment": "other-dep", "api_version": "2025-01-01-preview"})
    from migrate_eval.replay.engine import build_request

    request = build_request(chat("x", tools=None), spec)
    call(spec, request)
    (seen,) = server.seen
    assert seen["deployment"] == "other-dep"
    assert seen["api_version"] == "2025-01-01-preview"
    (body,) = server.bodies
    assert "deployment" not in body and "api_version" not in body
    assert body["messages"] == [{"role": "user", "content": "x"}]


def test_api_version_from_the_base_url_query(server: AzureServer) -> None:
    call(spec_for(server, base_url=server.endpoint + "/?api-version=2024-06-01"), chat())
    assert server.seen[0]["api_version"] == "2024-06-01"


def test_tools_pass_through_unchanged(server: AzureServer) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    answer = call(spec_for(server), chat("call it", tools=tools, tool_choice="required"))
    assert answer.response.tool_calls[0].name == "f"
    assert server.bodies[0]["tools"] == tools


def test_entra_token_from_env_is_a_bearer(
    server: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "entra-token-xyz")
    call(spec_for(server), chat())
    assert server.seen[0]["authorization"] == "Bearer entra-token-xyz"
    assert server.seen[0]["api_key"] is None


def test_no_credential_at_all_is_a_user_error(
    server: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    provider = get_provider(spec_for(server))  # building it needs no credential
    assert provider.identity()["deployment"] == "gpt-4o-prod"
    with pytest.raises(UserError):  # azure-identity missing (MissingExtraError) or no login
        asyncio.run(provider.complete(chat()))
    assert server.total == 0


def test_missing_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        get_provider(CandidateSpec(name="az", provider="azure", model="m"))


def test_endpoint_from_env(server: AzureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.endpoint)
    call(CandidateSpec(name="az", provider="azure", model="dep1"), chat())
    assert server.seen[0]["deployment"] == "dep1"


def test_content_filter_400_is_its_own_error_kind(server: AzureServer) -> None:
    body = {
        "error": {
            "message": "The response was filtered due to the prompt triggering a content policy",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        }
    }
    server.fail(400, body=json.dumps(body))
    err = call_error(spec_for(server), chat())
    assert isinstance(err, ContentFilterError)
    assert err.status == 400 and not err.retryable
    assert "content_filter" in str(err)
    assert KEY not in str(err)
    # regression: the engine labelled these rows http_400, hiding the content filter
    assert error_kind(err) == "content_filter"


def test_errors_429_retry_after_5xx_401_and_timeout(server: AzureServer) -> None:
    server.fail(429, retry_after_ms="1500")
    err = call_error(spec_for(server), chat())
    assert err.status == 429 and err.retryable and err.retry_after == 1.5
    server.fail(503)
    err = call_error(spec_for(server), chat())
    assert err.retryable and error_kind(err) == "http_503"
    server.fail(401, body='{"error": {"code": "401", "message": "Access denied"}}')
    err = call_error(spec_for(server), chat())
    assert err.status == 401 and not err.retryable and "Access denied" in str(err)
    server.slow(2.0)
    err = call_error(spec_for(server, timeout=0.2), chat())
    assert isinstance(err, VendorTimeout)


def test_finish_reason_content_filter_is_an_answer(server: AzureServer) -> None:
    filtered = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": None},
             "finish_reason": "content_filter"}
        ],
    }  # fmt: skip
    server.malformed(json.dumps(filtered))
    answer = call(spec_for(server), chat())
    assert answer.response.finish_reason == "content_filter"


def test_replay_end_to_end(server: AzureServer, tmp_path: Path) -> None:
    exchanges = [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="chat-jsonl"),
            request=chat(f"question {i}"),
        )
        for i in range(5)
    ]
    server.fail(429, retry_after="0")
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        results = replay(exchanges, [spec_for(server)], cache=cache, backoff_base=0.01)
    assert [r.response.text if r.response else None for r in results] == [
        f"echo: question {i}" for i in range(5)
    ]
    assert server.total == 6  # one 429 retried
    assert all(s["deployment"] == "gpt-4o-prod" for s in server.seen)


def test_a_named_key_variable_must_be_set(
    server: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "entra-token-xyz")
    spec = spec_for(server, api_key_env="MY_AZURE_KEY")
    with pytest.raises(ConfigError, match="MY_AZURE_KEY"):
        call(spec, chat())
    monkeypatch.setenv("MY_AZURE_KEY", "k2")
    call(spec, chat())
    assert server.seen[0]["api_key"] == "k2"


def test_entra_id_via_default_azure_credential_is_cached_and_refreshed(
    server: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The azure-identity contract: ``get_token(scope)`` -> ``.token`` / ``.expires_on``."""
    import sys
    import time
    import types
    from collections import namedtuple

    access_token = namedtuple("access_token", ["token", "expires_on"])
    scopes: list[str] = []

    class FakeCredential:
        def get_token(self, scope: str) -> Any:
            scopes.append(scope)
            # the first token is about to expire (inside the 5-minute margin): refreshed
            lifetime = 60 if len(scopes) == 1 else 3600
            return access_token(f"entra-{len(scopes)}", int(time.time()) + lifetime)

    module = types.ModuleType("azure.identity")
    module.DefaultAzureCredential = FakeCredential  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.identity", module)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")

    async def go() -> None:
        async with get_provider(spec_for(server)) as provider:
            for _ in range(3):
                await provider.complete(chat())

    asyncio.run(go())
    assert scopes == ["https://cognitiveservices.azure.com/.default"] * 2
    assert [s["authorization"] for s in server.seen] == [
        "Bearer entra-1",
        "Bearer entra-2",
        "Bearer entra-2",
    ]
