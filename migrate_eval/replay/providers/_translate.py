"""Helpers shared by the native vendor providers (Anthropic, Gemini, Cohere).

Each native provider receives a Chat Completions request body and translates it to its
vendor's API. The rules they share:

* **Nothing is dropped silently.** A request field is either translated, or a no-op at its
  value (``n: 1``, ``logprobs: false``, ``frequency_penalty: 0``, ``top_p: 1``,
  ``parallel_tool_calls: true``, any field at ``null``...), or the request is refused with
  :class:`~migrate_eval.replay.providers.base.UnsupportedRequestError` naming every feature that
  has no equivalent. The replay engine turns that into an error row with ``error_kind
  "unsupported"``, counted per candidate and task.
* **Soft gaps are dropped, and counted.** Before sending, the engine asks the provider which
  of the request's soft fields (:data:`~migrate_eval.core.request.SOFT_FIELDS`: sampling
  parameters, seed, penalties, log probabilities, ``logit_bias``, ``parallel_tool_calls``,
  ``reasoning_effort``) it has no equivalent for (:func:`soft_drops`), removes them and records
  them on the row (``ReplayResult.dropped``), so the report says "seed dropped on 50 of 50".
  A ``strict_params`` candidate keeps them, and the request is refused as above.
* Fields the engine controls or that only tie a call to the logging account (``stream``,
  ``user``, ``metadata``... see :data:`IGNORED_FIELDS`) are ignored.
* Answers are normalised to :class:`~migrate_eval.core.records.Response` with OpenAI's finish
  reasons (``stop``, ``length``, ``tool_calls``, ``content_filter``) and tool-call arguments
  as JSON text.
"""

from __future__ import annotations

import abc
import base64
import binascii
import importlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from migrate_eval.core.errors import ConfigError, MissingExtraError, VendorError
from migrate_eval.core.records import Response
from migrate_eval.core.request import (
    SOFT_FIELDS,
    TEXT_PARTS,
    OutputFormat,
    content_text,
    parse_output_format,
)
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import (
    MalformedResponseError,
    Provider,
    ProviderResponse,
    UnsupportedRequestError,
    VendorConnectionError,
    VendorTimeout,
    is_retryable_status,
    parse_retry_after,
    redact,
)

#: Request fields that do not change what the model answers (or that the engine controls).
IGNORED_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "store",
        "metadata",
        "user",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)

#: ``field: value`` pairs that are the OpenAI default, hence no-ops whatever the vendor.
NO_OP_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "frequency_penalty": (0, 0.0, None),
    "presence_penalty": (0, 0.0, None),
    "top_p": (1, 1.0, None),
    "parallel_tool_calls": (True, None),
    "logit_bias": ({}, None),
    "modalities": (["text"], None),
}


def import_sdk(module: str, package: str, extra: str) -> Any:
    """The vendor SDK ``module``, imported on first use; without it, a
    :class:`MissingExtraError` naming ``package`` and ``pip install 'migrate-eval[extra]'``.

    Imports through ``__import__``, as an ``import`` statement does.
    """
    try:
        __import__(module)
    except ImportError:
        raise MissingExtraError(package, extra, f"provider '{extra}'") from None
    return sys.modules[module]


def check_fields(request: Mapping[str, Any], handled: Iterable[str], vendor: str) -> None:
    """Refuse the request when it sets a field the provider does not translate.

    ``handled`` lists the fields the provider translates itself. Other fields are accepted
    only when ignored (:data:`IGNORED_FIELDS`), ``null`` (OpenAI reads it as unset) or at a
    no-op value (:data:`NO_OP_VALUES`).
    """
    known = set(handled) | IGNORED_FIELDS
    problems: list[str] = []
    for name, value in request.items():
        if name in known or value is None or is_no_op(name, value):
            continue
        problems.append(describe_field(name, value))
    unsupported(problems, vendor)


def is_no_op(name: str, value: Any) -> bool:
    """The field is at a value that asks for nothing (OpenAI's default)."""
    if value is None:
        return True
    return name in NO_OP_VALUES and value in NO_OP_VALUES[name]


def soft_drops(request: Mapping[str, Any], handled: Iterable[str]) -> tuple[str, ...]:
    """The soft fields (:data:`~migrate_eval.core.request.SOFT_FIELDS`) the request sets to
    something other than a no-op and that a provider translating ``handled`` has no equivalent
    for: what the engine removes (and counts) before sending, unless the run is strict."""
    known = set(handled)
    return tuple(
        name
        for name in SOFT_FIELDS
        if name in request and name not in known and not is_no_op(name, request[name])
    )


def describe_field(name: str, value: Any) -> str:
    if isinstance(value, bool | int | float | str) and len(str(value)) <= 40:
        return f"{name}={value}"
    return name


