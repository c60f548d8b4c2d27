"""The bedrock provider: boto3 against a loopback server speaking the Converse wire protocol."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.replay.providers import (
    MalformedResponseError,
    UnsupportedRequestError,
    VendorTimeout,
)
from tests.providers.calls import call, call_error

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


class ConverseServer:
    """``POST /model/{modelId}/converse`` on 127.0.0.1 in a background thread.

    Answers with the text of the last user block (or calls the forced / first tool when the
    request has a toolChoice), records every request (path, headers, JSON body) and plays
    scripted faults: ``(status, error_type, body, headers, delay)``.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.faults: list[tuple[int, str, str | None, dict[str, str], float]] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ConverseServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        self.stop_event = asyncio.Event()
        app = web.Application()
        app.router.add_post("/model/{model_id}/converse", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self.stop_event is not None and self.runner is not None
        self.stop_event.set()
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self,
        status: int,
        error_type: str = "",
        *,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        with self.lock:
            self.faults.append((status, error_type, body, headers or {}, delay))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self.lock:
            if len(self.requests) >= 200:
                return web.json_response({"message": "budget"}, status=503)
            self.requests.append(
                {"model": request.match_info["model_id"], "headers": dict(request.headers),
                 "body": body}
            )  # fmt: skip
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            status, error_type, text, headers, delay = fault
            if delay:
                assert self.stop_event is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), delay)
            elif status == 200:
                return web.Response(status=200, text=text or "", content_type="application/json")
            else:
                hdrs = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/", **headers}
                return web.Response(
                    status=status,
                    text=text if text is not None else json.dumps({"message": f"{error_type}!"}),
                    content_type="application/json",
                    headers=hdrs,
                )
        return web.json_response(self.answer(body))

    @staticmethod
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]["content"]
        text = " ".join(b["text"] for b in last if "text" in b)
        config = body.get("toolConfig")
        content: list[dict[str, Any]]
        if config and "toolChoice" in config and "auto" not in config["toolChoice"]:
            choice = config["toolChoice"]
            name = (
                choice["tool"]["name"]
                if "tool" in choice
                else config["tools"][0]["toolSpec"]["name"]
            )
            content = [
                {"toolUse": {"toolUseId": "tooluse_1", "name": name, "input": {"echo": text}}}
            ]
            reason = "tool_use"
        else:
            content = [{"text": f"echo: {text}"}]
            reason = "end_turn"
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": reason,
            "usage": {"inputTokens": 11, "outputTokens": 5, "totalTokens": 16},
            "metrics": {"latencyMs": 3},
        }


@pytest.fixture(scope="module")
def server() -> Iterator[ConverseServer]:
    with ConverseServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _aws_env(server: ConverseServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with server.lock:
        server.requests.clear()
        server.faults.clear()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-test-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def spec_for(server: ConverseServer, **kw: Any) -> CandidateSpec:
    return CandidateSpec(name="br", provider="bedrock", model=MODEL, base_url=server.url, **kw)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_translation_system_multi_turn_tools_results_images_and_inference(
    server: ConverseServer,
) -> None:
    request = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["END"],
        "n": 1,
        "user": "someone",
    }  # fmt: skip
    answer = call(spec_for(server), request)
    (sent,) = server.requests
    assert sent["model"] == MODEL
    assert sent["headers"]["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTEST"
    )
    body = sent["body"]
    assert body["system"] == [{"text": "Be terse."}]
    assert body["messages"] == [
        {"role": "user", "content": [
            {"text": "Weather in Paris?"},
            {"image": {"format": "png", "source": {"bytes": PNG}}},
        ]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
        ]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}],
                            "status": "success"}},
            {"text": "and tomorrow?"},
        ]},
    ]  # fmt: skip
    assert body["inferenceConfig"] == {
        "maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
    }  # fmt: skip
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {
            "name": "get_weather", "description": "Weather for a city",
            "inputSchema": {"json": TOOLS[0]["function"]["parameters"]},  # type: ignore[index]
        }}],
        "toolChoice": {"tool": {"name": "get_weather"}},
    }  # fmt: skip
    (tc,) = answer.response.tool_calls
    assert (tc.name, tc.parsed_arguments, tc.id) == (
        "get_weather",
        {"echo": "and tomorrow?"},
        "tooluse_1",
    )
    assert answer.response.finish_reason == "tool_calls"
    assert answer.response.usage is not None and answer.response.usage.prompt_tokens == 11
    assert answer.raw["stopReason"] == "tool_use"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"auto": {}}), ("required", {"any": {}}), (None, None)],
)
def test_tool_choice_modes(server: ConverseServer, choice: str | None, expected: Any) -> None:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}
    if choice:
        request["tool_choice"] = choice
    call(spec_for(server), request)
    assert server.requests[0]["body"]["toolConfig"].get("toolChoice") == expected


