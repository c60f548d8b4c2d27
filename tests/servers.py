"""A loopback OpenAI-compatible server for tests and benchmarks.

``POST /v1/chat/completions`` answers a proper ``chat.completion``: it echoes the model, derives
the text from the last user message (``"echo: <text>"``; a JSON object ``{"echo": <text>}``
when ``response_format`` asks for JSON), calls a tool when the request has tools and
``tool_choice`` is ``"required"`` or names a function, and reports usage.

Every request is counted by the hash of its body (:func:`body_hash`) and its
``Authorization`` header is recorded, so tests can assert exactly what was sent; so is every
successful answer (a complete chat completion written to a client still connected), so that
tests can assert that no request was answered twice. Faults can
be scripted: HTTP errors (429 with ``Retry-After``, 500, 503...), slow answers (timeouts) and
malformed bodies, each for a number of requests, optionally only for requests whose last user
message contains a given text. ``delay`` makes every answer wait.

A request with ``"stream": true`` is answered as server-sent events, like OpenAI: a role
chunk, the content (or each tool call's arguments) in several fragments, a chunk with the
finish reason and, with ``stream_options.include_usage``, a usage chunk; then ``[DONE]``. The
first chunk leaves after ``delay``, each further one after ``chunk_delay`` (time to first
token is measurable). :func:`stream_chunks` gives the chunks.

Two ways to run it:

* :class:`LoopbackServer` - in a background thread of the test process (port 0 on 127.0.0.1);
* :class:`SubprocessServer` - in its own process (``python tests/servers.py --delay 0.1``),
  for benchmarks and for tests that kill processes; ``GET /_stats`` gives its counts.

A ``behaviour`` (a function from the request body to the ``chat.completion``) replaces the
echo: :func:`instruction_follower` (a candidate that follows some instructions only when the
request gives them) and :func:`prompt_optimiser` (an optimiser stand-in for ``adapt``).

Both are bounded: ``max_requests`` (then 503) and ``lifetime`` seconds (then 503, and the
subprocess exits). Only 127.0.0.1 is ever bound. This file only imports the standard library
and aiohttp, so that it runs as a script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

from aiohttp import web

HOST = "127.0.0.1"

T = TypeVar("T")


def body_hash(body: Any) -> str:
    """Hash of a request body (canonical JSON), the key of the server's request counts."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _words(body: dict[str, Any]) -> int:
    return sum(
        len(_text(m.get("content")).split())
        for m in body.get("messages") or []
        if isinstance(m, dict)
    )


