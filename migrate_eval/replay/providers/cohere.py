"""Cohere Chat v2, natively, through the official ``cohere`` SDK (``AsyncClientV2``).

Translation of a Chat Completions request (``POST /v2/chat``):

* messages keep their roles (``developer`` -> ``system``); content parts -> Cohere's
  ``text``/``image_url`` parts (data URLs and remote URLs as they are); assistant
  ``tool_calls`` are kept (arguments as JSON text); ``tool`` messages -> ``tool`` messages
  with ``tool_call_id``;
* ``tools`` -> ``{"type": "function", "function": {name, description, parameters}}``;
  ``tool_choice`` ``required``/``none`` -> ``REQUIRED``/``NONE``, ``auto`` is the default;
  a **named** function is emulated: only that tool is offered, with ``REQUIRED``;
* ``response_format`` json_object -> ``{"type": "json_object"}``; json_schema -> that plus
  ``json_schema`` (the schema as is);
* ``stop`` -> ``stop_sequences``; ``max_tokens``; ``temperature``; ``seed``;
  ``frequency_penalty``/``presence_penalty``; ``top_p`` -> ``p`` (Cohere accepts 0.01-0.99:
  ``top_p: 1``, OpenAI's "no nucleus cut", is sent as 0.99, the closest Cohere allows).
* Soft gaps, dropped before sending and counted per task (refused under ``--strict-params``):
  ``logprobs``/``top_logprobs`` (nothing scores them), ``parallel_tool_calls: false`` (Chat
  v2 has no such switch), ``logit_bias`` (OpenAI token ids), ``reasoning_effort``.
* No equivalent (the request becomes an ``unsupported`` error row): ``n > 1`` (only one
  choice is scored), audio and file inputs.

The answer: text parts joined, ``tool_calls`` kept, ``finish_reason`` mapped (``COMPLETE``/
``STOP_SEQUENCE`` -> ``stop``, ``MAX_TOKENS`` -> ``length``, ``TOOL_CALL`` -> ``tool_calls``;
``ERROR``/``TIMEOUT`` become lower case), usage from ``usage.tokens`` (falling back to
``billed_units``) with ``cached_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from migrate_eval.core.errors import VendorError
from migrate_eval.core.records import Response, ToolCall, Usage
from migrate_eval.core.request import (
    DRAW_FIELDS,
    LIMIT_FIELDS,
    TOOL_DECLARATION_FIELDS,
    content_text,
)
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
    messages_of,
    parse_response_format,
    parse_tools,
    request_tool_choice,
    soft_drops,
    stop_list,
    translate_parts,
    transport_error,
    unsupported,
)
from migrate_eval.replay.providers.base import MalformedResponseError

COHERE_BASE_URL = "https://api.cohere.com"

_HANDLED = ("messages", *TOOL_DECLARATION_FIELDS, "response_format", *LIMIT_FIELDS, *DRAW_FIELDS)

_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def _import_sdk() -> Any:
    return import_sdk("cohere", "cohere", "cohere")


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image_part(image: Image, check: MessageCheck) -> dict[str, Any]:
    url = f"data:{image.mime_type};base64,{image.data}" if image.inline else str(image.url)
    return {"type": "image_url", "image_url": {"url": url}}


def _content(content: Any, check: MessageCheck) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return translate_parts(content, check, _text_part, _image_part, empty_text=True)


def translate_request(request: dict[str, Any]) -> dict[str, Any]:
    """The ``AsyncClientV2.chat`` arguments for a Chat Completions request body.

    Raises :class:`UnsupportedRequestError` naming every feature without an equivalent.
    """
    check_fields(request, _HANDLED, "Cohere")
    check = MessageCheck()
    out: list[dict[str, Any]] = []
    for m in messages_of(request):
        role = m.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": content_text(m.get("content"))})
        elif role == "user":
            out.append({"role": "user", "content": _content(m.get("content"), check)})
        elif role == "assistant":
            msg: dict[str, Any] = {"role": "assistant"}
            text = content_text(m.get("content"))
            calls = assistant_tool_calls(m)
            if calls:
                msg["tool_calls"] = [
                    {
                        "id": str(tc.get("id") or (tc.get("function") or {}).get("name")),
                        "type": "function",
                        "function": {
                            "name": str((tc.get("function") or {}).get("name")),
                            "arguments": _arguments_text(
                                (tc.get("function") or {}).get("arguments")
                            ),
                        },
                    }
                    for tc in calls
                ]
                if text:
                    msg["tool_plan"] = text
            else:
                msg["content"] = text
            out.append(msg)
        elif role in ("tool", "function"):
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(m.get("tool_call_id") or m.get("name")),
                    "content": content_text(m.get("content")),
                }
            )
        else:
            check.problems.append(f"message role {role!r}")
    tools = parse_tools(request.get("tools"), request.get("functions"))
    if request.get("parallel_tool_calls") is False and tools:
        check.problems.append("parallel_tool_calls=False")
    unsupported(check.problems, "Cohere")

    params: dict[str, Any] = {"messages": out}
    for name in ("temperature", "seed", "presence_penalty", "frequency_penalty"):
        if request.get(name) is not None:
            params[name] = request[name]
    top_p = request.get("top_p")
    if top_p is not None:
        params["p"] = min(max(float(top_p), 0.01), 0.99)
    limit = max_tokens(request)
    if limit is not None:
        params["max_tokens"] = limit
    stops = stop_list(request.get("stop"))
    if stops:
        params["stop_sequences"] = stops
    fmt = parse_response_format(request.get("response_format"))
    if fmt.kind != "text":
        params["response_format"] = {"type": "json_object"}
        if fmt.schema is not None:
            params["response_format"]["json_schema"] = fmt.schema
    choice = request_tool_choice(request)
    if tools:
        if choice is not None and choice.mode == "named":
            tools = [t for t in tools if t.name == choice.name]
            if not tools:
                unsupported([f"tool_choice naming an unknown function {choice.name!r}"], "Cohere")
        params["tools"] = [
            {"type": "function", "function": t.declaration(parameters=t.parameters)} for t in tools
        ]
        if choice is not None and choice.mode != "auto":
            params["tool_choice"] = "NONE" if choice.mode == "none" else "REQUIRED"
    return params


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)


def normalise(raw: dict[str, Any]) -> Response:
    """The Chat Completions view of a Chat v2 response body."""
    message = raw.get("message")
    if not isinstance(message, dict):
        raise MalformedResponseError("Cohere answer without a message", status=200)
    content = message.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        texts.extend(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    calls: list[ToolCall] = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise MalformedResponseError("Cohere tool call without a function name", status=200)
        calls.append(ToolCall.from_raw(fn["name"], fn.get("arguments", ""), tc.get("id")))
    reason = str(raw.get("finish_reason") or "")
    finish = _FINISH.get(reason, reason.lower() or None)
    if calls and finish == "stop":
        finish = "tool_calls"
    text = "".join(texts) if texts else None
    if text is None and calls and isinstance(message.get("tool_plan"), str):
        text = None  # the tool plan is Cohere's reasoning, not an answer
    return Response(
        text=text,
        tool_calls=calls,
        finish_reason=finish,
        usage=_usage(raw.get("usage")),
        model=raw.get("model") if isinstance(raw.get("model"), str) else None,
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    tokens, billed = u.get("tokens"), u.get("billed_units")
    source: dict[str, Any] = (
        tokens if isinstance(tokens, dict) else billed if isinstance(billed, dict) else {}
    )
    prompt = _int(source.get("input_tokens"))
    completion = _int(source.get("output_tokens"))
    total = prompt + completion if prompt is not None and completion is not None else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=_int(u.get("cached_tokens")),
    )


class CohereProvider(NativeProvider):
    """Cohere Chat v2 (``POST /v2/chat``) through ``cohere.AsyncClientV2``."""

    key_envs: ClassVar[tuple[str, ...]] = ("CO_API_KEY", "COHERE_API_KEY")
    default_base_url: ClassVar[str] = COHERE_BASE_URL
    vendor: ClassVar[str] = "Cohere"
    features: ClassVar[dict[str, str]] = {
        "system_prompt": "yes",
        "multi_turn": "yes",
        "tools": "yes",
        "tool_choice_required": "yes",
        "tool_choice_named": "emulated",
        "parallel_tool_calls": "yes",
        "json_mode": "yes",
        "json_schema": "yes",
        "stop": "yes",
        "sampling": "yes",
        "seed": "yes",
        "n": "no",
        "logprobs": "no",
        "images": "yes",
        "streaming": "no",
    }

    _http: Any = None

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        return soft_drops(request, _HANDLED)

    def _client(self, api_key: str) -> Any:
        cohere = _import_sdk()
        import httpx

        # Our own connection pool (sized by the candidate's concurrency, no redirects: the
        # key must not follow one), closed by aclose().
        self._http = httpx.AsyncClient(
            timeout=self.spec.timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max(1, self.spec.concurrency)),
        )
        return cohere.AsyncClientV2(
            api_key=api_key,
            base_url=self.base_url,
            timeout=self.spec.timeout,
            httpx_client=self._http,
        )

    async def _send(self, client: Any, request: dict[str, Any]) -> tuple[Response, dict[str, Any]]:
        params = translate_request(request)
        answer = await client.chat(
            model=self.spec.model, request_options={"max_retries": 0}, **params
        )
        raw = answer.model_dump(mode="json", exclude_none=True)
        return normalise(raw), raw

    async def _close_client(self, client: Any) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _map_error(self, exc: BaseException) -> VendorError | None:
        _import_sdk()
        from cohere.core.api_error import ApiError

        if isinstance(exc, ApiError):
            status = exc.status_code or 0
            if 200 <= status < 300 or not status:
                return MalformedResponseError(
                    f"HTTP {status} with a body that is not a chat response: "
                    f"{error_message(exc.body)[:200]!r}",
                    status=status or None,
                )
            return http_error("Cohere", status, error_message(exc.body), exc.headers)
        return transport_error(exc, self.spec.timeout)