def unsupported(problems: Sequence[str], vendor: str) -> None:
    """Raise :class:`UnsupportedRequestError` listing ``problems``, if any."""
    if problems:
        unique = list(dict.fromkeys(problems))
        raise UnsupportedRequestError(f"{vendor} has no equivalent for: {', '.join(unique)}")


def resolve_api_key(spec: CandidateSpec, defaults: Sequence[str]) -> tuple[str | None, str]:
    """The API key from ``spec.api_key_env`` or the first of ``defaults`` that is set.

    Returns ``(key, problem)``; the key is never stored anywhere but in memory.
    """
    names = [spec.api_key_env] if spec.api_key_env else list(defaults)
    for env in names:
        key = os.environ.get(env)
        if key:
            return key, ""
    return None, (
        f"candidate '{spec.name}': the API key environment variable {' or '.join(names)} is not set"
    )


def require_key(key: str | None, problem: str) -> str:
    if not key:
        raise ConfigError(problem)
    return key


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Message content as a list of Chat Completions content parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [p for p in content if isinstance(p, dict)]
    return [{"type": "text", "text": str(content)}]


_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.S
)


@dataclass(frozen=True)
class Image:
    """An ``image_url`` part: inline base64 data or a remote URL."""

    url: str | None = None
    mime_type: str | None = None
    data: str | None = None  # base64 text

    @property
    def inline(self) -> bool:
        return self.data is not None

    def raw_bytes(self) -> bytes:
        assert self.data is not None
        return base64.b64decode(self.data)


def parse_image(part: Mapping[str, Any]) -> Image:
    """The image of an ``image_url`` content part (data URLs decoded)."""
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise UnsupportedRequestError("image_url part without a URL")
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if m is None:
            raise UnsupportedRequestError("image data URL that is not base64")
        data = m.group("data").strip()
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise UnsupportedRequestError("image data URL with invalid base64") from None
        return Image(mime_type=m.group("mime") or "image/png", data=data)
    return Image(url=url, mime_type=guess_image_mime(url))


def guess_image_mime(url: str) -> str | None:
    path = url.split("?", 1)[0].lower()
    for ext, mime in (
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".gif", "image/gif"),
        (".webp", "image/webp"),
    ):
        if path.endswith(ext):
            return mime
    return None


@dataclass
class ToolChoice:
    """``tool_choice`` normalised: mode ``auto``/``none``/``required``/``named``."""

    mode: str
    name: str | None = None


def parse_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value in ("auto", "none", "required"):
            return ToolChoice(value)
        raise UnsupportedRequestError(f"tool_choice={value!r}")
    if isinstance(value, dict):
        fn = value.get("function")
        if value.get("type") == "function" and isinstance(fn, dict) and fn.get("name"):
            return ToolChoice("named", str(fn["name"]))
    raise UnsupportedRequestError("tool_choice of an unknown shape")


def request_tool_choice(request: Mapping[str, Any]) -> ToolChoice | None:
    """The request's ``tool_choice``, else its legacy ``function_call`` (a mode or a name)."""
    choice = parse_tool_choice(request.get("tool_choice"))
    legacy = request.get("function_call")
    if choice is None and legacy is not None:
        choice = parse_tool_choice(
            legacy if isinstance(legacy, str) else {"type": "function", "function": legacy}
        )
    return choice


@dataclass
class FunctionTool:
    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool = False

    def declaration(self, **schema: Any) -> dict[str, Any]:
        """``{name, description, **schema}`` (no description key when it has none)."""
        described = {"description": self.description} if self.description else {}
        return {"name": self.name, **described, **schema}


def parse_tools(tools: Any, functions: Any = None) -> list[FunctionTool]:
    """Function tools of a request (``tools`` or the legacy ``functions``)."""
    out: list[FunctionTool] = []
    items: list[Any] = []
    if isinstance(tools, list):
        for t in tools:
            if not isinstance(t, dict) or t.get("type", "function") != "function":
                kind = t.get("type") if isinstance(t, dict) else type(t).__name__
                raise UnsupportedRequestError(f"tools of type {kind!r}")
            items.append(t.get("function"))
    if isinstance(functions, list):
        items.extend(functions)
    for fn in items:
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UnsupportedRequestError("a tool without a function name")
        params = fn.get("parameters")
        out.append(
            FunctionTool(
                name=fn["name"],
                description=fn.get("description"),
                parameters=params
                if isinstance(params, dict)
                else {"type": "object", "properties": {}},
                strict=bool(fn.get("strict")),
            )
        )
    return out


def parse_response_format(value: Any) -> OutputFormat:
    """``response_format`` read by :func:`~migrate_eval.core.request.parse_output_format`; a
    shape no vendor can be asked for is an :class:`UnsupportedRequestError`."""
    fmt = parse_output_format(value)
    if fmt.problem is not None:
        raise UnsupportedRequestError(fmt.problem)
    return fmt


