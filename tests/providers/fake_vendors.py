"""Loopback servers speaking the wire protocols of Anthropic, Gemini and Cohere.

One aiohttp application in a background thread (127.0.0.1, port 0) serves:

* ``POST /v1/messages`` - Anthropic Messages API;
* ``POST /v1beta/models/{model}:generateContent`` - Gemini API;
* ``POST /v2/chat`` - Cohere Chat v2.

Every request is recorded (:attr:`FakeVendors.received`: path, headers, JSON body). Replies are
scripted per vendor with :meth:`FakeVendors.script` (status, JSON or raw body, headers, delay);
without a script each vendor answers a plain text echo of the last user message in its own
response shape. Bounded: at most ``max_requests`` requests, and a thread that stops with the
context manager.

:class:`Vendor` (:data:`ANTHROPIC`, :data:`GEMINI`, :data:`COHERE`) is how a test reaches one
of them through its provider: candidate, API key, answer and error bodies.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import pytest
from aiohttp import web

from migrate_eval.core.records import Response
from migrate_eval.core.suite import CandidateSpec
from tests.providers.calls import call
from tests.servers import Managed

HOST = "127.0.0.1"

#: A function tool as a Chat Completions request declares it.
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


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    vendor: str
    path: str
    headers: dict[str, str]
    body: Any


def _last_user_text_anthropic(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return "".join(b.get("text", "") for b in c if b.get("type") == "text")
    return ""


def anthropic_text(text: str, **extra: Any) -> dict[str, Any]:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }
    body.update(extra)
    return body


def gemini_text(text: str, finish: str = "STOP") -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 13},
        "modelVersion": "gemini-test",
    }


def cohere_text(text: str, finish: str = "COMPLETE") -> dict[str, Any]:
    return {
        "id": "c1",
        "finish_reason": finish,
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
        "usage": {
            "billed_units": {"input_tokens": 10, "output_tokens": 3},
            "tokens": {"input_tokens": 12, "output_tokens": 3},
        },
    }


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = "rate_limit_error" if status == 429 else "x"
    return {"type": "error", "error": {"type": kind, "message": message}}


def gemini_error(status: int, message: str) -> dict[str, Any]:
    state = "RESOURCE_EXHAUSTED" if status == 429 else "X"
    return {"error": {"code": status, "message": message, "status": state}}


def cohere_error(status: int, message: str) -> dict[str, Any]:
    return {"message": message}


def _halves(text: str) -> list[str]:
    cut = max(1, len(text) // 2)
    return [p for p in (text[:cut], text[cut:]) if p]


def anthropic_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A Messages API body as the server-sent events of a streamed answer."""
    usage = dict(message.get("usage") or {})
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for i, block in enumerate(message.get("content") or []):
        if block.get("type") == "text":
            events.append(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            for piece in _halves(block.get("text", "")):
                delta = {"type": "text_delta", "text": piece}
                events.append({"type": "content_block_delta", "index": i, "delta": delta})
        else:
            events.append(
                {"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}}
            )
            for piece in _halves(json.dumps(block.get("input") or {})):
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append({"type": "content_block_delta", "index": i, "delta": delta})
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason"),
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        }
    )
    events.append({"type": "message_stop"})
    return events