def make_completion(body: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` the server answers for a request body."""
    user = last_user_text(body)
    digest = body_hash(body)[:12]
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    tool_name: str | None = None
    if tools and choice == "required":
        first = tools[0] if isinstance(tools[0], dict) else {}
        tool_name = (first.get("function") or {}).get("name") or "tool"
    elif tools and isinstance(choice, dict):
        tool_name = (choice.get("function") or {}).get("name") or choice.get("name")
    message: dict[str, Any]
    if tool_name:
        arguments = json.dumps({"text": user}, ensure_ascii=False)
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{digest}",
                    "type": "function",
                    "function": {"name": tool_name, "arguments": arguments},
                }
            ],
        }
        finish, out_words = "tool_calls", len(arguments.split())
    else:
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            content = json.dumps({"echo": user}, ensure_ascii=False)
        else:
            content = f"echo: {user}"
        message = {"role": "assistant", "content": content, "refusal": None}
        finish, out_words = "stop", len(content.split())
    prompt = _words(body)
    return {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "system_fingerprint": "fp_loopback",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": out_words,
            "total_tokens": prompt + out_words,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


# --- behaviours for ``migrate-eval adapt`` -----------------------------------------------------

#: What :func:`instruction_follower` needs to be told.
LANGUAGE_HINT = "Answer in the customer's language."
ORDER_TOOL_HINT = "Use it when the customer gives an order number."
FRENCH_GREETING = "Bonjour"


def _completion(body: dict[str, Any], message: dict[str, Any], finish: str) -> dict[str, Any]:
    out = make_completion({"model": body.get("model", "unknown"), "messages": []})
    out["choices"][0].update({"message": message, "finish_reason": finish})
    return out


def _system_text(body: dict[str, Any]) -> str:
    return "\n".join(
        _text(m.get("content"))
        for m in body.get("messages") or []
        if isinstance(m, dict) and m.get("role") in ("system", "developer")
    )


def _schema_keys(body: dict[str, Any]) -> list[str]:
    """The keys a JSON answer must have, when the request says: a json_schema
    ``response_format`` or ``JSON object with the keys: "a", "b"`` in the system prompt."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        return [str(k) for k in (schema.get("properties") or {})]
    system = _system_text(body)
    marker = "JSON object with the keys:"
    if marker in system:
        tail = system.split(marker, 1)[1].split("\n", 1)[0]
        return [k.strip(' ".') for k in tail.split(",") if k.strip(' ".')]
    return []


def instruction_follower(body: dict[str, Any]) -> dict[str, Any]:
    """A candidate that reads instructions literally (``adapt``'s end-to-end test).

    * Text: ``answer to <last word>``, or ``réponse à <last word>`` for a customer who writes
      French, but only when the system prompt says :data:`LANGUAGE_HINT`; as a JSON object with
      the expected keys only when the schema is given (:func:`_schema_keys`).
    * Tools: it calls a tool only when ``tool_choice`` requires one; ``lookup_order`` only when
      its description says :data:`ORDER_TOOL_HINT` and the customer gives an order number,
      otherwise the first tool (``search_faq``).
    """
    user = last_user_text(body)
    last = user.split()[-1] if user.split() else ""
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools:
        choice = body.get("tool_choice")
        if choice != "required" and not isinstance(choice, dict):
            message = {"role": "assistant", "content": "Let me check that for you."}
            return _completion(body, message, "stop")
        by_name = {str(t.get("name")): str(t.get("description") or "") for t in tools}
        use_order = ORDER_TOOL_HINT in by_name.get("lookup_order", "") and "order" in user
        name = "lookup_order" if use_order else str(tools[0].get("name"))
        arguments = {"order": last} if name == "lookup_order" else {"query": user}
        call = {
            "id": f"call_{body_hash(body)[:8]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return _completion(body, message, "tool_calls")
    french = user.startswith(FRENCH_GREETING) and LANGUAGE_HINT in _system_text(body)
    text = f"réponse à {last}" if french else f"answer to {last}"
    keys = _schema_keys(body)
    content = json.dumps({k: text for k in keys}, ensure_ascii=False) if keys else text
    return _completion(body, {"role": "assistant", "content": content}, "stop")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def prompt_optimiser(body: dict[str, Any]) -> dict[str, Any]:
    """An optimiser stand-in for ``adapt``: reads the failures it is shown (the JSON of the
    last user message) and proposes one fix, for the first kind of failure it finds:

    1. the expected answers are JSON objects and the new model's are not: a json_schema
       ``response_format`` with the expected keys;
    2. a tool call is expected and the new model called none: ``tool_choice: required``;
    3. the new model called another tool than expected: the expected tool's description says
       :data:`ORDER_TOOL_HINT`;
    4. otherwise (the words differ): :data:`LANGUAGE_HINT` in the system prompt.

    Attempt 0 of every round proposes a useless edit, so that the best proposal must be picked.
    """
    shown = _loads(last_user_text(body))
    if not isinstance(shown, dict):
        return _completion(body, {"role": "assistant", "content": "no idea"}, "stop")
    prompt = str(shown.get("current_system_prompt") or "")
    proposal: dict[str, Any]
    if shown.get("attempt") == 0:
        proposal = {"system_prompt": prompt + "\nBe concise."}
    else:
        proposal = {"system_prompt": prompt + "\n" + LANGUAGE_HINT}
        for f in shown.get("failures") or []:
            expected = _loads(str(f.get("expected_answer")))
            got = _loads(str(f.get("new_model_answer")))
            if isinstance(expected, dict) and not isinstance(got, dict):
                schema = {
                    "type": "object",
                    "properties": {k: {"type": "string"} for k in expected},
                    "required": list(expected),
                }
                fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
                proposal = {"response_format": fmt}
                break
            if isinstance(expected, list) and not isinstance(got, list):
                proposal = {"tool_choice": "required"}
                break
            if isinstance(expected, list) and isinstance(got, list) and expected and got:
                name = str(expected[0].get("name"))
                if name != got[0].get("name"):
                    old = str((shown.get("tool_descriptions") or {}).get(name) or "")
                    proposal = {"tool_descriptions": {name: f"{old} {ORDER_TOOL_HINT}".strip()}}
                    break
    message = {"role": "assistant", "content": json.dumps(proposal, ensure_ascii=False)}
    return _completion(body, message, "stop")


def _fragments(text: str, parts: int = 3) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects a streamed answer to ``body`` is made of."""
    full = make_completion(body)
    base = {k: full[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    choice = full["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    for index, call in enumerate(message.get("tool_calls") or []):
        fn = call["function"]
        first = {"index": index, "id": call["id"], "type": "function"}
        pieces = _fragments(fn["arguments"])
        chunks.append(
            chunk({"tool_calls": [{**first, "function": {"name": fn["name"], "arguments": ""}}]})
        )
        chunks.extend(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in pieces
        )
    if isinstance(message.get("content"), str):
        chunks.extend(chunk({"content": piece}) for piece in _fragments(message["content"]))
    chunks.append(chunk({}, choice["finish_reason"]))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunks.append({**base, "choices": [], "usage": full["usage"]})
    return chunks


@dataclass
class Fault:
    """A scripted misbehaviour for the next ``times`` matching requests.

    ``status`` >= 300 answers that status with ``body`` (an OpenAI-style error by default) and
    ``headers``; ``malformed`` answers 200 with ``body`` (default: JSON without choices);
    otherwise the normal answer is sent after ``delay`` seconds (a slow answer).
    """

    status: int = 500
    times: int = 1
    match: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    delay: float = 0.0
    malformed: bool = False

    def applies(self, user_text: str) -> bool:
        return self.times > 0 and (self.match is None or self.match in user_text)


@dataclass
class Flaky:
    """A vendor that misbehaves at random (seeded): each request, unless a scripted
    :class:`Fault` applies, gets a 429 (``p429``, with ``retry_after_ms`` / ``retry_after``
    if set), a 503 (``p5xx``), a truncated JSON body with status 200 (``p_garbage``) or hangs
    for ``hang`` seconds before answering (``p_hang``); otherwise the normal answer.

    ``keyed``: the draw depends only on the seed, the request body and how many times that
    body arrived before (not on the order in which concurrent requests arrive), so the
    same requests misbehave the same way whatever the scheduling."""

    p429: float = 0.075
    p5xx: float = 0.075
    p_garbage: float = 0.02
    p_hang: float = 0.01
    hang: float = 60.0
    retry_after_ms: int | None = None
    retry_after: str | None = None
    seed: int = 0
    keyed: bool = False
    rng: random.Random = field(init=False, repr=False)
    arrivals: Counter[str] = field(init=False, repr=False, default_factory=Counter)
    #: Faults drawn so far, by kind ("429", "5xx", "garbage", "hang").
    drawn: Counter[str] = field(init=False, repr=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self, key: str = "") -> Fault | None:
        """The fault for the next request (``key``: its body hash, used when ``keyed``)."""
        if self.keyed:
            self.arrivals[key] += 1
            r = random.Random(f"{self.seed}:{key}:{self.arrivals[key]}").random()
        else:
            r = self.rng.random()
        headers = {}
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        fault: Fault | None = None
        if r < self.p429:
            fault, kind = Fault(status=429, headers=headers), "429"
        elif (r := r - self.p429) < self.p5xx:
            fault, kind = Fault(status=503), "5xx"
        elif (r := r - self.p5xx) < self.p_garbage:
            body = '{"id": "chatcmpl-x", "choices": [{"mes'
            fault, kind = Fault(status=200, malformed=True, body=body), "garbage"
        elif r - self.p_garbage < self.p_hang:
            fault, kind = Fault(status=200, delay=self.hang), "hang"
        if fault is not None:
            self.drawn[kind] += 1
        return fault


class _Core:
    """State and request handling shared by the thread and subprocess servers."""

    def __init__(
        self,
        *,
        delay: float,
        max_requests: int,
        lifetime: float,
        record: bool,
        behaviour: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.behaviour = behaviour or make_completion
        self.delay = delay
        self.chunk_delay = 0.0  # seconds between streamed chunks
        self.response_headers: dict[str, str] = {}  # sent with every answer (vendor headers)
        self.in_flight_at_arrival: list[int] = []  # requests in flight when each one arrived
        self.max_requests = max_requests
        self.deadline = time.monotonic() + lifetime
        self.record = record
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        #: Successful answers per body hash: a complete chat completion (or stream) written
        #: to a client that was still connected (a hung attempt abandoned by its client and
        #: an answer to a killed run that never read it are not counted).
        self.successes: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.arrivals: list[float] = []  # time.monotonic() of each recorded request
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults: list[Fault] = []
        self.flaky: Flaky | None = None
        self.stopping: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_get("/_stats", self.handle_stats)
        return app

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.stopping is None:
            self.stopping = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response(
                {"error": {"message": "body is not JSON", "type": "invalid_request_error"}},
                status=400,
            )
        if not isinstance(body, dict):
            return web.json_response({"error": {"message": "body is not an object"}}, status=400)
        user = last_user_text(body)
        with self.lock:
            if self.total >= self.max_requests or time.monotonic() > self.deadline:
                return web.json_response(
                    {"error": {"message": "test server budget exhausted"}}, status=503
                )
            self.total += 1
            digest = body_hash(body)
            self.counts[digest] += 1
            if self.record:
                self.bodies.append(body)
                self.auth_headers.append(request.headers.get("Authorization"))
                self.arrivals.append(time.monotonic())
            fault = next((f for f in self.faults if f.applies(user)), None)
            if fault is not None:
                fault.times -= 1
            elif self.flaky is not None:
                fault = self.flaky.draw(digest)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.record:
                self.in_flight_at_arrival.append(self.in_flight)
        try:
            if body.get("stream") is True and (
                fault is None or (fault.status < 300 and not fault.malformed)
            ):
                return await self._stream(request, body, fault, digest)
            return await self._answer(request, body, fault, digest)
        finally:
            with self.lock:
                self.in_flight -= 1

    async def _answer(
        self, request: web.Request, body: dict[str, Any], fault: Fault | None, digest: str
    ) -> web.StreamResponse:
        await self._sleep(fault.delay if fault is not None and fault.delay else self.delay)
        if fault is not None and fault.malformed:
            text = (
                fault.body
                if fault.body is not None
                else '{"object": "chat.completion", "choices": []}'
            )
            return web.Response(
                status=200, text=text, content_type="application/json", headers=fault.headers
            )
        if fault is not None and fault.status >= 300:
            error = {"message": f"scripted failure {fault.status}", "type": "server_error"}
            return web.Response(
                status=fault.status,
                text=fault.body if fault.body is not None else json.dumps({"error": error}),
                content_type="application/json",
                headers=fault.headers,
            )
        # Written here (not by aiohttp after the handler returns) to know it reached a client
        # still connected: writing to a closed connection raises.
        resp = web.json_response(self.behaviour(body), headers=dict(self.response_headers))
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionError:  # the client is gone (it gave up, or was killed)
            return resp
        self._succeeded(digest)
        return resp

    def _succeeded(self, digest: str) -> None:
        with self.lock:
            self.successes[digest] += 1

    async def _stream(
        self, request: web.Request, body: dict[str, Any], fault: Fault | None, digest: str
    ) -> web.StreamResponse:
        await self._sleep(fault.delay if fault is not None and fault.delay else self.delay)
        resp = web.StreamResponse(
            status=200,
            headers={
                **self.response_headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            },
        )
        await resp.prepare(request)
        for i, chunk in enumerate(stream_chunks(body)):
            if i:
                await self._sleep(self.chunk_delay)
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self._succeeded(digest)
        return resp

    async def handle_stats(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            return web.json_response(
                {
                    "total": self.total,
                    "counts": dict(self.counts),
                    "successes": dict(self.successes),
                }
            )


class Managed:
    """A server used as a context manager: ``with`` starts it and always stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Snapshot(Generic[T]):
    """A read-only attribute of :class:`LoopbackServer`: ``copy`` of the core's attribute of
    the same name, taken under the core's lock."""

    def __init__(self, copy: Callable[[Any], T]) -> None:
        self.copy = copy
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, server: None, owner: type | None = None) -> _Snapshot[T]: ...

    @overload
    def __get__(self, server: LoopbackServer, owner: type | None = None) -> T: ...

    def __get__(self, server: LoopbackServer | None, owner: type | None = None) -> T | _Snapshot[T]:
        if server is None:
            return self
        with server._core.lock:
            return self.copy(getattr(server._core, self.name))


class LoopbackServer(Managed):
    """The server in a background thread of this process. Use as a context manager.

    ``delay``: seconds every answer waits. ``record``: keep every body and Authorization
    header (turn off for throughput). ``max_requests`` / ``lifetime``: bounds, then 503.
    ``behaviour``: what a request is answered (default: the echo of :func:`make_completion`).
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        max_requests: int = 100_000,
        lifetime: float = 600.0,
        record: bool = True,
        flaky: Flaky | None = None,
        behaviour: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._core = _Core(
            delay=delay,
            max_requests=max_requests,
            lifetime=lifetime,
            record=record,
            behaviour=behaviour,
        )
        self._core.flaky = flaky
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(loop, started), daemon=True)
        self._thread.start()
        if not started.wait(10) or self._error is not None:
            raise RuntimeError(f"loopback server did not start: {self._error!r}")
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as e:  # reported by start()
            self._error = e
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._core.stopping = asyncio.Event()
        runner = web.AppRunner(self._core.app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._core.stopping is not None:
            self._core.stopping.set()  # wake slow handlers
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)

    # -- what tests read and script -----------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def delay(self) -> float:
        return self._core.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._core.delay = seconds

    total = _Snapshot(int)
    #: Requests received per :func:`body_hash` (a copy).
    counts = _Snapshot(Counter[str])
    #: Successful answers per :func:`body_hash` (a copy): complete, to a connected client.
    successes = _Snapshot(Counter[str])
    bodies = _Snapshot(list[dict[str, Any]])
    auth_headers = _Snapshot(list[str | None])
    #: ``time.monotonic()`` when each recorded request arrived (same order as bodies).
    arrivals = _Snapshot(list[float])
    #: The most requests the server was answering at the same time.
    max_in_flight = _Snapshot(int)
    #: For each recorded request, how many were in flight when it arrived (itself included).
    in_flight_at_arrival = _Snapshot(list[int])

    @property
    def chunk_delay(self) -> float:
        """Seconds between the chunks of a streamed answer."""
        return self._core.chunk_delay

    @chunk_delay.setter
    def chunk_delay(self, seconds: float) -> None:
        self._core.chunk_delay = seconds

    @property
    def response_headers(self) -> dict[str, str]:
        """Headers sent with every answer (e.g. a vendor's ``openai-model``); a copy."""
        with self._core.lock:
            return dict(self._core.response_headers)

    @response_headers.setter
    def response_headers(self, headers: dict[str, str]) -> None:
        with self._core.lock:
            self._core.response_headers = dict(headers)

    def count_for(self, body: dict[str, Any]) -> int:
        with self._core.lock:
            return self._core.counts[body_hash(body)]

    def add_fault(self, fault: Fault) -> Fault:
        with self._core.lock:
            self._core.faults.append(fault)
        return fault

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        match: str | None = None,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        body: str | None = None,
    ) -> Fault:
        """Answer ``status`` to the next ``times`` (matching) requests."""
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        return self.add_fault(
            Fault(status=status, times=times, match=match, headers=headers, body=body)
        )

    def slow(self, seconds: float, *, times: int = 1, match: str | None = None) -> Fault:
        """Answer the next ``times`` (matching) requests normally, after ``seconds``."""
        return self.add_fault(Fault(status=200, times=times, match=match, delay=seconds))

    def malformed(
        self, body: str | None = None, *, times: int = 1, match: str | None = None
    ) -> Fault:
        """Answer 200 with a body that is not a chat completion (default: no choices)."""
        return self.add_fault(
            Fault(status=200, times=times, match=match, body=body, malformed=True)
        )

    def reset(self) -> None:
        """Forget counts, recorded requests and faults."""
        with self._core.lock:
            self._core.counts.clear()
            self._core.successes.clear()
            self._core.bodies.clear()
            self._core.auth_headers.clear()
            self._core.arrivals.clear()
            self._core.faults.clear()
            self._core.total = 0
            self._core.max_in_flight = 0
            self._core.in_flight_at_arrival.clear()
            self._core.chunk_delay = 0.0


class SubprocessServer(Managed):
    """The server in its own Python process (``tests/servers.py`` run as a script)."""

    def __init__(
        self, *, delay: float = 0.0, max_requests: int = 1_000_000, lifetime: float = 600.0
    ) -> None:
        self.args = [
            "--delay", str(delay), "--max-requests", str(max_requests), "--lifetime", str(lifetime),
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *self.args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"test server subprocess did not start (said {line!r})")
        self.port = int(line.split()[1])
        return self

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/_stats", timeout=10) as resp:
            stats: dict[str, Any] = json.loads(resp.read())
        return stats

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _serve(args: argparse.Namespace) -> None:
    core = _Core(
        delay=args.delay, max_requests=args.max_requests, lifetime=args.lifetime, record=False
    )
    core.stopping = asyncio.Event()
    runner = web.AppRunner(core.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, HOST, args.port, backlog=1024)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.sleep(args.lifetime)
    finally:
        core.stopping.set()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible test server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every answer waits")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument(
        "--lifetime", type=float, default=600.0, help="exit after this many seconds"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