def stop_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value) or None
    raise UnsupportedRequestError("stop of an unknown shape")


def max_tokens(request: Mapping[str, Any]) -> int | None:
    value = request.get("max_completion_tokens", request.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedRequestError(f"max_tokens={value!r}")
    return value


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (JSON text) as an object, for vendors that want objects."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        raise UnsupportedRequestError(
            "an assistant tool call whose arguments are not valid JSON"
        ) from None
    if not isinstance(parsed, dict):
        raise UnsupportedRequestError("an assistant tool call whose arguments are not an object")
    return parsed


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class MessageCheck:
    """Message-level features found while translating, for one error listing them all."""

    problems: list[str] = field(default_factory=list)

    def part(self, part: Mapping[str, Any], *, images: bool = True) -> None:
        kind = part.get("type")
        if kind in TEXT_PARTS:
            return
        if kind == "image_url" and images:
            return
        if kind == "input_audio":
            self.problems.append("audio input")
        elif kind == "file":
            self.problems.append("file input")
        elif kind == "refusal":
            return
        else:
            self.problems.append(f"content part {kind!r}")


def translate_parts(
    content: Any,
    check: MessageCheck,
    text: Callable[[str], dict[str, Any]],
    image: Callable[[Image, MessageCheck], dict[str, Any] | None],
    *,
    empty_text: bool = False,
) -> list[dict[str, Any]]:
    """Message content as a vendor's blocks, every part checked.

    ``text`` builds the block of a text part (empty texts are skipped unless ``empty_text``),
    ``image`` the block of an ``image_url`` part (None for no block: it may note a problem in
    the check instead). Other parts give no block.
    """
    blocks: list[dict[str, Any]] = []
    for part in content_parts(content):
        check.part(part)
        kind = part.get("type")
        if kind in TEXT_PARTS:
            if part.get("text") or empty_text:
                blocks.append(text(str(part.get("text") or "")))
        elif kind == "image_url":
            block = image(parse_image(part), check)
            if block is not None:
                blocks.append(block)
    return blocks


def assistant_tool_calls(message: Mapping[str, Any]) -> list[Any]:
    """An assistant message's ``tool_calls``, its legacy ``function_call`` as one more call
    (whose id is the function's name)."""
    calls = list(message.get("tool_calls") or [])
    fc = message.get("function_call")
    if isinstance(fc, dict):
        calls.append({"id": fc.get("name"), "function": fc})
    return calls


def tool_names_by_id(messages: Sequence[Any]) -> dict[str, str]:
    """Map assistant tool-call ids to function names (vendors that key results by name)."""
    names: dict[str, str] = {}
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "assistant":
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(tc.get("id"), str):
                    names[tc["id"]] = str(fn.get("name", ""))
    return names


