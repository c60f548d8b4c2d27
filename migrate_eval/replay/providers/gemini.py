"""Google Gemini, natively, through the official ``google-genai`` SDK (async client).

Translation of a Chat Completions request
(``POST /v1beta/models/{model}:generateContent``):

* ``system``/``developer`` messages -> ``system_instruction`` (joined by blank lines);
* history -> ``contents`` with roles ``user``/``model``; consecutive messages of one role are
  merged; assistant ``tool_calls`` -> ``functionCall`` parts (arguments as objects);
  ``tool`` messages -> ``functionResponse`` parts in a user turn, named after the call they
  answer (a JSON-object result is passed as is, anything else as ``{"result": text}``);
* images: data URLs -> ``inlineData``, remote URLs -> ``fileData`` (with the MIME type
  guessed from the URL's extension);
* ``tools`` -> ``functionDeclarations`` with ``parametersJsonSchema`` (JSON schema as is);
  ``tool_choice`` auto/none/required/named -> ``functionCallingConfig`` mode
  ``AUTO``/``NONE``/``ANY``/``ANY`` with ``allowedFunctionNames``;
* ``response_format`` json_object -> ``responseMimeType: application/json``; json_schema ->
  that plus ``responseJsonSchema`` (JSON schema as is);
* ``stop`` -> ``stopSequences``; ``temperature``, ``top_p`` (``topP``), ``max_tokens``
  (``maxOutputTokens``), ``seed``, ``presence_penalty``, ``frequency_penalty`` pass through.
* Soft gaps, dropped before sending and counted per task (refused under ``--strict-params``):
  ``logprobs``/``top_logprobs`` (nothing scores them), ``parallel_tool_calls: false`` (no
  switch in ``functionCallingConfig``), ``logit_bias`` (OpenAI token ids), ``reasoning_effort``.
* No equivalent (the request becomes an ``unsupported`` error row): ``n > 1`` (only one
  choice is scored), audio and file inputs.

The answer: text parts joined (thought parts skipped), ``functionCall`` parts -> tool calls
(ids generated when Gemini gives none), ``finishReason`` mapped (``STOP`` -> ``stop`` or
``tool_calls`` when the model called functions, ``MAX_TOKENS`` -> ``length``, safety,
recitation, blocklist and prohibited-content reasons -> ``content_filter``; a prompt blocked
before generation -> ``content_filter``), usage with ``cachedContentTokenCount`` as cached
tokens and ``thoughtsTokenCount`` as reasoning tokens.

With ``stream: true`` on the candidate the answer is streamed
(``streamGenerateContent?alt=sse``, chunks reassembled by :func:`reassemble_stream`) and
``Response.ttft_ms`` is the time to the first token; the result is the same as a plain call.
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
    tool_names_by_id,
    translate_parts,
    transport_error,
    unsupported,
)
from migrate_eval.replay.providers.base import MalformedResponseError, UnsupportedRequestError

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
#: The API version the requests go to (``responseJsonSchema`` and function ids live there).
GEMINI_API_VERSION = "v1beta"

_HANDLED = ("messages", *TOOL_DECLARATION_FIELDS, "response_format", *LIMIT_FIELDS, *DRAW_FIELDS)

_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "LANGUAGE",
}


def _import_sdk() -> Any:
    return import_sdk("google.genai", "google-genai", "gemini")


def _text_part(text: str) -> dict[str, Any]:
    return {"text": text}


def _image_part(image: Image, check: MessageCheck) -> dict[str, Any] | None:
    if image.inline:
        return {"inline_data": {"mime_type": image.mime_type, "data": image.raw_bytes()}}
    if image.mime_type is None:
        check.problems.append("a remote image URL of unknown type")
        return None
    return {"file_data": {"file_uri": image.url, "mime_type": image.mime_type}}


def _parts(content: Any, check: MessageCheck) -> list[dict[str, Any]]:
    return translate_parts(content, check, _text_part, _image_part)


def _function_response(content: Any) -> dict[str, Any]:
    text = content_text(content)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"result": text}


def translate_request(request: dict[str, Any]) -> dict[str, Any]:
    """``{"contents": [...], "config": {...}}`` for ``models.generate_content``.

    Raises :class:`UnsupportedRequestError` naming every feature without an equivalent.
    """
    check_fields(request, _HANDLED, "Gemini")
    check = MessageCheck()
    messages = messages_of(request)
    names = tool_names_by_id(messages)
    system, messages = split_system(messages)
    contents: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "user":
            merge_turn(contents, "user", _parts(m.get("content"), check), "parts")
        elif role == "assistant":
            parts = _parts(m.get("content"), check)
            for tc in assistant_tool_calls(m):
                fn = tc.get("function") or {}
                parts.append(
                    {
                        "function_call": {
                            "name": str(fn.get("name")),
                            "args": parse_arguments(fn.get("arguments")),
                        }
                    }
                )
            merge_turn(contents, "model", parts, "parts")
        elif role in ("tool", "function"):
            name = m.get("name") or names.get(str(m.get("tool_call_id")))
            if not name:
                check.problems.append("a tool result that answers no known tool call")
                continue
            response = _function_response(m.get("content"))
            result = {"function_response": {"name": str(name), "response": response}}
            merge_turn(contents, "user", [result], "parts")
        else:
            check.problems.append(f"message role {role!r}")
    if request.get("parallel_tool_calls") is False and request.get("tools"):
        check.problems.append("parallel_tool_calls=False")
    unsupported(check.problems, "Gemini")

    config: dict[str, Any] = {}
    if any(system):
        config["system_instruction"] = "\n\n".join(s for s in system if s)
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ):
        if request.get(ours) is not None:
            config[theirs] = request[ours]
    limit = max_tokens(request)
    if limit is not None:
        config["max_output_tokens"] = limit
    stops = stop_list(request.get("stop"))
    if stops:
        config["stop_sequences"] = stops
    fmt = parse_response_format(request.get("response_format"))
    if fmt.kind != "text":
        config["response_mime_type"] = "application/json"
        if fmt.schema is not None:
            config["response_json_schema"] = fmt.schema
    tools = parse_tools(request.get("tools"), request.get("functions"))
    if tools:
        declarations = [t.declaration(parameters_json_schema=t.parameters) for t in tools]
        config["tools"] = [{"function_declarations": declarations}]
        choice = request_tool_choice(request)
        if choice is not None:
            fcc: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")}
            if choice.mode == "named":
                fcc["allowed_function_names"] = [choice.name]
            config["tool_config"] = {"function_calling_config": fcc}
    elif request.get("tool_choice") not in (None, "none", "auto"):
        raise UnsupportedRequestError("Gemini has no equivalent for: tool_choice without tools")
    return {"contents": contents, "config": config}


def normalise(raw: dict[str, Any]) -> Response:
    """The Chat Completions view of a ``GenerateContentResponse`` (SDK field names)."""
    usage = _usage(raw.get("usage_metadata"))
    candidates = raw.get("candidates")
    if not candidates:
        feedback = raw.get("prompt_feedback")
        if isinstance(feedback, dict) and feedback.get("block_reason"):
            return Response(
                text=None,
                finish_reason="content_filter",
                usage=usage,
                model=raw.get("model_version"),
            )
        raise MalformedResponseError("Gemini answer without candidates", status=200)
    cand = candidates[0]
    if not isinstance(cand, dict):
        raise MalformedResponseError("Gemini candidate is not an object", status=200)
    content = cand.get("content") or {}
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in content.get("parts") or []:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        fc = part.get("function_call")
        if isinstance(fc, dict):
            call_id = fc.get("id") or f"call_{len(calls)}"
            calls.append(ToolCall.from_raw(str(fc.get("name")), fc.get("args") or {}, call_id))
    reason = str(cand.get("finish_reason") or "")
    if reason in ("", "STOP", "FINISH_REASON_UNSPECIFIED"):
        finish = "tool_calls" if calls else ("stop" if reason else None)
    elif reason == "MAX_TOKENS":
        finish = "length"
    elif reason in _FILTERED:
        finish = "content_filter"
    else:
        finish = reason.lower()
    return Response(
        text="".join(texts) if texts else None,
        tool_calls=calls,
        finish_reason=finish,
        usage=usage,
        model=raw.get("model_version"),
    )


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_token_count")
    completion = u.get("candidates_token_count")
    thoughts = u.get("thoughts_token_count")
    if completion is not None and thoughts:
        completion += thoughts  # OpenAI counts reasoning tokens in completion tokens
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.get("total_token_count"),
        cached_tokens=u.get("cached_content_token_count"),
        reasoning_tokens=thoughts,
    )


def _dump(answer: Any) -> dict[str, Any]:
    """An SDK answer (or streamed chunk) as its JSON body, without the HTTP response."""
    raw: dict[str, Any] = answer.model_dump(mode="json", exclude_none=True)
    raw.pop("sdk_http_response", None)
    return raw


def _has_token(chunk: dict[str, Any]) -> bool:
    for cand in chunk.get("candidates") or []:
        for part in (cand.get("content") or {}).get("parts") or []:
            if part.get("text") or part.get("function_call"):
                return True
    return False


def reassemble_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``GenerateContentResponse`` equivalent to the chunks of a streamed call.

    Parts are concatenated in order (consecutive text parts merged), the last finish reason,
    usage and prompt feedback win.
    """
    if not chunks:
        raise MalformedResponseError("an empty event stream", status=200)
    parts: list[dict[str, Any]] = []
    finish: Any = None
    out: dict[str, Any] = {}
    for chunk in chunks:
        for key in ("usage_metadata", "model_version", "prompt_feedback", "response_id"):
            if key in chunk:
                out[key] = chunk[key]
        for cand in (chunk.get("candidates") or [])[:1]:
            for part in (cand.get("content") or {}).get("parts") or []:
                is_text = isinstance(part.get("text"), str) and len(part) == 1
                if is_text and parts and set(parts[-1]) == {"text"}:
                    parts[-1] = {"text": parts[-1]["text"] + part["text"]}
                else:
                    parts.append(dict(part))
            finish = cand.get("finish_reason", finish)
    if parts or finish is not None:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if finish is not None:
            candidate["finish_reason"] = finish
        out["candidates"] = [candidate]
    return out


