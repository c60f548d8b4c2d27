"""Any endpoint that speaks the OpenAI Chat Completions wire protocol.

Covers vLLM, SGLang, TGI, Ollama, llama.cpp server, LM Studio, Together, Fireworks, Groq,
DeepInfra, OpenRouter, Mistral, the compatibility endpoints of Gemini and Anthropic, and
OpenAI itself (registered again as ``openai``).

The protocol is spoken directly with one shared :class:`aiohttp.ClientSession` per provider
(a bare aiohttp loop is far cheaper in client CPU than the OpenAI SDK's transport). The
request body is sent as is: tools, ``tool_choice``, ``response_format`` and sampling
parameters pass through unchanged.

With ``stream: true`` on the candidate, the request is sent with ``stream: true`` and
``stream_options: {include_usage: true}``; the server-sent events are reassembled
(:func:`reassemble_stream`: content and refusal deltas, tool calls by index with their
argument fragments, finish reason, usage) into the body a non-streamed call would have
returned, which is what the cache stores, and the time to the first token is recorded in
``Response.ttft_ms``. The cache key is the same either way: streaming is how an answer is
fetched, not a different request.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from yarl import URL

from migrate_eval.core.errors import ConfigError, VendorError
from migrate_eval.core.records import Response
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import (
    MalformedResponseError,
    Provider,
    ProviderResponse,
    VendorConnectionError,
    VendorTimeout,
    is_retryable_status,
    parse_retry_after,
    pick_headers,
    redact,
)
from migrate_eval.replay.providers.matrix import CHAT_COMPLETIONS_FEATURES
from migrate_eval.replay.providers.registry import register_provider

if TYPE_CHECKING:  # aiohttp is imported on the first request: a fully cached run never needs it
    import aiohttp

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
_USER_AGENT = "migrate-eval/0.1 (aiohttp)"
_ERROR_SNIPPET = 300


def reassemble_stream(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``chat.completion`` body equivalent to a stream of ``chat.completion.chunk`` objects.

    Content and refusal deltas are concatenated per choice; tool calls are merged by their
    ``index`` (id, type and name from the first fragment that has them, ``arguments``
    concatenated); the last non-null ``finish_reason`` and the ``usage`` chunk are kept.
    """
    body: dict[str, Any] = {"object": "chat.completion"}
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None and key not in body:
                body[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            body["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            state = choices.setdefault(
                index if isinstance(index, int) else 0,
                {
                    "content": None,
                    "refusal": None,
                    "role": "assistant",
                    "calls": {},
                    "finish": None,
                },
            )
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("role"), str):
                state["role"] = delta["role"]
            for field in ("content", "refusal"):
                piece = delta.get(field)
                if isinstance(piece, str):
                    state[field] = (state[field] or "") + piece
            for call in delta.get("tool_calls") or []:
                if not isinstance(call, dict):
                    continue
                slot = state["calls"].setdefault(
                    call.get("index", len(state["calls"])),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                if call.get("type"):
                    slot["type"] = call["type"]
                fn = call.get("function") or {}
                if isinstance(fn, dict):
                    if isinstance(fn.get("name"), str) and fn["name"]:
                        slot["function"]["name"] = fn["name"]
                    if isinstance(fn.get("arguments"), str):
                        slot["function"]["arguments"] += fn["arguments"]
            if choice.get("finish_reason") is not None:
                state["finish"] = choice["finish_reason"]
    out: list[dict[str, Any]] = []
    for index in sorted(choices):
        state = choices[index]
        message: dict[str, Any] = {
            "role": state["role"],
            "content": state["content"],
            "refusal": state["refusal"],
        }
        if state["calls"]:
            message["tool_calls"] = [state["calls"][i] for i in sorted(state["calls"])]
        out.append({"index": index, "message": message, "finish_reason": state["finish"]})
    body["choices"] = out
    return body


async def _lines(blocks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Lines of a byte stream, whatever their length (aiohttp's readline caps it)."""
    buffer = b""
    async for block in blocks:
        buffer += block
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line
    if buffer:
        yield buffer


async def _sse_events(blocks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The ``data`` payloads of a server-sent event stream (multi-line data joined)."""
    data: list[str] = []
    async for raw in _lines(blocks):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


@register_provider("openai-compatible")
class OpenAICompatibleProvider(Provider):
    """Chat Completions over HTTP against ``spec.base_url`` (default: OpenAI's)."""

    default_base_url: ClassVar[str | None] = None
    #: OpenAI's: ``openai-model``, the model that actually served the request (OpenAI's own
    #: Codex client reads it to notice a server-side reroute), and ``openai-version``, the REST
    #: API version (documented with the other response headers). OpenAI-compatible servers
    #: (vLLM, SGLang, TGI, Ollama...) send neither; the body's ``model`` is all they say.
    version_header_names: ClassVar[tuple[str, ...]] = ("openai-model", "openai-version")
    #: Feature-support matrix entry (``migrate-eval providers``): requests pass through as is.
    features: ClassVar[dict[str, str]] = CHAT_COMPLETIONS_FEATURES

    def default_endpoint(self) -> str | None:
        """The base URL when the candidate names none."""
        return self.default_base_url

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        base = spec.base_url or self.default_endpoint() or OPENAI_BASE_URL
        url = URL(base)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"candidate '{spec.name}': base_url {base!r} must be an http(s):// URL"
            )
        self.base_url = base.rstrip("/")
        self._url = URL(self.base_url + "/chat/completions")
        self._api_key, self._key_problem = self._resolve_key(spec)
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._session: aiohttp.ClientSession | None = None
        #: What a failed transport raises (set with the session: aiohttp is imported then).
        self._transport_failures: tuple[type[BaseException], ...] = (TimeoutError, OSError)
        #: Whether the body sent is the request as given (see :meth:`complete_prepared`).
        self._body_is_request = not spec.stream and type(self).complete is _PLAIN_COMPLETE

    def _resolve_key(self, spec: CandidateSpec) -> tuple[str | None, str | None]:
        """The API key and, when a needed key is missing, why (reported on first use).

        A missing key is not an error at construction time: offline runs never need it.
        """
        env = spec.api_key_env
        if env is None and spec.base_url is None:
            env = DEFAULT_KEY_ENV  # OpenAI's own endpoint
        if env is None:
            return None, None  # a custom base URL without a key is fine (local servers)
        key = os.environ.get(env) or None
        if key is None:
            return None, (
                f"candidate '{spec.name}': the API key environment variable {env} is not set"
            )
        return key, None

    def identity(self) -> dict[str, Any]:
        return {
            "provider": self.name or self.spec.provider,
            "base_url": self.base_url,
            "model": self.spec.model,
        }

    def _open(self) -> aiohttp.ClientSession:
        # The engine caps requests in flight; room for one hedge per request (a second
        # attempt of a hung request) on top.
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=2 * max(1, self.spec.concurrency) + 2,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.spec.timeout),
            raise_for_status=False,
        )
        self._transport_failures = (TimeoutError, aiohttp.ClientError, OSError)
        return self._session

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        if self._key_problem is not None:
            raise ConfigError(self._key_problem)
        if self.spec.stream:
            return await self.complete_streaming(request)
        return await self._post(json.dumps(request, ensure_ascii=False).encode())

    async def complete_prepared(
        self, request: dict[str, Any], request_json: str
    ) -> ProviderResponse:
        """:meth:`complete` with the request's canonical JSON as the body (the same JSON
        value, keys sorted), not serialised again. Subclasses that change the request in
        :meth:`complete` (Azure, the SDK, managed servers) and streamed candidates go through
        :meth:`complete`."""
        if not self._body_is_request:
            return await self.complete(request)
        if self._key_problem is not None:
            raise ConfigError(self._key_problem)
        return await self._post(request_json.encode())

    async def _post(self, data: bytes) -> ProviderResponse:
        """POST one non-streamed request body; the parsed answer."""
        session = self._session or self._open()
        start = time.perf_counter()
        try:  # (as _transport_errors, without a context manager on every request)
            # No redirects: an API endpoint has no reason to send the key somewhere else.
            async with session.post(self._url, data=data, allow_redirects=False) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = parse_retry_after(resp.headers) if status >= 400 else None
                versions = pick_headers(resp.headers, self.version_header_names)
        except self._transport_failures as e:
            raise self._transport_error(e) from None
        latency_ms = (time.perf_counter() - start) * 1000.0
        self._raise_for_status(status, body, retry_after)
        answer = self._parse(body, status, latency_ms)
        answer.version_headers = versions
        return answer

    async def complete_streaming(self, request: dict[str, Any]) -> ProviderResponse:
        """:meth:`complete` with ``stream: true``: reassembled answer and time to first token."""
        if self._key_problem is not None:
            raise ConfigError(self._key_problem)
        session = self._session or self._open()
        options = request.get("stream_options")
        body = {
            **request,
            "stream": True,
            "stream_options": {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            },
        }
        data = json.dumps(body, ensure_ascii=False).encode()
        start = time.perf_counter()
        ttft_ms: float | None = None
        chunks: list[dict[str, Any]] = []
        done = False
        with self._transport_errors():
            async with session.post(self._url, data=data, allow_redirects=False) as resp:
                status = resp.status
                versions = pick_headers(resp.headers, self.version_header_names)
                if status >= 300 or "event-stream" not in resp.headers.get("Content-Type", ""):
                    # An error, or a server that ignored ``stream``: a plain JSON body.
                    raw_body = await resp.read()
                    retry_after = parse_retry_after(resp.headers) if status >= 400 else None
                else:
                    raw_body = b""
                    retry_after = None
                    async for event in _sse_events(resp.content.iter_any()):
                        if event.strip() == "[DONE]":
                            done = True
                            break
                        try:
                            chunk = json.loads(event)
                        except ValueError:
                            raise MalformedResponseError(
                                f"HTTP {status}: a streamed event is not JSON: "
                                f"{redact(event[:_ERROR_SNIPPET], self._api_key)!r}",
                                status=status,
                                retryable=True,
                            ) from None
                        if not isinstance(chunk, dict):
                            continue
                        if isinstance(chunk.get("error"), dict | str):
                            detail = self._error_detail(event.encode())
                            raise VendorError(
                                f"error in the stream: {detail}", status=status, retryable=True
                            )
                        if ttft_ms is None and _has_token(chunk):
                            ttft_ms = (time.perf_counter() - start) * 1000.0
                        chunks.append(chunk)
        latency_ms = (time.perf_counter() - start) * 1000.0
        self._raise_for_status(status, raw_body, retry_after)
        if raw_body:
            answer = self._parse(raw_body, status, latency_ms)
            answer.version_headers = versions
            return answer
        if not chunks:
            raise MalformedResponseError(f"HTTP {status}: an empty event stream", status=status)
        raw = reassemble_stream(chunks)
        finished = any(c.get("finish_reason") is not None for c in raw["choices"])
        if not done and not finished:
            raise VendorConnectionError("the event stream ended before the answer did")
        problem = ": the streamed answer is not a chat completion"
        response = _chat_response(raw, status, latency_ms, problem)
        response.ttft_ms = ttft_ms if ttft_ms is not None else latency_ms
        return ProviderResponse(
            response=response,
            raw=raw,
            latency_ms=latency_ms,
            status=status,
            version_headers=versions,
        )

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Timeouts and connection failures as the vendor errors the engine retries."""
        import aiohttp

        try:
            yield
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise self._transport_error(e) from None

    def _transport_error(self, e: BaseException) -> VendorError:
        if isinstance(e, TimeoutError):
            return VendorTimeout(f"no answer within {self.spec.timeout:g} s")
        detail = redact(str(e) or type(e).__name__, self._api_key)
        return VendorConnectionError(f"connection failed: {detail}")

    def _raise_for_status(self, status: int, body: bytes, retry_after: float | None) -> None:
        if status >= 300:
            raise VendorError(
                f"HTTP {status}: {self._error_detail(body)}",
                status=status,
                retryable=is_retryable_status(status),
                retry_after=retry_after,
            )

    def _parse(self, body: bytes, status: int, latency_ms: float) -> ProviderResponse:
        try:
            text = body.decode("utf-8")
            try:
                raw = orjson.loads(text)  # several times faster than json.loads
            except orjson.JSONDecodeError:  # what only json reads (NaN, huge integers...)
                raw = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            snippet = body[:_ERROR_SNIPPET].decode("utf-8", "replace")
            raise MalformedResponseError(
                f"HTTP {status} with a body that is not JSON: {redact(snippet, self._api_key)!r}",
                status=status,
                retryable=True,  # truncated or garbled on the way: a retry gets a whole one
            ) from None
        if not isinstance(raw, dict):
            raise MalformedResponseError(
                f"HTTP {status} with a JSON {type(raw).__name__}, not a chat completion object",
                status=status,
            )
        if not raw.get("choices") and isinstance(raw.get("error"), dict | str):
            raise MalformedResponseError(
                f"HTTP {status} carrying an error: {self._error_detail(body)}", status=status
            )
        problem = " with a body that is not a chat completion"
        response = _chat_response(raw, status, latency_ms, problem)
        return ProviderResponse(
            response=response, raw=raw, latency_ms=latency_ms, status=status, raw_json=text
        )

    def _error_detail(self, body: bytes) -> str:
        text = body[:4096].decode("utf-8", "replace")
        detail = text
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            err = parsed.get("error", parsed)
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                detail = err["message"]
            elif isinstance(err, str):
                detail = err
        detail = " ".join(detail.split())[:_ERROR_SNIPPET] or "(empty body)"
        return redact(detail, self._api_key)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


#: :meth:`OpenAICompatibleProvider.complete` as defined here: a subclass (or a test) that
#: replaces it gets every request through its own.
_PLAIN_COMPLETE = OpenAICompatibleProvider.complete


def _chat_response(raw: dict[str, Any], status: int, latency_ms: float, problem: str) -> Response:
    """``raw`` normalised; one that is not a chat completion raises ``HTTP {status}{problem}``."""
    try:
        return Response.from_chat_completion(raw, latency_ms=latency_ms)
    except (ValueError, TypeError, AttributeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MalformedResponseError(f"HTTP {status}{problem}: {reason}", status=status) from None


def _has_token(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries the first piece of the answer (text, refusal or a tool call)."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("refusal") or delta.get("tool_calls")
        ):
            return True
    return False


@register_provider("openai")
class OpenAIProvider(OpenAICompatibleProvider):
    """OpenAI itself (the baseline re-run): Chat Completions at ``https://api.openai.com/v1``,
    or at ``OPENAI_BASE_URL`` when set (as the official SDK reads it: a proxy or gateway)."""

    default_base_url = OPENAI_BASE_URL

    def default_endpoint(self) -> str | None:
        return os.environ.get("OPENAI_BASE_URL") or self.default_base_url
