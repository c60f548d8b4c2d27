"""Anthropic's Messages API, natively, through the official ``anthropic`` SDK.

Translation of a Chat Completions request (``POST /v1/messages``):

* ``system``/``developer`` messages -> the top-level ``system`` text (joined by blank lines);
* user/assistant history -> ``messages``; consecutive messages of one role are merged into
  one turn; ``tool`` messages -> ``tool_result`` blocks in a user turn; assistant
  ``tool_calls`` -> ``tool_use`` blocks (arguments parsed to objects);
* images: data URLs -> ``base64`` image sources, remote URLs -> ``url`` sources;
* ``tools`` -> ``{name, description, input_schema}``; ``tool_choice`` auto/none/required/named
  -> ``auto``/``none``/``any``/``tool``; ``parallel_tool_calls: false`` ->
  ``disable_parallel_tool_use``;
* ``max_tokens``/``max_completion_tokens`` -> ``max_tokens`` (Anthropic requires it: default
  :data:`DEFAULT_MAX_TOKENS`); ``stop`` -> ``stop_sequences``.
* **JSON output** is native: ``json_schema`` -> ``output_config.format`` ``{"type":
  "json_schema", "schema": ...}``; ``json_object`` (no JSON mode in the Messages API) is
  emulated with the schema ``{"type": "object"}``. The answer's text is the JSON.
* **Sampling**: the Messages API of the current SDK (``anthropic`` 2.x: ``messages.create``
  takes no ``temperature``, ``top_p`` nor ``top_k``; from API version 2026-10-21 any sampling
  parameter is a 400) has no ``temperature``, ``top_p``, ``seed``, penalties, ``logit_bias``
  nor log probabilities. These are *soft* gaps: the replay engine drops them before sending
  and counts them per task ("temperature dropped on 50 of 50", :meth:`soft_drops`); with
  ``--strict-params`` (suite ``strict_params: true``) the request is refused instead.
* No equivalent (the request becomes an ``unsupported`` error row): ``n > 1``, audio and file
  inputs; the soft fields above when the run is strict.

The answer: text blocks joined, ``tool_use`` blocks -> tool calls, ``stop_reason`` mapped
(``end_turn``/``stop_sequence`` -> ``stop``, ``max_tokens`` -> ``length``, ``tool_use`` ->
``tool_calls``, ``refusal`` -> ``content_filter``), usage with cache reads as cached tokens
(prompt tokens include cache reads and writes, as OpenAI counts them).

With ``stream: true`` on the candidate the answer is streamed (server-sent events,
reassembled by :func:`reassemble_stream`) and ``Response.ttft_ms`` is the time to the first
token; the result is the same as a plain call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from migrate_eval.core.errors import VendorError
from migrate_eval.core.records import Response, ToolCall, Usage
from migrate_eval.core.request import DRAW_FIELDS, LIMIT_FIELDS, TOOL_FIELDS, content_text
from migrate_eval.replay.providers._translate import (
    Image,
    MessageCheck,
    NativeProvider,
    assistant_tool_calls,
    check_fields,
    error_message,
    http_error,
    import_sdk,
    max_tokens,
    merge_turn,
    messages_of,
    parse_arguments,
    parse_response_format,
    parse_tools,
    read_stream,
    request_tool_choice,
    soft_drops,
    split_system,
    stop_list,
    translate_parts,
    unsupported,
)
from migrate_eval.replay.providers.base import (
    MalformedResponseError,
    UnsupportedRequestError,
    VendorConnectionError,
    VendorTimeout,
)

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
#: ``max_tokens`` sent when the logged request sets none (Anthropic requires one).
DEFAULT_MAX_TOKENS = 4096

#: What the Messages API translates: no sampling parameter (see the module's docstring).
_HANDLED = ("messages", *TOOL_FIELDS, "response_format", *LIMIT_FIELDS)

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


_SAMPLING_HINT = (
    " (the Messages API has no sampling parameters: run without --strict-params to replay"
    " without them, counted per task)"
)


def _import_sdk() -> Any:
    return import_sdk("anthropic", "anthropic", "anthropic")


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image_block(image: Image, check: MessageCheck) -> dict[str, Any]:
    if image.inline:
        source = {"type": "base64", "media_type": image.mime_type, "data": image.data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": image.url}}


def _block_content(content: Any, check: MessageCheck) -> list[dict[str, Any]]:
    return translate_parts(content, check, _text_block, _image_block)


def translate_request(
    request: dict[str, Any], default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The ``messages.create`` arguments for a Chat Completions request body.

    Raises :class:`UnsupportedRequestError` naming every feature without an equivalent.
    """
    check = MessageCheck()
    _check_fields(request, check)
    system, messages = split_system(messages_of(request))
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "user":
            merge_turn(turns, "user", _block_content(m.get("content"), check))
        elif role == "assistant":
            blocks = _block_content(m.get("content"), check)
            if m.get("audio"):
                check.problems.append("audio output in history")
            for tc in assistant_tool_calls(m):
                fn = tc.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": str(tc.get("id") or fn.get("name")),
                        "name": str(fn.get("name")),
                        "input": parse_arguments(fn.get("arguments")),
                    }
                )
            merge_turn(turns, "assistant", blocks)
        elif role in ("tool", "function"):
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": str(m.get("tool_call_id") or m.get("name")),
                "content": content_text(m.get("content")),
            }
            merge_turn(turns, "user", [result])
        else:
            check.problems.append(f"message role {role!r}")
    unsupported(check.problems, "Anthropic")

    params: dict[str, Any] = {
        "model": request.get("model"),
        "messages": turns,
        "max_tokens": max_tokens(request) or default_max_tokens,
    }
    if system:
        params["system"] = "\n\n".join(s for s in system if s)
    stops = stop_list(request.get("stop"))
    if stops:
        params["stop_sequences"] = stops

    tools = parse_tools(request.get("tools"), request.get("functions"))
    choice = request_tool_choice(request)
    fmt = parse_response_format(request.get("response_format"))
    if fmt.kind != "text":
        schema = fmt.schema if fmt.schema is not None else {"type": "object"}
        params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if tools:
        params["tools"] = [t.declaration(input_schema=t.parameters) for t in tools]
    wire_choice: dict[str, Any] | None = None
    if choice is not None:
        wire_choice = {
            "auto": {"type": "auto"},
            "none": {"type": "none"},
            "required": {"type": "any"},
        }.get(choice.mode, {"type": "tool", "name": choice.name})
    if request.get("parallel_tool_calls") is False and tools:
        wire_choice = dict(wire_choice or {"type": "auto"})
        if wire_choice["type"] != "none":
            wire_choice["disable_parallel_tool_use"] = True
    if wire_choice is not None and tools:
        params["tool_choice"] = wire_choice
    return params


