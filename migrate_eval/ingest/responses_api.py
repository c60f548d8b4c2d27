"""Convert OpenAI Responses API requests and responses to the Chat Completions shape.

Request (``POST /v1/responses`` body) to Chat Completions request:

================================  ======================================================
Responses API                     Chat Completions
================================  ======================================================
``instructions``                  a first ``system`` message
``input`` (string)                one ``user`` message
``input`` (items)                 messages: message items keep their role; ``function_call``
                                  items become assistant ``tool_calls``;
                                  ``function_call_output`` items become ``tool`` messages;
                                  content parts ``input_text``/``output_text`` -> ``text``,
                                  ``input_image`` (URL) -> ``image_url``, ``input_file`` ->
                                  ``file``, ``input_audio`` -> ``input_audio``
``max_output_tokens``             ``max_tokens``
``text.format`` json_schema       ``response_format`` ``{"type": "json_schema", ...}``
``text.format`` json_object       ``response_format`` ``{"type": "json_object"}``
``text.verbosity``                ``verbosity``
``reasoning.effort``              ``reasoning_effort``
``tools`` (function, custom)      ``tools`` (``{"type": "function", "function": {...}}``)
``tool_choice``                   ``tool_choice`` (function name forms converted)
model, temperature, top_p, ...    same name
================================  ======================================================

What has no Chat Completions equivalent and changes what the model sees (``previous_response_id``,
``conversation``, ``prompt`` templates, hosted tools such as ``web_search``/``file_search``,
item references, images given by file id...) makes the line a skipped line whose reason names
the field. Operational settings with no equivalent (``truncation: auto``, ``include``,
``background``, ``reasoning.summary``, reasoning items in the input...) are dropped and listed
in the exchange's ``metadata["conversion_notes"]``.

Response (``object: response``) to :class:`~migrate_eval.core.records.Response`: ``output_text``
parts of message items are the text, ``refusal`` parts the refusal, ``function_call`` items
the tool calls, ``usage`` input/output tokens (with cached and reasoning tokens) the usage.
``status: incomplete`` maps to finish reason ``length`` (max_output_tokens) or
``content_filter``; ``failed``/``cancelled`` responses and a non-null ``error`` are logged
errors.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from migrate_eval.core.records import Response, ToolCall, usage_from_dict
from migrate_eval.ingest._common import (
    BAD_RESPONSE,
    INVALID_VALUE,
    MISSING_FIELD,
    UNSUPPORTED,
    LineContext,
    Logged,
    RecordError,
    error_text,
    join,
    validation_field,
    validation_reason,
    wrong_type,
)

# Same name and meaning in both APIs.
_SAME = (
    "model",
    "temperature",
    "top_p",
    "top_logprobs",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "store",
    "metadata",
    "parallel_tool_calls",
    "stream",
)
# These change the conversation the model sees: no faithful conversion.
_UNCONVERTIBLE = {
    "previous_response_id": "continues a stored response the log does not contain",
    "conversation": "continues a stored conversation the log does not contain",
    "prompt": "uses a stored prompt template the log does not contain",
    "context_management": "server-side context management has no Chat Completions equivalent",
}
# Operational settings without an equivalent: dropped with a note when set to a non-default.
_DROPPED_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "truncation": (None, "disabled"),
    "background": (None, False),
    "max_tool_calls": (None,),
    "stream_options": (None,),
    "moderation": (None,),
}
_HANDLED = frozenset(
    {*_SAME, *_UNCONVERTIBLE, *_DROPPED_DEFAULTS, "include", "input", "instructions"}
    | {"max_output_tokens"}
    | {"text", "reasoning", "tools", "tool_choice"}
)
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text"})


def looks_like_responses_request(body: dict[str, Any]) -> bool:
    """A Responses API request body (``input``/``instructions``, no ``messages``)."""
    return "messages" not in body and ("input" in body or "instructions" in body)


def chat_request_from_responses(
    body: Any, path: str, ctx: LineContext
) -> tuple[dict[str, Any], list[str]]:
    """Convert a Responses API request body; returns the Chat Completions request and the
    conversion notes (settings dropped). Raises RecordError for what cannot be converted."""
    if not isinstance(body, dict):
        raise wrong_type(path, "a request object", body)
    notes: list[str] = []
    for key, why in _UNCONVERTIBLE.items():
        if body.get(key) is not None:
            raise RecordError(join(path, key), UNSUPPORTED, why)
    out: dict[str, Any] = {}
    for key in _SAME:
        if key in body and body[key] is not None:
            out[key] = body[key]
    model = out.get("model")
    if model is None:
        out["model"] = ctx.model_fallback
    elif not isinstance(model, str):
        raise wrong_type(join(path, "model"), "a string", model)

    out["messages"] = _messages(body, path, notes, ctx)

    max_out = body.get("max_output_tokens")
    if max_out is not None:
        if isinstance(max_out, bool) or not isinstance(max_out, int):
            raise wrong_type(join(path, "max_output_tokens"), "an integer", max_out)
        out["max_tokens"] = max_out
    _text_options(body.get("text"), join(path, "text"), out)
    _reasoning(body.get("reasoning"), join(path, "reasoning"), out, notes)
    tools = body.get("tools")
    if tools is not None:
        converted = _tools(tools, join(path, "tools"))
        if converted:
            out["tools"] = converted
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"], join(path, "tool_choice"))

    include = body.get("include")
    if include is not None:
        if not isinstance(include, list):
            raise wrong_type(join(path, "include"), "an array", include)
        rest = [x for x in include if x != "message.output_text.logprobs"]
        if len(rest) < len(include):
            out["logprobs"] = True
        if rest:
            notes.append(
                f"{join(path, 'include')}={rest!r}: no Chat Completions equivalent, dropped"
            )
    for key, defaults in _DROPPED_DEFAULTS.items():
        value = body.get(key)
        if value not in defaults:
            notes.append(f"{join(path, key)}={value!r}: no Chat Completions equivalent, dropped")
    for key in body:
        if key not in _HANDLED:
            notes.append(f"{join(path, key)}: no Chat Completions equivalent, dropped")
    return out, notes


def _messages(
    body: dict[str, Any], path: str, notes: list[str], ctx: LineContext
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise wrong_type(join(path, "instructions"), "a string", instructions)
        if instructions:
            messages.append({"role": "system", "content": ctx.share(instructions)})
    raw = body.get("input")
    ipath = join(path, "input")
    if raw is None:
        if not messages:
            raise RecordError(ipath, MISSING_FIELD, "a Responses API request needs 'input'")
        return messages
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
        return messages
    if not isinstance(raw, list):
        raise wrong_type(ipath, "a string or an array of input items", raw)
    for i, item in enumerate(raw):
        _input_item(item, f"{ipath}[{i}]", messages, notes)
    if not messages:
        raise RecordError(ipath, INVALID_VALUE, "the input has no messages")
    return messages


def _input_item(item: Any, p: str, messages: list[dict[str, Any]], notes: list[str]) -> None:
    if not isinstance(item, dict):
        raise wrong_type(p, "an input item object", item)
    kind = item.get("type")
    if kind in (None, "message") and "role" in item:
        role = item["role"]
        if not isinstance(role, str):
            raise wrong_type(f"{p}.role", "a string", role)
        if role not in _MESSAGE_ROLES:
            raise RecordError(f"{p}.role", INVALID_VALUE, f"unknown role {role[:40]!r}")
        messages.append(_message(role, item.get("content"), f"{p}.content"))
    elif kind in ("function_call", "custom_tool_call"):
        name = item.get("name")
        if not isinstance(name, str):
            raise (
                RecordError(f"{p}.name", MISSING_FIELD, "a function call needs a name")
                if name is None
                else wrong_type(f"{p}.name", "a string", name)
            )
        call_id = item.get("call_id") or item.get("id")
        if kind == "function_call":
            args = item.get("arguments", "")
            if not isinstance(args, str):
                raise wrong_type(f"{p}.arguments", "a JSON string", args)
            call: dict[str, Any] = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
        else:
            call = {
                "id": call_id,
                "type": "custom",
                "custom": {"name": name, "input": item.get("input", "")},
            }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise (
                RecordError(f"{p}.call_id", MISSING_FIELD, "a function call output needs call_id")
                if call_id is None
                else wrong_type(f"{p}.call_id", "a string", call_id)
            )
        output = item.get("output")
        if isinstance(output, list):
            output = _text_only(output, f"{p}.output")
        elif not isinstance(output, str):
            raise wrong_type(f"{p}.output", "a string", output)
        messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
    elif kind == "reasoning":
        notes.append(f"{p}: reasoning item dropped (no Chat Completions equivalent)")
    else:
        raise RecordError(
            f"{p}.type",
            UNSUPPORTED,
            f"input item type {kind!r} has no Chat Completions equivalent",
        )


def _part_text(part: Any, p: str) -> str:
    if not isinstance(part, dict):
        raise wrong_type(p, "a content part object", part)
    text = part.get("text")
    if part.get("type") not in _TEXT_PARTS or not isinstance(text, str):
        raise RecordError(
            f"{p}.type",
            UNSUPPORTED,
            f"content part {part.get('type')!r} cannot be converted here (text only)",
        )
    return text


def _text_only(parts: list[Any], p: str) -> str:
    return "".join(_part_text(part, f"{p}[{j}]") for j, part in enumerate(parts))


def _message(role: str, content: Any, p: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": role, "content": content}
    if content is None:
        raise RecordError(p, MISSING_FIELD, f"the {role} message has no content")
    if not isinstance(content, list):
        raise wrong_type(p, "a string or an array of content parts", content)
    if role == "assistant":
        texts: list[str] = []
        refusals: list[str] = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "refusal":
                refusal = part.get("refusal")
                if not isinstance(refusal, str):
                    raise wrong_type(f"{p}[{j}].refusal", "a string", refusal)
                refusals.append(refusal)
            else:
                texts.append(_part_text(part, f"{p}[{j}]"))
        msg: dict[str, Any] = {"role": role, "content": "".join(texts) if texts else None}
        if refusals:
            msg["refusal"] = "".join(refusals)
        return msg
    if role in ("system", "developer"):
        return {"role": role, "content": _text_only(content, p)}
    return {
        "role": role,
        "content": [_content_part(part, f"{p}[{j}]") for j, part in enumerate(content)],
    }


def _content_part(part: Any, p: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise wrong_type(p, "a content part object", part)
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        text = part.get("text")
        if not isinstance(text, str):
            raise wrong_type(f"{p}.text", "a string", text)
        return {"type": "text", "text": text}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise RecordError(
                f"{p}.image_url",
                UNSUPPORTED,
                "an image given by file_id has no Chat Completions equivalent",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_url") is not None:
            raise RecordError(
                f"{p}.file_url",
                UNSUPPORTED,
                "a file given by URL has no Chat Completions equivalent",
            )
        file = {k: part[k] for k in ("file_id", "file_data", "filename") if part.get(k) is not None}
        if not file:
            raise RecordError(p, MISSING_FIELD, "an input_file part needs file_id or file_data")
        return {"type": "file", "file": file}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise wrong_type(f"{p}.input_audio", "an object", audio)
        return {"type": "input_audio", "input_audio": audio}
    raise RecordError(
        f"{p}.type", UNSUPPORTED, f"content part {kind!r} has no Chat Completions equivalent"
    )


def _text_options(text: Any, p: str, out: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise wrong_type(p, "an object", text)
    fmt = text.get("format")
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise wrong_type(f"{p}.format", "an object", fmt)
        kind = fmt.get("type")
        if kind == "json_schema":
            if not isinstance(fmt.get("schema"), dict):
                raise RecordError(
                    f"{p}.format.schema", MISSING_FIELD, "a json_schema format needs a schema"
                )
            schema: dict[str, Any] = {"name": fmt.get("name") or "response"}
            for key in ("description", "schema", "strict"):
                if fmt.get(key) is not None:
                    schema[key] = fmt[key]
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif kind == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif kind != "text":
            raise RecordError(
                f"{p}.format.type",
                UNSUPPORTED,
                f"text format {kind!r} has no Chat Completions equivalent",
            )
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]


def _reasoning(reasoning: Any, p: str, out: dict[str, Any], notes: list[str]) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise wrong_type(p, "an object", reasoning)
    if reasoning.get("effort") is not None:
        out["reasoning_effort"] = reasoning["effort"]
    for key in ("summary", "generate_summary"):
        if reasoning.get(key) is not None:
            notes.append(f"{p}.{key}={reasoning[key]!r}: no Chat Completions equivalent, dropped")


def _tools(tools: Any, p: str) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise wrong_type(p, "an array", tools)
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        tp = f"{p}[{i}]"
        if not isinstance(tool, dict):
            raise wrong_type(tp, "a tool object", tool)
        kind = tool.get("type")
        if kind == "function":
            if not isinstance(tool.get("name"), str):
                raise RecordError(f"{tp}.name", MISSING_FIELD, "a function tool needs a name")
            fn = {
                k: tool[k]
                for k in ("name", "description", "parameters", "strict")
                if tool.get(k) is not None
            }
            out.append({"type": "function", "function": fn})
        elif kind == "custom":
            custom = {
                k: tool[k] for k in ("name", "description", "format") if tool.get(k) is not None
            }
            out.append({"type": "custom", "custom": custom})
        else:
            raise RecordError(
                f"{tp}.type",
                UNSUPPORTED,
                f"hosted tool {kind!r} has no Chat Completions equivalent",
            )
    return out


def _tool_choice(choice: Any, p: str) -> Any:
    if isinstance(choice, str):
        return choice
    if not isinstance(choice, dict):
        raise wrong_type(p, "a string or an object", choice)
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind == "custom":
        return {"type": "custom", "custom": {"name": choice.get("name")}}
    if kind == "allowed_tools":
        tools = []
        for i, t in enumerate(choice.get("tools") or []):
            if not isinstance(t, dict) or t.get("type") not in ("function", "custom"):
                raise RecordError(
                    f"{p}.tools[{i}]", UNSUPPORTED, "only function and custom tools can be allowed"
                )
            tools.append({"type": t["type"], t["type"]: {"name": t.get("name")}})
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools},
        }
    raise RecordError(
        f"{p}.type", UNSUPPORTED, f"tool choice {kind!r} has no Chat Completions equivalent"
    )


_RESPONSE_FIELD = {"model": "model", "usage": "usage", "text": "output", "tool_calls": "output"}


def _function_call(item: dict[str, Any], p: str) -> ToolCall:
    name = item.get("name")
    if not isinstance(name, str):
        if name is None:
            raise RecordError(f"{p}.name", MISSING_FIELD, "a function call needs a name")
        raise wrong_type(f"{p}.name", "a string", name)
    args = item.get("arguments", item.get("input", ""))
    if args is not None and not isinstance(args, str | dict):
        raise wrong_type(f"{p}.arguments", "a JSON string", args)
    call_id = item.get("call_id") or item.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise wrong_type(f"{p}.call_id", "a string", call_id)
    return ToolCall.from_raw(name, args, call_id)


def response_from_responses_body(
    body: dict[str, Any], path: str, latency_ms: float | None = None
) -> Logged:
    """Normalise a Responses API response body (``object: response``)."""
    status = body.get("status")
    created = body.get("created_at")
    err = body.get("error")
    if err or status in ("failed", "cancelled"):
        return Logged(None, error_text(err) if err else f"response {status}", created)
    if status in ("queued", "in_progress"):
        return Logged(None, f"response {status}: the log holds no final answer", created)
    output = body.get("output")
    opath = join(path, "output")
    if output is None:
        output = []
    if not isinstance(output, list):
        raise wrong_type(opath, "an array of output items", output)
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    saw_message = False
    for i, item in enumerate(output):
        p = f"{opath}[{i}]"
        if not isinstance(item, dict):
            raise wrong_type(p, "an output item object", item)
        kind = item.get("type")
        if kind == "message":
            saw_message = True
            content = item.get("content") or []
            if isinstance(content, str):
                texts.append(content)
                continue
            if not isinstance(content, list):
                raise wrong_type(f"{p}.content", "an array of content parts", content)
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise wrong_type(f"{p}.content[{j}]", "a content part object", part)
                if part.get("type") == "output_text":
                    part_text = part.get("text")
                    if not isinstance(part_text, str):
                        raise wrong_type(f"{p}.content[{j}].text", "a string", part_text)
                    texts.append(part_text)
                elif part.get("type") == "refusal":
                    refusal = part.get("refusal")
                    if not isinstance(refusal, str):
                        raise wrong_type(f"{p}.content[{j}].refusal", "a string", refusal)
                    refusals.append(refusal)
        elif kind in ("function_call", "custom_tool_call"):
            calls.append(_function_call(item, p))
        # reasoning items and hosted-tool calls carry no answer text: not part of the response
    text: str | None = "".join(texts) if saw_message else None
    if text is None and isinstance(body.get("output_text"), str):
        text = body["output_text"]
    if status == "incomplete":
        details = body.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        finish = {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
            str(reason), str(reason) if reason else "length"
        )
    else:
        finish = "tool_calls" if calls else "stop"
    try:
        usage = usage_from_dict(body.get("usage"))
        response = Response(
            text=text,
            tool_calls=calls,
            refusal="".join(refusals) if refusals else None,
            finish_reason=finish,
            usage=usage,
            model=body.get("model"),
            latency_ms=latency_ms,
        )
    except ValidationError as e:
        raise RecordError(
            validation_field(path, e, _RESPONSE_FIELD), BAD_RESPONSE, validation_reason(e)
        ) from e
    return Logged(response, None, created)