def gemini_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``generateContent`` body as the chunks of ``streamGenerateContent?alt=sse``."""
    cand = (body.get("candidates") or [{}])[0]
    chunks: list[dict[str, Any]] = []
    for part in (cand.get("content") or {}).get("parts") or []:
        pieces = _halves(part["text"]) if "text" in part else [None]
        for piece in pieces:
            p = {"text": piece} if piece is not None else part
            chunks.append({"candidates": [{"content": {"role": "model", "parts": [p]}}]})
    last = {k: v for k, v in body.items() if k != "candidates"}
    last["candidates"] = [
        {
            "content": {"role": "model", "parts": []},
            "finishReason": cand.get("finishReason", "STOP"),
        }
    ]
    chunks.append(last)
    return chunks


class FakeVendors(Managed):
    """The three fake vendors on one loopback port; use as a context manager."""

    def __init__(self, max_requests: int = 200) -> None:
        self.max_requests = max_requests
        #: Pause between streamed events (seconds), so time to first token is measurable.
        self.stream_gap = 0.02
        self.received: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = {
            "anthropic": deque(),
            "gemini": deque(),
            "cohere": deque(),
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def script(self, vendor: str, *replies: Reply) -> None:
        self._scripts[vendor].extend(replies)

    def last(self, vendor: str) -> Received:
        return [r for r in self.received if r.vendor == vendor][-1]

    # -- server ------------------------------------------------------------------------

    async def _handle(self, request: web.Request, vendor: str) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.received.append(
            Received(vendor, request.path, {k.lower(): v for k, v in request.headers.items()}, body)
        )
        if len(self.received) > self.max_requests:
            return web.json_response({"error": {"message": "request budget spent"}}, status=503)
        script = self._scripts[vendor]
        reply = script.popleft() if script else Reply(body=self._default(vendor, body))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        streamed = (vendor == "anthropic" and isinstance(body, dict) and body.get("stream")) or (
            vendor == "gemini" and ":streamGenerateContent" in request.path
        )
        if streamed and reply.status == 200 and isinstance(reply.body, dict):
            events = (
                anthropic_events(reply.body) if vendor == "anthropic" else gemini_chunks(reply.body)
            )
            return await self._sse(request, events, vendor)
        if isinstance(reply.body, dict | list):
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        data = reply.body.encode() if isinstance(reply.body, str) else (reply.body or b"")
        return web.Response(
            body=data,
            status=reply.status,
            headers={"Content-Type": "application/json", **reply.headers},
        )

    async def _sse(
        self, request: web.Request, events: list[dict[str, Any]], vendor: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in events:
            head = f"event: {event['type']}\n" if vendor == "anthropic" else ""
            await resp.write(f"{head}data: {json.dumps(event)}\n\n".encode())
            await asyncio.sleep(self.stream_gap)
        await resp.write_eof()
        return resp

    def _default(self, vendor: str, body: Any) -> dict[str, Any]:
        if vendor == "anthropic":
            return anthropic_text("echo: " + _last_user_text_anthropic(body))
        if vendor == "gemini":
            text = ""
            for c in reversed(body.get("contents") or []):
                if c.get("role") == "user":
                    text = "".join(p.get("text", "") for p in c.get("parts", []))
                    break
            return gemini_text("echo: " + text)
        text = ""
        for m in reversed(body.get("messages") or []):
            if m.get("role") == "user":
                c = m.get("content")
                text = c if isinstance(c, str) else "".join(p.get("text", "") for p in c)
                break
        return cohere_text("echo: " + text)

    async def _start(self) -> None:
        app = web.Application()

        async def anthropic(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, "anthropic")

        async def gemini(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, "gemini")

        async def cohere(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, "cohere")

        app.router.add_post("/v1/messages", anthropic)
        app.router.add_post("/v1beta/models/{tail}", gemini)
        app.router.add_post("/v2/chat", cohere)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._start())
        self._ready.set()
        loop.run_forever()
        assert self._runner is not None
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake vendor server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


@dataclass(frozen=True)
class Vendor:
    """One fake vendor as a test reaches it through its provider."""

    provider: str
    candidate: str
    model: str
    key: str
    #: The variables the provider reads the key from, in order; tests set the first.
    key_envs: tuple[str, ...]
    #: The SDK module whose absence gives the install hint.
    sdk: str
    #: A plain text answer in the vendor's shape.
    text: Callable[[str], dict[str, Any]]
    #: An error body in the vendor's shape, for a status and a message.
    error: Callable[[int, str], dict[str, Any]]

    def __str__(self) -> str:
        return self.provider

    def use_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The test key in the first key variable, the others unset."""
        for env in self.key_envs[1:]:
            monkeypatch.delenv(env, raising=False)
        monkeypatch.setenv(self.key_envs[0], self.key)

    def key_fixture(self) -> Any:
        """An autouse fixture (assign it in a test module) that gives every test of the
        module the vendor's test key."""

        @pytest.fixture(autouse=True)
        def _key(monkeypatch: pytest.MonkeyPatch) -> None:
            self.use_key(monkeypatch)

        return _key

    def spec(self, server: FakeVendors, **kw: Any) -> CandidateSpec:
        return CandidateSpec(
            name=self.candidate, provider=self.provider, model=self.model, base_url=server.url, **kw
        )

    def call(self, server: FakeVendors, request: dict[str, Any], **kw: Any) -> Response:
        """The normalised answer of the candidate (``kw``: more of its spec) to ``request``."""
        return call(self.spec(server, **kw), request).response


ANTHROPIC = Vendor(
    provider="anthropic",
    candidate="claude",
    model="claude-test",
    key="sk-ant-test-secret-123456",
    key_envs=("ANTHROPIC_API_KEY",),
    sdk="anthropic",
    text=anthropic_text,
    error=anthropic_error,
)
GEMINI = Vendor(
    provider="gemini",
    candidate="gem",
    model="gemini-test",
    key="gemini-test-secret-123456",
    key_envs=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    sdk="google.genai",
    text=gemini_text,
    error=gemini_error,
)
COHERE = Vendor(
    provider="cohere",
    candidate="co",
    model="command-test",
    key="co-test-secret-123456",
    key_envs=("CO_API_KEY", "COHERE_API_KEY"),
    sdk="cohere",
    text=cohere_text,
    error=cohere_error,
)
VENDORS = (ANTHROPIC, GEMINI, COHERE)
