"""``chat-jsonl``: request/response pairs, one JSON object a line.

The common shapes SDK wrappers, proxies and home-made loggers write::

    {"request": {...}, "response": {...}, "timestamp": ..., "latency_ms": ..., "metadata": {...}}

* the pair may be under ``request``/``response``, ``req``/``res`` or ``input``/``output``
  (``input`` must then hold a request object);
* the request is a Chat Completions request body, or a Responses API request body (converted,
  see :mod:`migrate_eval.ingest.responses_api`), or an HTTP wrapper whose ``body`` is one;
* the response is anything :func:`migrate_eval.ingest._responses.logged_response` accepts: a
  ``model_dump()`` of a chat completion, a Responses API body, streamed chunks, an error body,
  ``{"status_code", "body"}``; it may be absent (a request-only log);
* ``id`` (or ``custom_id``/``request_id``, else the response's ``id``) is the exchange id;
* ``timestamp``/``created_at`` (epoch seconds or milliseconds, or ISO 8601), else the
  response's ``created``; ``latency_ms``/``duration_ms``;
* metadata: the request's ``metadata`` object, then the line's ``metadata`` object, then its
  ``tags`` (under ``metadata["tags"]``);
* ``gold``/``label``: the gold answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from migrate_eval.core.records import Exchange
from migrate_eval.ingest._common import (
    CHAT_ROLES,
    INVALID_JSON,
    MISSING_FIELD,
    LineContext,
    Logged,
    RecordError,
    check_chat_request,
    error_text,
    gold_text,
    merge_metadata,
    number_or_none,
    parse_timestamp,
    record_id,
    tags_value,
    wrong_type,
)
from migrate_eval.ingest._jsonl import loads
from migrate_eval.ingest._responses import logged_response
from migrate_eval.ingest._rows import Row
from migrate_eval.ingest.registry import LogFormat
from migrate_eval.ingest.responses_api import (
    chat_request_from_responses,
    looks_like_responses_request,
)

NAME = "chat-jsonl"
_PAIRS = (("request", "response"), ("req", "res"), ("input", "output"))


def sniff(record: dict[str, Any]) -> bool:
    if "custom_id" in record and "body" in record:
        return False
    for req_key, _ in _PAIRS:
        value = record.get(req_key)
        if isinstance(value, dict):
            if req_key != "input":
                return True
            return "messages" in value or "input" in value or "body" in value
    return False


def _request(
    record: dict[str, Any], ctx: LineContext
) -> tuple[dict[str, Any], str, str, list[str]]:
    """The request (Chat Completions shape), its field path, the response key, conversion notes."""
    for req_key, res_key in _PAIRS:  # noqa: B007 - the pair found is used below
        if req_key in record:
            break
    else:
        raise RecordError(
            "request", MISSING_FIELD, "expected a 'request' object (or 'req', or 'input')"
        )
    path = req_key
    request = record[req_key]
    if isinstance(request, str) and request.lstrip().startswith("{"):
        try:
            request = loads(request.encode())
        except ValueError as e:
            raise RecordError(path, INVALID_JSON, f"the request string is not JSON: {e}") from e
    if not isinstance(request, dict):
        raise wrong_type(path, "a request object", request)
    if "messages" not in request and "input" not in request and "body" in request:
        body = request["body"]
        path = f"{path}.body"
        if isinstance(body, str):
            try:
                body = loads(body.encode())
            except ValueError as e:
                raise RecordError(path, INVALID_JSON, f"the request body is not JSON: {e}") from e
        if not isinstance(body, dict):
            raise wrong_type(path, "a request object", body)
        request = body
    if "messages" not in request and looks_like_responses_request(request):
        converted, notes = chat_request_from_responses(request, path, ctx)
        return converted, path, res_key, notes
    return check_chat_request(request, path, ctx), path, res_key, []


def read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    request, rpath, res_key, notes = _request(record, ctx)
    latency_key = "latency_ms" if "latency_ms" in record else "duration_ms"
    latency = record.get(latency_key)
    if latency is not None:
        latency = number_or_none(latency, latency_key)
    raw_response = record.get(res_key)
    logged = logged_response(raw_response, res_key, latency)
    line_error = record.get("error")
    if line_error and logged.error is None:
        # a proxy's line for a failed call: {"request": ..., "error": ..., "status_code": 429}
        # (a failed call is a logged failure, never an exchange with a baseline answer)
        status = record.get("status_code", record.get("status"))
        status = status if type(status) is int else None
        logged = Logged(None, error_text(line_error, status), logged.created)

    ts_key = "timestamp"
    ts = record.get("timestamp")
    if ts is None:
        ts_key = "created_at"
        ts = record.get("created_at")
        if ts is None:
            ts_key = f"{res_key}.created"
            ts = logged.created
    timestamp = parse_timestamp(ts, ts_key) if ts is not None else None

    request_meta = request.get("metadata")
    line_meta = record.get("metadata")
    if request_meta is None and line_meta is None:
        metadata: dict[str, Any] = {}
    else:
        metadata = merge_metadata((request_meta, f"{rpath}.metadata"), (line_meta, "metadata"))
    if "tags" in record:
        tags = tags_value(record["tags"], "tags")
        if tags is not None:
            metadata["tags"] = tags
    if notes:
        metadata["conversion_notes"] = notes
    if logged.other_choices:
        metadata["other_choices"] = logged.other_choices

    ex_id = record.get("id")
    if type(ex_id) is not str or not ex_id:
        ex_id = (
            record_id(ex_id, "id")
            or record_id(record.get("custom_id"), "custom_id")
            or record_id(record.get("request_id"), "request_id")
        )
        if ex_id is None and isinstance(raw_response, dict):
            response_id = raw_response.get("id")
            ex_id = response_id if isinstance(response_id, str) and response_id else None
    gold = record.get("gold")
    if gold is None:
        gold = record.get("label")
    return Exchange.model_validate(
        {
            "id": ex_id or ctx.default_id(),
            "source": {"file": ctx.file, "line": ctx.line, "format": ctx.format},
            "timestamp": timestamp,
            "request": request,
            "response": logged.response,
            "error": logged.error,
            "metadata": metadata,
            "gold": gold if gold is None or isinstance(gold, str) else gold_text(gold),
        }
    )


_dumps = orjson.dumps


def _fast_tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    """A logged answer's tool calls as the response column holds them (``id``, ``name``,
    ``arguments``: records.ToolCall.from_raw, for string or null arguments), or None for
    calls the full reader must read (it names what is wrong)."""
    if not calls:
        return []
    if type(calls) is not list:
        return None
    out = []
    for tc in calls:
        if type(tc) is not dict:
            return None
        fn = tc.get("function")
        if type(fn) is not dict:
            return None
        name = fn.get("name")
        call_id = tc.get("id")
        arguments = fn.get("arguments", "")
        if arguments is None:
            arguments = "{}"  # from_raw: no arguments are the empty object
        if (
            type(name) is not str
            or type(arguments) is not str
            or (call_id is not None and type(call_id) is not str)
        ):
            return None
        out.append({"id": call_id, "name": name, "arguments": arguments})
    return out


def fast_row(record: dict[str, Any], ctx: LineContext) -> Row | None:
    """The dataset row (see :mod:`migrate_eval.ingest._rows`) of the common line, built
    without :class:`~migrate_eval.core.records.Exchange`/``Response`` objects: a ``request`` object
    with ``messages``, a Chat Completions ``response`` with one choice (text or tool calls with
    string arguments), or no response. The row holds exactly what :func:`read` then ``exchange_row`` would give.

    Returns None (or raises ``ValueError``/``TypeError``) for any other line: the caller then
    reads the line again with :func:`read`, which names the field that is wrong. This function
    may have modified ``record`` by then (filled in ``request.model``), so the caller parses
    the line afresh.
    """
    request = record.get("request")
    if type(request) is not dict or record.get("error") is not None:
        return None
    # check_chat_request, for the lines it accepts (a role that is not hashable raises
    # TypeError: the slow path names it)
    messages = request.get("messages")
    if type(messages) is not list or not messages:
        return None
    for m in messages:
        if type(m) is not dict or m.get("role") not in CHAT_ROLES:
            return None
        content = m.get("content")
        if content is not None and type(content) is not str and type(content) is not list:
            return None
        tool_calls = m.get("tool_calls")
        if tool_calls is not None and type(tool_calls) is not list:
            return None
    model = request.get("model")
    if model is None:
        model = request["model"] = ctx.model_fallback
    elif type(model) is not str:
        return None
    tools = request.get("tools")
    if tools is not None and type(tools) is not list:
        return None

    latency = record["latency_ms"] if "latency_ms" in record else record.get("duration_ms")
    if latency is not None and type(latency) is not float:
        if type(latency) is not int:
            return None
        latency = float(latency)

    raw_response = record.get("response")
    created: Any = None
    response_json: bytes | None = None
    if raw_response is not None:
        if type(raw_response) is not dict:
            return None
        choices = raw_response.get("choices")
        if type(choices) is not list or len(choices) != 1:
            return None
        choice = choices[0]
        if type(choice) is not dict:
            return None
        message = choice.get("message")
        if type(message) is not dict or message.get("function_call") is not None:
            return None
        tool_calls = _fast_tool_calls(message.get("tool_calls"))
        if tool_calls is None:
            return None
        text = message.get("content")
        refusal = message.get("refusal")
        finish = choice.get("finish_reason")
        resp_model = raw_response.get("model")
        if (
            (text is not None and type(text) is not str)
            or (refusal is not None and type(refusal) is not str)
            or (finish is not None and type(finish) is not str)
            or (resp_model is not None and type(resp_model) is not str)
        ):
            return None
        u = raw_response.get("usage")
        usage: dict[str, Any] | None = None
        if type(u) is dict:  # as records.usage_from_dict
            pd = u.get("prompt_tokens_details") or u.get("input_tokens_details")
            cd = u.get("completion_tokens_details") or u.get("output_tokens_details")
            usage = {
                "prompt_tokens": u.get("prompt_tokens", u.get("input_tokens")),
                "completion_tokens": u.get("completion_tokens", u.get("output_tokens")),
                "total_tokens": u.get("total_tokens"),
                "cached_tokens": pd.get("cached_tokens") if type(pd) is dict else None,
                "reasoning_tokens": cd.get("reasoning_tokens") if type(cd) is dict else None,
            }
            for value in usage.values():
                if value is not None and type(value) is not int:
                    return None
        created = raw_response.get("created")
        response_json = _dumps(
            {
                "text": text,
                "tool_calls": tool_calls,
                "refusal": refusal,
                "finish_reason": finish,
                "usage": usage,
                "model": resp_model,
                "latency_ms": latency,
                "ttft_ms": None,
            }
        )

    ts = record.get("timestamp")
    if ts is None:
        ts = record.get("created_at")
        if ts is None:
            ts = created
    timestamp: Any
    if type(ts) is int and 0 < ts < 100_000_000_000:
        timestamp = ts * 1_000_000  # microseconds: what the Arrow column holds
    elif ts is None:
        timestamp = None
    else:
        timestamp = parse_timestamp(ts, "timestamp")

    request_meta = request.get("metadata")
    line_meta = record.get("metadata")
    if request_meta is None:
        if line_meta is None:
            metadata: dict[str, Any] = {}
        elif type(line_meta) is dict:
            metadata = line_meta
        else:
            return None
    else:
        metadata = merge_metadata((request_meta, "request.metadata"), (line_meta, "metadata"))
    if "tags" in record:
        tags = tags_value(record["tags"], "tags")
        if tags is not None:
            if metadata is line_meta:
                metadata = dict(metadata)
            metadata["tags"] = tags

    ex_id = record.get("id")
    if type(ex_id) is not str or not ex_id:
        ex_id = (
            record_id(ex_id, "id")
            or record_id(record.get("custom_id"), "custom_id")
            or record_id(record.get("request_id"), "request_id")
        )
        if ex_id is None and raw_response is not None:
            response_id = raw_response.get("id")
            ex_id = response_id if isinstance(response_id, str) and response_id else None
    gold = record.get("gold")
    if gold is None:
        gold = record.get("label")
    if gold is not None and type(gold) is not str:
        gold = gold_text(gold)
    return (
        ex_id or ctx.default_id(),
        ctx.file,
        ctx.line,
        ctx.format,
        timestamp,
        model,
        _dumps(request),
        response_json,
        None,
        _dumps(metadata) if metadata else "{}",
        gold,
    )


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="request/response pairs as JSON Lines ({'request': ..., 'response': ...})",
    priority=20,
)