def _check_fields(request: dict[str, Any], check: MessageCheck) -> None:
    try:
        check_fields(request, _HANDLED, "Anthropic")
    except UnsupportedRequestError as e:
        sampling = any(request.get(name) is not None for name in DRAW_FIELDS)
        raise UnsupportedRequestError(f"{e}{_SAMPLING_HINT if sampling else ''}") from None


def normalise(raw: dict[str, Any]) -> Response:
    """The Chat Completions view of a Messages API response body."""
    content = raw.get("content")
    if not isinstance(content, list):
        raise MalformedResponseError("Messages API answer without a content list", status=200)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(
                ToolCall.from_raw(str(block.get("name")), block.get("input") or {}, block.get("id"))
            )
    stop_reason = raw.get("stop_reason")
    finish = _STOP_REASONS.get(str(stop_reason), str(stop_reason) if stop_reason else None)
    text: str | None = "".join(texts) if texts else None
    u = raw.get("usage") if isinstance(raw.get("usage"), dict) else None
    usage = None
    if u is not None:
        cache_read = u.get("cache_read_input_tokens") or 0
        cache_write = u.get("cache_creation_input_tokens") or 0
        prompt = (u.get("input_tokens") or 0) + cache_read + cache_write
        completion = u.get("output_tokens")
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + (completion or 0),
            cached_tokens=cache_read if "cache_read_input_tokens" in u else None,
        )
    return Response(
        text=text,
        tool_calls=calls,
        refusal=None,
        finish_reason=finish,
        usage=usage,
        model=raw.get("model"),
    )


def _dump(event: Any) -> Any:
    return event.model_dump(mode="json") if hasattr(event, "model_dump") else event


