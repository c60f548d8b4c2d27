"""Normalise a logged response, whatever shape the log kept it in, into a
:class:`~migrate_eval.core.records.Response` (or a logged error).

Accepted shapes:

* a Chat Completions body (``choices``), normalised by
  :meth:`Response.from_chat_completion <migrate_eval.core.records.Response.from_chat_completion>`;
  with ``n > 1`` the first choice is the response and the others are kept, normalised, in
  :attr:`Logged.other_choices`;
* a Responses API body (``output``), converted by :mod:`migrate_eval.ingest.responses_api`;
* streamed Chat Completions chunks (a list of ``chat.completion.chunk`` objects, or the raw
  server-sent-events text), assembled into one answer; Responses API event streams (their
  ``response.completed`` event);
* an HTTP wrapper ``{"status_code": ..., "body": ...}`` (a proxy's log, a Batch output line's
  ``response``); a non-2xx status is a logged error;
* an error body ``{"error": {...}}``: a logged error, kept as such.

Malformed bodies raise :class:`~migrate_eval.ingest._common.RecordError` naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from migrate_eval.core.records import Response
from migrate_eval.ingest._common import (
    BAD_RESPONSE,
    INVALID_JSON,
    MISSING_FIELD,
    NOTHING,
    Logged,
    RecordError,
    error_text,
    join,
    validation_field,
    validation_reason,
    wrong_type,
)
from migrate_eval.ingest.responses_api import response_from_responses_body

# Where a field of Response comes from in a Chat Completions body.
_CHAT_FIELD = {
    "text": "choices[0].message.content",
    "refusal": "choices[0].message.refusal",
    "tool_calls": "choices[0].message.tool_calls",
    "finish_reason": "choices[0].finish_reason",
    "model": "model",
    "usage": "usage",
}


def check_tool_calls(raw: Any, path: str) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise wrong_type(path, "an array", raw)
    for i, tc in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(tc, dict):
            raise wrong_type(p, "a tool call object", tc)
        fn = tc.get("function")
        if not isinstance(fn, dict):
            if fn is None:
                raise RecordError(f"{p}.function", MISSING_FIELD, "a tool call needs 'function'")
            raise wrong_type(f"{p}.function", "an object", fn)
        name = fn.get("name")
        if not isinstance(name, str):
            if name is None:
                raise RecordError(f"{p}.function.name", MISSING_FIELD, "a tool call needs a name")
            raise wrong_type(f"{p}.function.name", "a string", name)
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str | dict):
            raise wrong_type(f"{p}.function.arguments", "a JSON string", args)
        call_id = tc.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise wrong_type(f"{p}.id", "a string", call_id)


def _check_message(message: Any, path: str) -> None:
    if not isinstance(message, dict):
        if message is None:
            raise RecordError(path, MISSING_FIELD, "the choice has no 'message'")
        raise wrong_type(path, "a message object", message)
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise wrong_type(f"{path}.content", "a string or an array of content parts", content)
    check_tool_calls(message.get("tool_calls"), f"{path}.tool_calls")


def _chat_completion_problem(body: dict[str, Any], path: str) -> None:
    """Raise a RecordError naming the first malformed field of a Chat Completions body."""
    choices = body.get("choices")
    cpath = join(path, "choices")
    if not isinstance(choices, list):
        raise wrong_type(cpath, "an array", choices)
    if not choices:
        raise RecordError(cpath, BAD_RESPONSE, "the response has no choices")
    first = choices[0]
    if not isinstance(first, dict):
        raise wrong_type(f"{cpath}[0]", "a choice object", first)
    _check_message(first.get("message"), f"{cpath}[0].message")


def chat_completion(body: dict[str, Any], path: str, latency_ms: float | None = None) -> Logged:
    """A Chat Completions response body (``object: chat.completion``)."""
    try:
        # Fast path: the records' own normalisation checks the structure; on failure the
        # body is examined again to name the exact field.
        response = Response.from_chat_completion(body, latency_ms=latency_ms)
    except ValidationError as e:
        _chat_completion_problem(body, path)
        raise RecordError(
            validation_field(path, e, _CHAT_FIELD), BAD_RESPONSE, validation_reason(e)
        ) from e
    except (ValueError, TypeError, AttributeError) as e:
        _chat_completion_problem(body, path)
        raise RecordError(join(path, "choices"), BAD_RESPONSE, str(e)) from e
    choices = body["choices"]  # a non-empty list of objects: from_chat_completion checked it
    if not isinstance(choices[0].get("message"), dict):
        _chat_completion_problem(body, path)
    others: list[dict[str, Any]] | None = None
    if len(choices) > 1:
        cpath = join(path, "choices")
        others = []
        for i, choice in enumerate(choices[1:], start=1):
            if not isinstance(choice, dict):
                raise wrong_type(f"{cpath}[{i}]", "a choice object", choice)
            _check_message(choice.get("message"), f"{cpath}[{i}].message")
            try:
                alt = Response.from_chat_completion({"choices": [choice]})
            except ValueError as e:
                raise RecordError(f"{cpath}[{i}]", BAD_RESPONSE, str(e)) from e
            others.append(alt.model_dump(mode="json", exclude_none=True, exclude_defaults=True))
    return Logged(response, None, body.get("created"), others)


class _ChoiceAcc:
    """One choice being assembled from streamed deltas."""

    __slots__ = ("calls", "finish", "refusal", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: Any = None

    def add(self, choice: dict[str, Any], path: str) -> None:
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise wrong_type(f"{path}.delta", "an object", delta)
        if isinstance(delta.get("content"), str):
            self.text.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
        tool_calls = delta.get("tool_calls") or []
        if not isinstance(tool_calls, list):
            raise wrong_type(f"{path}.delta.tool_calls", "an array", tool_calls)
        for j, tc in enumerate(tool_calls):
            if not isinstance(tc, dict):
                raise wrong_type(f"{path}.delta.tool_calls[{j}]", "an object", tc)
            entry = self.calls.setdefault(
                tc.get("index") or 0,
                {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
            )
            if tc.get("id"):
                entry["id"] = tc["id"]
            fn = tc.get("function") or {}
            if isinstance(fn, dict):
                if fn.get("name"):
                    entry["function"]["name"] = fn["name"]
                if isinstance(fn.get("arguments"), str):
                    entry["function"]["arguments"] += fn["arguments"]
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]

    def choice(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) if self.text else None,
        }
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [self.calls[k] for k in sorted(self.calls)]
        return {"index": index, "message": message, "finish_reason": self.finish}


def _chunk_body(chunks: list[Any], path: str) -> dict[str, Any]:
    """Assemble streamed ``chat.completion.chunk`` objects into one Chat Completions body
    (every choice index, for ``n > 1``)."""
    choices: dict[int, _ChoiceAcc] = {}
    usage: Any = None
    model: Any = None
    created: Any = None
    for i, chunk in enumerate(chunks):
        cp = f"{path}[{i}]"
        if not isinstance(chunk, dict):
            raise wrong_type(cp, "a chunk object", chunk)
        model = chunk.get("model") or model
        created = chunk.get("created") or created
        if chunk.get("usage"):
            usage = chunk["usage"]
        chunk_choices = chunk.get("choices") or []
        if not isinstance(chunk_choices, list):
            raise wrong_type(f"{cp}.choices", "an array", chunk_choices)
        for j, choice in enumerate(chunk_choices):
            if not isinstance(choice, dict):
                raise wrong_type(f"{cp}.choices[{j}]", "a choice object", choice)
            index = choice.get("index") or 0
            if not isinstance(index, int):
                raise wrong_type(f"{cp}.choices[{j}].index", "an integer", index)
            choices.setdefault(index, _ChoiceAcc()).add(choice, f"{cp}.choices[{j}]")
    if not choices:
        raise RecordError(path, BAD_RESPONSE, "the streamed response has no choices")
    return {
        "object": "chat.completion",
        "model": model,
        "created": created,
        "choices": [choices[k].choice(k) for k in sorted(choices)],
        "usage": usage,
    }


def _sse_events(text: str, path: str) -> list[Any]:
    events: list[Any] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        try:
            events.append(json.loads(data))
        except ValueError as e:
            raise RecordError(path, INVALID_JSON, f"server-sent event is not JSON: {e}") from e
    return events


def _stream(events: list[Any], path: str, latency_ms: float | None) -> Logged:
    """A list of streamed objects: Chat Completions chunks or Responses API events."""
    for event in events:
        if (
            isinstance(event, dict)
            and isinstance(event.get("error"), dict)
            and not event.get("choices")
        ):
            return Logged(None, error_text(event["error"]))
    final = [
        e
        for e in events
        if isinstance(e, dict)
        and e.get("type") in ("response.completed", "response.incomplete", "response.failed")
        and isinstance(e.get("response"), dict)
    ]
    if final:
        return response_from_responses_body(final[-1]["response"], path, latency_ms)
    if not events:
        raise RecordError(path, BAD_RESPONSE, "the streamed response has no chunks")
    logged = chat_completion(_chunk_body(events, path), path, latency_ms)
    return logged


def logged_response(value: Any, path: str, latency_ms: float | None = None) -> Logged:
    """Normalise whatever the log kept as the response (see the module docstring)."""
    if value is None:
        return NOTHING
    if isinstance(value, dict):
        if "choices" in value:
            return chat_completion(value, path, latency_ms)
        if "output" in value or value.get("object") == "response":
            return response_from_responses_body(value, path, latency_ms)
        if "body" in value and ("status_code" in value or "status" in value):
            return http_wrapper(value, path, latency_ms)
        if value.get("object") == "chat.completion.chunk":
            return _stream([value], path, latency_ms)
        err = value.get("error")
        if err:
            return Logged(None, error_text(err))
        raise RecordError(
            path,
            BAD_RESPONSE,
            "expected a chat completion ('choices'), a Responses API body ('output') or an error",
        )
    if isinstance(value, list):
        return _stream(value, path, latency_ms)
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped.startswith(("data:", "event:")):
            return _stream(_sse_events(value, path), path, latency_ms)
        if stripped.startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError as e:
                raise RecordError(
                    path, INVALID_JSON, f"the response string is not JSON: {e}"
                ) from e
            return logged_response(parsed, path, latency_ms)
    raise wrong_type(path, "a response object", value)


def http_wrapper(value: dict[str, Any], path: str, latency_ms: float | None = None) -> Logged:
    """``{"status_code": 200, "body": {...}}``: a non-2xx status is a logged error."""
    status = value.get("status_code", value.get("status"))
    spath = join(path, "status_code" if "status_code" in value else "status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        else:
            raise wrong_type(spath, "an HTTP status code", status)
    body = value.get("body")
    bpath = join(path, "body")
    ok = status is None or 200 <= status < 300
    if isinstance(body, str):
        text = body.lstrip()
        if not text:
            body = None
        elif not ok and not text.startswith("{"):
            return Logged(None, error_text(body.strip()[:500], status))
        else:
            try:
                body = json.loads(body) if text.startswith("{") else body
            except ValueError:
                if not ok:
                    return Logged(None, error_text(body.strip()[:500], status))
                raise RecordError(bpath, INVALID_JSON, "the response body is not JSON") from None
    if not ok:
        err = body.get("error") if isinstance(body, dict) else body
        return Logged(None, error_text(err, status))
    if body is None:
        raise RecordError(bpath, MISSING_FIELD, "the response has no body")
    return logged_response(body, bpath, latency_ms)