def merge_turn(
    turns: list[dict[str, Any]], role: str, items: list[Any], key: str = "content"
) -> None:
    """Append ``items`` as a ``role`` turn; vendors that need alternating roles get consecutive
    turns of the same role merged into one. Empty ``items`` add nothing."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def messages_of(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise UnsupportedRequestError("messages that are not a list of objects")
    return messages


def split_system(
    messages: Sequence[dict[str, Any]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """For vendors that take the system prompt apart: the texts of the ``system`` and
    ``developer`` messages (empty ones included), and the other messages, both in order."""
    system: list[str] = []
    others: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") in ("system", "developer"):
            system.append(content_text(m.get("content")))
        else:
            others.append(m)
    return system, others


class NativeProvider(Provider):
    """Common plumbing of the SDK-based providers: key, base URL, identity, timing.

    Subclasses implement :meth:`_client` (build the SDK client, on first use),
    :meth:`_send` (translate, call, normalise) and :meth:`_map_error` (SDK exception to
    :class:`VendorError`, or None when it is not an SDK failure; bodies that are not JSON
    are mapped before, by :func:`undecodable_body`). Providers that declare ``streaming:
    yes`` implement :meth:`_send_stream`, used when the candidate sets ``stream: true``: the
    answer is reassembled from the events into the body a non-streamed call returns (same
    normalisation, same cache entry) and ``Response.ttft_ms`` is the time to the first token
    (:func:`read_stream`).
    """

    #: Environment variables tried in order when the candidate names none.
    key_envs: ClassVar[tuple[str, ...]] = ()
    #: The vendor's public endpoint (the identity's base URL when the suite names none).
    default_base_url: ClassVar[str] = ""
    #: Human name used in messages.
    vendor: ClassVar[str] = ""
    features: ClassVar[Mapping[str, str]] = {}

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        self.base_url = (spec.base_url or self.default_base_url).rstrip("/")
        self._api_key, self._key_problem = resolve_api_key(spec, self.key_envs)
        self._sdk: Any = None

    def identity(self) -> dict[str, Any]:
        return {
            "provider": self.name or self.spec.provider,
            "base_url": self.base_url,
            "model": self.spec.model,
        }

    @abc.abstractmethod
    def _client(self, api_key: str) -> Any:
        """Build the SDK's async client (SDK retries disabled)."""

    @abc.abstractmethod
    async def _send(self, client: Any, request: dict[str, Any]) -> tuple[Response, dict[str, Any]]:
        """Translate, call the SDK and normalise: the answer and the raw body."""

    @abc.abstractmethod
    def _map_error(self, exc: BaseException) -> VendorError | None:
        """The engine's view of an SDK failure, or None for exceptions that are not one."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        key = require_key(self._api_key, self._key_problem)
        if self._sdk is None:
            self._sdk = self._client(key)
        start = time.perf_counter()
        ttft_ms: float | None = None
        try:
            if self.spec.stream and self.features.get("streaming") == "yes":
                response, raw, first = await self._send_stream(self._sdk, request)
                ttft_ms = (first - start) * 1000.0 if first is not None else None
            else:
                response, raw = await self._send(self._sdk, request)
        except VendorError:
            raise
        except TimeoutError:
            raise VendorTimeout(f"no answer within {self.spec.timeout:g} s") from None
        except Exception as e:
            mapped: VendorError | None = undecodable_body(e)
            if mapped is None:
                mapped = self._map_error(e)
            if mapped is None:
                raise
            mapped.args = (redact(str(mapped), self._api_key),)
            raise mapped from None
        latency_ms = (time.perf_counter() - start) * 1000.0
        response.latency_ms = latency_ms
        if self.spec.stream and self.features.get("streaming") == "yes":
            response.ttft_ms = ttft_ms if ttft_ms is not None else latency_ms
        return ProviderResponse(response=response, raw=raw, latency_ms=latency_ms)

    async def _send_stream(
        self, client: Any, request: dict[str, Any]
    ) -> tuple[Response, dict[str, Any], float | None]:
        """Streamed :meth:`_send`: also the ``perf_counter`` time of the first token.

        Only called when :attr:`features` declares ``streaming: yes``.
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        client, self._sdk = self._sdk, None
        if client is not None:
            await self._close_client(client)

    async def _close_client(self, client: Any) -> None:
        close = getattr(client, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result


async def read_stream(
    stream: AsyncIterable[Any],
    dump: Callable[[Any], dict[str, Any]],
    is_token: Callable[[dict[str, Any]], bool],
) -> tuple[list[dict[str, Any]], float | None]:
    """The items of an SDK stream as plain data (``dump``), with the ``perf_counter`` time of
    the first one that carries a token (``is_token``), for :meth:`NativeProvider._send_stream`.
    """
    first: float | None = None
    items: list[dict[str, Any]] = []
    async for item in stream:
        data = dump(item)
        if first is None and is_token(data):
            first = time.perf_counter()
        items.append(data)
    return items, first


def undecodable_body(exc: BaseException) -> MalformedResponseError | None:
    """A 2xx body the SDK could not decode (not JSON, not UTF-8), else None."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return MalformedResponseError(f"a body that is not JSON: {exc}", status=200)
    return None


def http_error(
    vendor: str,
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
) -> VendorError:
    """A :class:`VendorError` for an HTTP error status, honouring ``Retry-After``."""
    retry_after = None
    if headers is not None:
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        retry_after = parse_retry_after(lowered)
    detail = " ".join(message.split())[:300] or "(empty body)"
    return VendorError(
        f"HTTP {status}: {detail}",
        status=status,
        retryable=is_retryable_status(status),
        retry_after=retry_after,
    )


def error_message(body: Any, fallback: str = "") -> str:
    """The human message of a vendor's error body (several vendors' shapes)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(body.get("message"), str):
            return str(body["message"])
    if isinstance(body, str | bytes):
        return body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return fallback or (json.dumps(body)[:300] if body is not None else "")


def transport_error(exc: BaseException, timeout: float) -> VendorError | None:
    """Timeouts and connection failures of the HTTP stacks the SDKs use (aiohttp, httpx)."""
    import aiohttp

    timeout_msg = f"no answer within {timeout:g} s"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return VendorTimeout(timeout_msg)
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if isinstance(exc, module.TimeoutException):
            return VendorTimeout(timeout_msg)
        if isinstance(exc, module.TransportError):
            return VendorConnectionError(f"connection failed: {exc or type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ContentTypeError):
        return MalformedResponseError(f"a body that cannot be read: {exc}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return VendorConnectionError(f"connection failed: {exc or type(exc).__name__}")
    return None