def _is_token(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    if event.get("type") == "content_block_delta":
        delta = event.get("delta") or {}
        return bool(delta.get("text") or delta.get("partial_json"))
    if event.get("type") == "content_block_start":
        return (event.get("content_block") or {}).get("type") == "tool_use"
    return False


def reassemble_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Messages API body equivalent to a stream of its server-sent events.

    ``message_start`` gives the message, ``content_block_*`` events its blocks (text deltas
    joined, ``input_json_delta`` fragments joined and parsed), ``message_delta`` the stop
    reason and output usage. Raises :class:`MalformedResponseError` for an incomplete stream.
    """
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event.get("message") or {})
            message["content"] = []
        elif kind == "content_block_start":
            index = int(event.get("index", len(blocks)))
            blocks[index] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            index = int(event.get("index", 0))
            block = blocks.setdefault(index, {"type": "text", "text": ""})
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] = str(block.get("text") or "") + str(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                partial.setdefault(index, []).append(str(delta.get("partial_json") or ""))
        elif kind == "message_delta" and message is not None:
            delta = event.get("delta") or {}
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    message[key] = delta[key]
            usage = dict(message.get("usage") or {})
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            message["usage"] = usage
        elif kind == "error":
            err = event.get("error") or {}
            raise VendorError(f"error in the stream: {err.get('message', err)}", retryable=True)
    if message is None:
        raise MalformedResponseError("an event stream without message_start", status=200)
    for index in sorted(blocks):
        block = blocks[index]
        if index in partial:
            text = "".join(partial[index])
            try:
                block["input"] = json.loads(text) if text.strip() else {}
            except ValueError:
                raise MalformedResponseError(
                    "a streamed tool call whose input is not JSON", status=200
                ) from None
        message["content"].append(block)
    return message


class AnthropicProvider(NativeProvider):
    """Anthropic Messages API (``POST /v1/messages``) through ``anthropic.AsyncAnthropic``."""

    key_envs: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    default_base_url: ClassVar[str] = ANTHROPIC_BASE_URL
    vendor: ClassVar[str] = "Anthropic"
    features: ClassVar[dict[str, str]] = {
        "system_prompt": "yes",
        "multi_turn": "yes",
        "tools": "yes",
        "tool_choice_required": "yes",
        "tool_choice_named": "yes",
        "parallel_tool_calls": "yes",
        "json_mode": "emulated",
        "json_schema": "yes",
        "stop": "yes",
        "sampling": "no",
        "seed": "no",
        "n": "no",
        "logprobs": "no",
        "images": "yes",
        "streaming": "yes",
    }

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        return soft_drops(request, _HANDLED)

    def _client(self, api_key: str) -> Any:
        sdk = _import_sdk()
        return sdk.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            timeout=self.spec.timeout,
            max_retries=0,
        )

    async def _send(self, client: Any, request: dict[str, Any]) -> tuple[Response, dict[str, Any]]:
        params = translate_request(request)
        params["model"] = self.spec.model
        message = await client.messages.create(**params)
        raw = _dump(message)
        if not isinstance(raw, dict):
            raise MalformedResponseError(
                f"Messages API answer is a {type(raw).__name__}, not an object", status=200
            )
        return normalise(raw), raw

    async def _send_stream(
        self, client: Any, request: dict[str, Any]
    ) -> tuple[Response, dict[str, Any], float | None]:
        params = translate_request(request)
        params["model"] = self.spec.model
        stream = await client.messages.create(**params, stream=True)
        events, first = await read_stream(stream, _dump, _is_token)
        raw = reassemble_stream(events)
        return normalise(raw), raw, first

    def _map_error(self, exc: BaseException) -> VendorError | None:
        sdk = _import_sdk()
        if isinstance(exc, sdk.APITimeoutError):
            return VendorTimeout(f"no answer within {self.spec.timeout:g} s")
        if isinstance(exc, sdk.APIConnectionError):
            return VendorConnectionError(f"connection failed: {exc.message}")
        if isinstance(exc, sdk.APIResponseValidationError):
            return MalformedResponseError(
                f"HTTP {exc.status_code} with a body that is not a message: {exc.message}",
                status=exc.status_code,
            )
        if isinstance(exc, sdk.APIStatusError):
            message = error_message(exc.body, exc.message)
            return http_error("Anthropic", exc.status_code, message, exc.response.headers)
        if isinstance(exc, sdk.AnthropicError):
            return VendorError(f"Anthropic SDK error: {exc}")
        return None
