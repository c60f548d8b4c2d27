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

from migrate_eval.ingest._common import (
    INVALID_JSON,
    MISSING_FIELD,
    LineContext,
    RecordError,
    check_chat_request,
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
from migrate_eval.ingest.registry import LogFormat
from migrate_eval.ingest.responses_api import (
    chat_request_from_responses,
    looks_like_responses_request,
)
from migrate_eval.records import Exchange

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


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="request/response pairs as JSON Lines ({'request': ..., 'response': ...})",
    priority=20,
)