class GeminiProvider(NativeProvider):
    """Gemini API ``generateContent`` through ``google.genai.Client(...).aio``."""

    key_envs: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    default_base_url: ClassVar[str] = GEMINI_BASE_URL
    vendor: ClassVar[str] = "Gemini"
    features: ClassVar[dict[str, str]] = {
        "system_prompt": "yes",
        "multi_turn": "yes",
        "tools": "yes",
        "tool_choice_required": "yes",
        "tool_choice_named": "yes",
        "parallel_tool_calls": "yes",
        "json_mode": "yes",
        "json_schema": "yes",
        "stop": "yes",
        "sampling": "yes",
        "seed": "yes",
        "n": "no",
        "logprobs": "no",
        "images": "yes",
        "streaming": "yes",
    }

    _session: Any = None

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        return soft_drops(request, _HANDLED)

    def _client(self, api_key: str) -> Any:
        genai = _import_sdk()
        import aiohttp
        from google.genai import types

        # Our own aiohttp session (the SDK's default one subclasses ClientSession, which
        # aiohttp deprecates); its size follows the candidate's concurrency.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, self.spec.concurrency))
        )
        options = types.HttpOptions(
            base_url=self.base_url,
            api_version=GEMINI_API_VERSION,
            timeout=max(1, int(self.spec.timeout * 1000)),
            retry_options=types.HttpRetryOptions(attempts=1),
            aiohttp_client=self._session,
        )
        return genai.Client(api_key=api_key, http_options=options)

    async def _send(self, client: Any, request: dict[str, Any]) -> tuple[Response, dict[str, Any]]:
        args = translate_request(request)
        answer = await client.aio.models.generate_content(model=self.spec.model, **args)
        raw = _dump(answer)
        return normalise(raw), raw

    async def _send_stream(
        self, client: Any, request: dict[str, Any]
    ) -> tuple[Response, dict[str, Any], float | None]:
        args = translate_request(request)
        stream = await client.aio.models.generate_content_stream(model=self.spec.model, **args)
        chunks, first = await read_stream(stream, _dump, _has_token)
        raw = reassemble_stream(chunks)
        return normalise(raw), raw, first

    async def _close_client(self, client: Any) -> None:
        await client.aio.aclose()
        client.close()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _map_error(self, exc: BaseException) -> VendorError | None:
        _import_sdk()
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            status = int(exc.code) if isinstance(exc.code, int) else 0
            headers = getattr(exc.response, "headers", None)
            message = exc.message if isinstance(exc.message, str) else error_message(exc.details)
            if status < 300:
                return MalformedResponseError(f"HTTP {status}: {message}", status=status or None)
            return http_error("Gemini", status, message or "", headers)
        return transport_error(exc, self.spec.timeout)