def test_json_schema_output_via_a_forced_tool(server: ConverseServer) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    request = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema},
        },
    }
    answer = call(spec_for(server), request)
    config = server.requests[0]["body"]["toolConfig"]
    assert config["toolChoice"] == {"tool": {"name": "reply"}}
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}
    assert json.loads(answer.response.text or "") == {"echo": "x"}
    assert answer.response.tool_calls == [] and answer.response.finish_reason == "stop"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "n=2"),
        ({"logprobs": True}, "logprobs=True"),
        ({"seed": 7}, "seed=7"),
        ({"tools": TOOLS, "tool_choice": "none"}, "tool_choice=none"),
    ],
)
def test_unsupported_features_are_named_and_nothing_is_sent(
    server: ConverseServer, extra: dict[str, Any], named: str
) -> None:
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": "x"}], **extra})
    assert isinstance(err, UnsupportedRequestError)
    assert named in str(err)
    assert server.requests == []


def test_remote_image_url_is_unsupported(server: ConverseServer) -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": content}]})
    assert isinstance(err, UnsupportedRequestError) and "remote URL" in str(err)


def test_throttling_is_a_retryable_429_validation_a_400(server: ConverseServer) -> None:
    server.fail(429, "ThrottlingException", headers={"Retry-After": "2"})
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": "x"}]})
    assert (err.status, err.retryable, err.retry_after) == (429, True, 2.0)
    assert "ThrottlingException" in str(err)
    server.fail(400, "ValidationException")
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": "x"}]})
    assert (err.status, err.retryable) == (400, False)
    server.fail(503, "ServiceUnavailableException")
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": "x"}]})
    assert (err.status, err.retryable) == (503, True)
    server.fail(403, "UnrecognizedClientException")
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": "x"}]})
    assert (err.status, err.retryable) == (403, False)
    assert len(server.requests) == 4  # botocore's own retries are off


def test_timeout_and_malformed_body(server: ConverseServer) -> None:
    server.fail(200, delay=3.0)  # a client that waited for this answer would get it
    err = call_error(
        spec_for(server, timeout=0.3), {"messages": [{"role": "user", "content": "x"}]}
    )
    assert isinstance(err, VendorTimeout)
    server.fail(200, body='{"output": {}}')
    err = call_error(spec_for(server), {"messages": [{"role": "user", "content": "x"}]})
    assert isinstance(err, MalformedResponseError)


def test_missing_region_and_credentials_are_config_errors(
    server: ConverseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ConfigError, match="region"):
        call(spec_for(server), {"messages": [{"role": "user", "content": "x"}]})
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="credentials"):
        call(
            spec_for(server, params={"region": "eu-west-1"}),
            {"messages": [{"role": "user", "content": "x"}]},
        )
    assert server.requests == []


def test_replay_end_to_end(server: ConverseServer, tmp_path: Path) -> None:
    exchanges = [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="chat-jsonl"),
            request={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": f"q{i}"}],
                **({"seed": 1} if i == 3 else {}),
            },
        )
        for i in range(4)
    ]
    server.fail(429, "ThrottlingException")
    spec = spec_for(server, concurrency=2, params={"region": "us-west-2", "temperature": 0})
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        results = replay(exchanges, [spec], cache=cache, backoff_base=0.01)
    texts = [r.response.text if r.response else r.error_kind for r in results]
    assert texts == ["echo: q0", "echo: q1", "echo: q2", "echo: q3"]
    assert [r.dropped for r in results] == [None, None, None, ["seed"]]
    assert len(server.requests) == 5  # 4 answers + 1 throttled retry; seed never sent
    assert all("seed" not in json.dumps(r["body"]) for r in server.requests)
    assert all("region" not in r["body"] for r in server.requests)
    assert "us-west-2" in server.requests[0]["headers"]["Authorization"]


def test_values_botocore_rejects_become_unsupported_rows(server: ConverseServer) -> None:
    err = call_error(
        spec_for(server), {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
    )
    assert isinstance(err, UnsupportedRequestError) and "temperature" in str(err)
    assert server.requests == []
