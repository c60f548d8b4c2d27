"""``otel-genai``: OpenTelemetry GenAI spans in OTLP JSON.

A file is either one OTLP JSON document (``{"resourceSpans": [...]}``, what an OTLP/HTTP JSON
exporter sends) or OTLP JSON lines (the collector's ``file`` exporter: one
``ExportTraceServiceRequest`` a line). Spans are found under
``resourceSpans[].scopeSpans[].spans[]`` (``instrumentationLibrarySpans`` too); attributes are
OTLP ``{key, value: {stringValue|intValue|doubleValue|boolValue|arrayValue|kvlistValue}}``.

Each span that describes a model call (it has ``gen_ai.operation.name`` or
``gen_ai.request.model``) is one record; other spans (HTTP, database, agent bookkeeping) are not
records and are not counted. A model-call span becomes one exchange:

* request messages: ``gen_ai.system_instructions`` + ``gen_ai.input.messages`` (the current
  JSON schemas: ``parts`` of type ``text``, ``tool_call``, ``tool_call_response``, ``uri``,
  ``blob``...), else the deprecated ``gen_ai.prompt.N.role/content/tool_calls...`` attributes,
  else the span events ``gen_ai.system.message``/``gen_ai.user.message``/
  ``gen_ai.assistant.message``/``gen_ai.tool.message`` (or ``gen_ai.content.prompt`` with a
  ``gen_ai.prompt`` attribute);
* tools: ``gen_ai.tool.definitions``;
* parameters: ``gen_ai.request.model``, ``temperature``, ``top_p``, ``max_tokens``,
  ``stop_sequences`` (``stop``), ``seed``, ``frequency_penalty``, ``presence_penalty``,
  ``choice.count`` (``n``); ``gen_ai.output.type: json`` is ``response_format: json_object``;
* response: ``gen_ai.output.messages`` (first choice; ``finish_reason``), else
  ``gen_ai.completion.N.*``, else ``gen_ai.choice`` events (or ``gen_ai.content.completion``);
  ``gen_ai.response.finish_reasons``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens``/``output_tokens`` (and ``cache_read.input_tokens``,
  ``reasoning.output_tokens``); latency from the span's start and end times;
* a span with status ``ERROR`` is a logged error (``status.message`` or ``error.type``);
* id: the span id; timestamp: the span start; metadata: trace and span ids, span name,
  provider (``gen_ai.provider.name`` or the deprecated ``gen_ai.system``), conversation id,
  ``service.name``.

Event-based instrumentations (opentelemetry-instrumentation-openai-v2) emit the messages as
OTLP *log records* (``resourceLogs[].scopeLogs[].logRecords[]``, event name in ``eventName``
or the ``event.name`` attribute, the message in ``body``) tied to the span by ``spanId``: a
logs file (OTLP JSON document or JSON lines) read with the traces is a side file, and each
span takes the events of its span id (in file order) as if they were span events. Log records
of a span no traces file holds are skipped records of the logs file (``no matching record``).

A span whose content was not captured (instrumentations record no content by default) is a
skipped record: there is no prompt to replay. Streaming is already assembled by the
instrumentation, so a span needs no reassembly. Embeddings and other non-chat operations are
skipped records (``unsupported endpoint``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from migrate_eval.core.errors import LineIssue
from migrate_eval.core.records import Exchange, Response, Usage
from migrate_eval.ingest._common import (
    BAD_RESPONSE,
    INVALID_JSON,
    MISSING_FIELD,
    NOT_OBJECT,
    UNSUPPORTED_ENDPOINT,
    LineContext,
    RecordError,
    SideRecord,
    as_object,
    type_name,
    wrong_type,
)
from migrate_eval.ingest._jsonl import BOM, loads, open_lines, parse_line
from migrate_eval.ingest.registry import LogFormat, get_format, never, no_line_reader

NAME = "otel-genai"
_CHAT_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})
_PARAMS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.choice.count": "n",
    "gen_ai.request.top_k": "top_k",
}
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def sniff_file(path: Path, head: bytes) -> bool:
    text = head.lstrip(BOM).lstrip()
    if not text.startswith(b"{"):
        return False
    # spans first in the file, or a collector file holding both pipelines' lines
    return b'"resourceSpans"' in text[:4096] or (
        b'"resourceLogs"' in text[:4096] and b'"resourceSpans"' in text
    )


def _value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as a plain value."""
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        values = v["arrayValue"].get("values") if isinstance(v["arrayValue"], dict) else None
        return [_value(x) for x in values or []]
    if "kvlistValue" in v:
        kv = v["kvlistValue"].get("values") if isinstance(v["kvlistValue"], dict) else None
        return _attributes(kv or [], "")
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _attributes(raw: Any, path: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):  # already a plain mapping (some exporters)
        return raw
    if not isinstance(raw, list):
        raise wrong_type(path, "an array of attributes", raw)
    out: dict[str, Any] = {}
    for i, kv in enumerate(raw):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise wrong_type(f"{path}[{i}]", "an attribute {key, value}", kv)
        out[kv["key"]] = _value(kv.get("value"))
    return out


def _json_attr(attrs: dict[str, Any], key: str, path: str) -> Any:
    value = attrs.get(key)
    if isinstance(value, str):
        try:
            return loads(value.encode())
        except ValueError as e:
            raise RecordError(f"{path}.{key}", INVALID_JSON, f"not JSON: {e}") from e
    return value


def _parts_message(msg: Any, path: str) -> dict[str, Any]:
    """A semconv ``ChatMessage`` ({role, parts}) as a Chat Completions message."""
    if not isinstance(msg, dict):
        raise wrong_type(path, "a message object", msg)
    role = msg.get("role")
    if not isinstance(role, str):
        raise RecordError(f"{path}.role", MISSING_FIELD, "a message needs a 'role'")
    parts = msg.get("parts")
    if parts is None and "content" in msg:  # older, Chat-Completions-like shape
        out = {k: v for k, v in msg.items() if k in ("role", "content", "tool_calls", "name")}
        if "tool_call_id" in msg or ("id" in msg and role == "tool"):
            out["tool_call_id"] = msg.get("tool_call_id", msg.get("id"))
        return out
    if not isinstance(parts, list):
        raise wrong_type(f"{path}.parts", "an array of parts", parts)
    texts: list[str] = []
    content: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    tool_response: tuple[Any, Any] | None = None
    for j, part in enumerate(parts):
        p = f"{path}.parts[{j}]"
        if not isinstance(part, dict):
            raise wrong_type(p, "a part object", part)
        kind = part.get("type")
        if kind == "text":
            text = part.get("content")
            if not isinstance(text, str):
                raise wrong_type(f"{p}.content", "a string", text)
            texts.append(text)
            content.append({"type": "text", "text": text})
        elif kind == "tool_call":
            args = part.get("arguments")
            calls.append(
                {
                    "id": part.get("id"),
                    "type": "function",
                    "function": {
                        "name": part.get("name"),
                        "arguments": args if isinstance(args, str) else _dumps(args or {}),
                    },
                }
            )
        elif kind == "tool_call_response":
            tool_response = (part.get("id"), part.get("response", part.get("result")))
        elif kind == "uri" and part.get("modality") == "image":
            content.append({"type": "image_url", "image_url": {"url": part.get("uri")}})
        elif kind == "blob" and part.get("modality") == "image":
            mime = part.get("mime_type") or "image/png"
            url = f"data:{mime};base64,{part.get('content', '')}"
            content.append({"type": "image_url", "image_url": {"url": url}})
        # reasoning parts and unknown parts carry no prompt content
    if role == "tool" or tool_response is not None:
        call_id, result = tool_response if tool_response else (msg.get("id"), "".join(texts))
        return {
            "role": "tool",
            "tool_call_id": call_id,
            "content": result if isinstance(result, str) else _dumps(result),
        }
    out = {"role": role}
    if len(content) == len(texts):
        out["content"] = "".join(texts) if texts or not calls else None
    else:
        out["content"] = content
    if calls:
        out["tool_calls"] = calls
    if isinstance(msg.get("name"), str):
        out["name"] = msg["name"]
    return out


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _indexed(attrs: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The deprecated ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` attributes."""
    by_index: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        m = _INDEXED.match(key)
        if m is None or m.group(1) != kind:
            continue
        by_index.setdefault(int(m.group(2)), {})[m.group(3)] = value
    out: list[dict[str, Any]] = []
    for _, fields in sorted(by_index.items()):
        msg: dict[str, Any] = {
            "role": fields.get("role", "user" if kind == "prompt" else "assistant")
        }
        if "content" in fields:
            msg["content"] = fields["content"]
        calls: dict[int, dict[str, Any]] = {}
        for key, value in fields.items():
            m = re.match(r"^tool_calls\.(\d+)\.(name|arguments|id)$", key)
            if m:
                calls.setdefault(int(m.group(1)), {})[m.group(2)] = value
        if calls:
            msg["tool_calls"] = [
                {
                    "id": c.get("id"),
                    "type": "function",
                    "function": {"name": c.get("name"), "arguments": c.get("arguments", "")},
                }
                for _, c in sorted(calls.items())
            ]
            msg.setdefault("content", None)
        if "tool_call_id" in fields:
            msg["tool_call_id"] = fields["tool_call_id"]
        if "finish_reason" in fields:
            msg["finish_reason"] = fields["finish_reason"]
        out.append(msg)
    return out


def _event_messages(
    events: list[dict[str, Any]], path: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages and choices from the deprecated span events."""
    messages: list[dict[str, Any]] = []
    choices: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        name = event.get("name")
        attrs = _attributes(event.get("attributes"), f"{path}[{i}].attributes")
        if name == "gen_ai.content.prompt" and "gen_ai.prompt" in attrs:
            prompt = _json_attr(attrs, "gen_ai.prompt", f"{path}[{i}].attributes")
            if isinstance(prompt, list):
                messages.extend(m for m in prompt if isinstance(m, dict))
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in attrs:
            completion = _json_attr(attrs, "gen_ai.completion", f"{path}[{i}].attributes")
            if isinstance(completion, list):
                choices.extend({"message": m} for m in completion if isinstance(m, dict))
        elif name in _EVENT_ROLES:
            body = _event_body(attrs, f"{path}[{i}].attributes")
            msg: dict[str, Any] = {"role": body.get("role") or _EVENT_ROLES[name]}
            msg["content"] = body.get("content")
            for key in ("tool_calls", "tool_call_id", "name"):
                if body.get(key) is not None:
                    msg[key] = body[key]
            if msg["role"] == "tool" and "tool_call_id" not in msg and body.get("id"):
                msg["tool_call_id"] = body["id"]
            messages.append(msg)
        elif name == "gen_ai.choice":
            body = _event_body(attrs, f"{path}[{i}].attributes")
            message = as_object(body.get("message"))
            message = {"role": "assistant", **message}
            if "content" not in message and "content" in body:
                message["content"] = body["content"]
            choices.append({"message": message, "finish_reason": body.get("finish_reason")})
    return messages, choices


def _event_body(attrs: dict[str, Any], path: str) -> dict[str, Any]:
    body = attrs
    for key in ("gen_ai.event.content", "event.body", "body"):
        if key in attrs:
            value = _json_attr(attrs, key, path)
            if isinstance(value, dict):
                body = {**attrs, **value}
    for key in ("tool_calls", "message"):
        value = body.get(key)
        if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
            body = {**body, key: _json_attr(body, key, path)}
    return body


def _nanos(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _messages_from_semconv(attrs: dict[str, Any], path: str) -> list[dict[str, Any]] | None:
    raw = _json_attr(attrs, "gen_ai.input.messages", path)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise wrong_type(f"{path}.gen_ai.input.messages", "an array of messages", raw)
    messages = [_parts_message(m, f"{path}.gen_ai.input.messages[{i}]") for i, m in enumerate(raw)]
    system = _json_attr(attrs, "gen_ai.system_instructions", path)
    if isinstance(system, list):
        text = "".join(
            p.get("content", "") for p in system if isinstance(p, dict) and p.get("type") == "text"
        )
        messages.insert(0, {"role": "system", "content": text})
    elif isinstance(system, str):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _tools(attrs: dict[str, Any], path: str) -> list[dict[str, Any]] | None:
    raw = _json_attr(attrs, "gen_ai.tool.definitions", path)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise wrong_type(f"{path}.gen_ai.tool.definitions", "an array of tools", raw)
    tools = []
    for t in raw:
        if not isinstance(t, dict):
            continue
        if "function" in t:
            tools.append(t)
            continue
        fn = {k: t[k] for k in ("name", "description", "parameters", "strict") if k in t}
        tools.append({"type": "function", "function": fn})
    return tools


def _response(
    attrs: dict[str, Any], choices: list[dict[str, Any]], latency: float | None, path: str
) -> Response | None:
    output = _json_attr(attrs, "gen_ai.output.messages", path)
    message: dict[str, Any] | None = None
    finish = None
    if isinstance(output, list) and output:
        first = output[0]
        message = _parts_message(first, f"{path}.gen_ai.output.messages[0]")
        finish = first.get("finish_reason") if isinstance(first, dict) else None
    elif choices:
        message = choices[0].get("message") or {}
        finish = choices[0].get("finish_reason") or message.pop("finish_reason", None)
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if finish is None and isinstance(reasons, list) and reasons:
        finish = reasons[0]
    elif finish is None and isinstance(reasons, str):
        finish = reasons
    usage = None
    if (
        "gen_ai.usage.input_tokens" in attrs
        or "gen_ai.usage.output_tokens" in attrs
        or ("gen_ai.usage.prompt_tokens" in attrs)
    ):
        inp = attrs.get("gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens"))
        out = attrs.get("gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens"))
        usage = Usage(
            prompt_tokens=inp,
            completion_tokens=out,
            total_tokens=(inp + out) if isinstance(inp, int) and isinstance(out, int) else None,
            cached_tokens=attrs.get("gen_ai.usage.cache_read.input_tokens"),
            reasoning_tokens=attrs.get("gen_ai.usage.reasoning.output_tokens"),
        )
    if message is None:
        return None
    if finish == "tool_call":
        finish = "tool_calls"
    try:
        response = Response.from_chat_completion(
            {"choices": [{"message": message, "finish_reason": finish}]}, latency
        )
    except (ValueError, ValidationError) as e:
        raise RecordError(f"{path}.gen_ai.output.messages", BAD_RESPONSE, str(e)) from e
    response.usage = usage
    model = attrs.get("gen_ai.response.model")
    response.model = model if isinstance(model, str) else None
    return response


_LANGFUSE_ATTRS = {
    "langfuse.observation.input": "input",
    "langfuse.observation.output": "output",
    "langfuse.observation.model.name": "model",
    "langfuse.observation.model.parameters": "modelParameters",
    "langfuse.observation.usage_details": "usageDetails",
    "langfuse.observation.cost_details": "costDetails",
    "langfuse.observation.completion_start_time": "completionStartTime",
    "langfuse.observation.level": "level",
    "langfuse.observation.status_message": "statusMessage",
    "langfuse.observation.prompt.name": "promptName",
}


def _iso(nanos: int | None) -> str | None:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC).isoformat() if nanos else None


def _langfuse_span(
    span: dict[str, Any], attrs: dict[str, Any], path: str, ctx: LineContext
) -> Exchange | None:
    """A span of the Langfuse SDK (v3+, built on OpenTelemetry: ``langfuse.observation.*``
    attributes; Source: langfuse/langfuse-python, langfuse/_client/attributes.py) read as the
    Langfuse observation it stands for, Langfuse's SDK defaults dropped the same way; None for
    observations other than generations (spans, events, tools...)."""
    if str(attrs.get("langfuse.observation.type")).lower() != "generation":
        return None
    record: dict[str, Any] = {
        "id": span.get("spanId"),
        "traceId": span.get("traceId"),
        "type": "GENERATION",
        "name": span.get("name"),
        "startTime": _iso(_nanos(span.get("startTimeUnixNano"))),
        "endTime": _iso(_nanos(span.get("endTimeUnixNano"))),
    }
    for key, name in _LANGFUSE_ATTRS.items():
        if key in attrs:
            record[name] = attrs[key]
    if "model" not in record and isinstance(attrs.get("gen_ai.request.model"), str):
        record["model"] = attrs["gen_ai.request.model"]
    prefix = "langfuse.observation.metadata."
    record["metadata"] = {k[len(prefix) :]: v for k, v in attrs.items() if k.startswith(prefix)}
    status = as_object(span.get("status"))
    if status.get("code") in (2, "STATUS_CODE_ERROR", "ERROR"):
        record["level"] = "ERROR"
        record.setdefault("statusMessage", status.get("message"))
    try:  # through the registry: formats do not import each other
        exchange = get_format("langfuse").reader(record, ctx)
    except RecordError as e:
        e.field = f"{path}.attributes.langfuse.observation.{e.field}"
        raise
    exchange.metadata.setdefault("span_id", span.get("spanId"))
    return exchange


_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_CONTENT_ATTRIBUTES = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
)


def span_exchange(
    span: dict[str, Any], resource: dict[str, Any], path: str, ctx: LineContext
) -> Exchange | None:
    """One span as an exchange; None when the span is not a model call."""
    attrs = _attributes(span.get("attributes"), f"{path}.attributes")
    if "langfuse.observation.type" in attrs:
        return _langfuse_span(span, attrs, path, ctx)
    operation = attrs.get("gen_ai.operation.name")
    if operation is None and "gen_ai.request.model" not in attrs:
        return None
    apath = f"{path}.attributes"
    if operation is not None and operation not in _CHAT_OPERATIONS:
        raise RecordError(
            f"{apath}.gen_ai.operation.name",
            UNSUPPORTED_ENDPOINT,
            f"{operation!r} spans are not chat calls",
        )
    events = span.get("events") or []
    if not isinstance(events, list):
        raise wrong_type(f"{path}.events", "an array", events)
    span_id = span.get("spanId")
    logged_events = ctx.joined.pop(span_id, None) if isinstance(span_id, str) else None
    if logged_events is not None:  # content the instrumentation emitted as OTLP log records
        events = [*events, *logged_events.value]
    for i, event in enumerate(events):
        # the current semconv's one event a call (opentelemetry-util-genai, EVENT_ONLY): the
        # content attributes a span would carry, on the event instead
        if isinstance(event, dict) and event.get("name") == _DETAILS_EVENT:
            details = _attributes(event.get("attributes"), f"{path}.events[{i}].attributes")
            for key in _CONTENT_ATTRIBUTES:
                if key in details:
                    attrs.setdefault(key, details[key])
    event_messages, choices = _event_messages(events, f"{path}.events")
    messages = _messages_from_semconv(attrs, apath)
    if messages is None:
        messages = _indexed(attrs, "prompt") or event_messages
    if not choices:
        choices = [
            {"message": m, "finish_reason": m.pop("finish_reason", None)}
            for m in _indexed(attrs, "completion")
        ]
    if not messages:
        raise RecordError(
            f"{apath}.gen_ai.input.messages",
            MISSING_FIELD,
            "the span holds no prompt (content capture was off, or the instrumentation "
            "emitted the content as OTLP log records: read the logs export, resourceLogs, "
            "together with the traces): nothing to replay",
        )
    model = attrs.get("gen_ai.request.model")
    request: dict[str, Any] = {
        "model": model if isinstance(model, str) else ctx.model_fallback,
        "messages": messages,
    }
    for key, name in _PARAMS.items():
        if key in attrs:
            request[name] = attrs[key]
    stop = attrs.get("gen_ai.request.stop_sequences")
    if stop:
        request["stop"] = stop
    tools = _tools(attrs, apath)
    if tools:
        request["tools"] = tools
    if attrs.get("gen_ai.output.type") == "json":
        request["response_format"] = {"type": "json_object"}
    for key in ("gen_ai.openai.request.response_format", "gen_ai.request.response_format"):
        fmt = attrs.get(key)
        if fmt in ("json_object", "text"):
            request["response_format"] = {"type": fmt}
    if "gen_ai.request.stream" in attrs:
        request["stream"] = bool(attrs["gen_ai.request.stream"])

    start, end = _nanos(span.get("startTimeUnixNano")), _nanos(span.get("endTimeUnixNano"))
    latency = (end - start) / 1e6 if start and end and end >= start else None
    status = as_object(span.get("status"))
    code = status.get("code")
    error = None
    response = None
    if code in (2, "STATUS_CODE_ERROR", "ERROR"):
        error = str(status.get("message") or attrs.get("error.type") or "error")
        if attrs.get("error.type") and status.get("message"):
            error = f"{attrs['error.type']}: {status['message']}"
    else:
        response = _response(attrs, choices, latency, apath)
    metadata: dict[str, Any] = {
        k: v
        for k, v in {
            "trace_id": span.get("traceId"),
            "span_id": span.get("spanId"),
            "span_name": span.get("name"),
            "provider": attrs.get("gen_ai.provider.name", attrs.get("gen_ai.system")),
            "conversation_id": attrs.get("gen_ai.conversation.id"),
            "response_id": attrs.get("gen_ai.response.id"),
            "service": resource.get("service.name"),
            "operation": operation,
        }.items()
        if v is not None
    }
    if logged_events is not None:
        metadata["content_from"] = logged_events.file
    return Exchange(
        id=span_id if isinstance(span_id, str) and span_id else ctx.default_id(),
        source=ctx.source(),
        timestamp=datetime.fromtimestamp(start / 1e9, tz=UTC) if start else None,
        request=request,
        response=response,
        error=error,
        metadata=metadata,
    )


def _spans(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """(span, resource attributes, field path) for every span of an export request."""
    resource_spans = doc.get("resourceSpans")
    if not isinstance(resource_spans, list):
        raise wrong_type("resourceSpans", "an array", resource_spans)
    for i, rs in enumerate(resource_spans):
        if not isinstance(rs, dict):
            raise wrong_type(f"resourceSpans[{i}]", "an object", rs)
        res = as_object(rs.get("resource"))
        resource = _attributes(res.get("attributes"), f"resourceSpans[{i}].resource.attributes")
        scopes = rs.get("scopeSpans", rs.get("instrumentationLibrarySpans")) or []
        for j, ss in enumerate(scopes):
            spans = ss.get("spans") if isinstance(ss, dict) else None
            for k, span in enumerate(spans or []):
                yield span, resource, f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"


def _read_request(
    doc: Any, ctx: LineContext, name: str, line: int, ordinal: list[int], by_ordinal: bool
) -> Iterator[Exchange | LineIssue]:
    if not isinstance(doc, dict):
        yield LineIssue(name, line, "", f"{NOT_OBJECT}: got {type_name(doc)}")
        return
    if "resourceLogs" in doc and "resourceSpans" not in doc:
        return  # log records in a traces file: indexed before the spans were read
    try:
        spans = list(_spans(doc))
    except RecordError as e:
        yield e.issue(name, line)
        return
    for span, resource, path in spans:
        if not isinstance(span, dict):
            continue
        ordinal[0] += 1
        ctx.line = ordinal[0] if by_ordinal else line
        try:
            exchange = span_exchange(span, resource, path, ctx)
        except RecordError as e:
            yield e.issue(name, ctx.line)
            continue
        except ValueError as e:
            yield LineIssue(name, ctx.line, path, f"{BAD_RESPONSE}: {e}")
            continue
        if exchange is not None:
            yield exchange


def read_file(path: Path, ctx: LineContext) -> Iterator[Exchange | LineIssue]:
    """Every model-call span of an OTLP JSON document or OTLP JSON lines file."""
    name = str(path)
    fh = open_lines(path)
    try:
        first = fh.readline()
        try:
            doc = parse_line(first, True)
            lines_mode = True
        except RecordError:
            lines_mode = False
        ordinal = [0]
        if not lines_mode:  # one (pretty-printed) document
            raw = first + fh.read()
            try:
                doc = parse_line(raw, True)
            except RecordError as e:
                yield e.issue(name, 1)
                return
            yield from _read_request(doc, ctx, name, 1, ordinal, True)
            return
        if b'"resourceLogs"' in first or _has_log_lines(path):
            yield from _index_log_lines(path, ctx)
        yield from _read_request(doc, ctx, name, 1, ordinal, False)
        lineno = 1
        try:
            for lineno, raw in enumerate(fh, 2):
                if raw.isspace():
                    continue
                try:
                    doc = parse_line(raw, False)
                except RecordError as e:
                    yield e.issue(name, lineno)
                    continue
                yield from _read_request(doc, ctx, name, lineno, ordinal, False)
        except EOFError:
            yield LineIssue(
                name, lineno + 1, "", "truncated file: the compressed stream ends early"
            )
    finally:
        fh.close()


# ---------------------------------------------------------------- OTLP log records


def sniff_logs_file(path: Path, head: bytes) -> bool:
    text = head.lstrip(BOM).lstrip()
    return (
        text.startswith(b"{")
        and b'"resourceLogs"' in text[:4096]
        and b'"resourceSpans"' not in text  # both pipelines in one file: a traces file
    )


def _log_event(record: dict[str, Any], path: str) -> dict[str, Any] | None:
    """A GenAI event log record as the span event it stands for (name + plain attributes,
    the body's fields among them); None for other log records."""
    attrs = _attributes(record.get("attributes"), f"{path}.attributes")
    name = record.get("eventName") or attrs.get("event.name")
    if not isinstance(name, str) or not name.startswith("gen_ai."):
        return None
    body = _value(record.get("body"))
    if isinstance(body, str):
        try:
            parsed = loads(body.encode())
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else {"content": body}
    if isinstance(body, dict):
        attrs = {**attrs, **body}
    return {"name": name, "attributes": attrs}


def _log_records(doc: Any, line: int) -> Iterator[tuple[str, Any] | LineIssue | None]:
    if not isinstance(doc, dict):
        yield LineIssue("", line, "", f"{NOT_OBJECT}: got {type_name(doc)}")
        return
    resource_logs = doc.get("resourceLogs")
    if not isinstance(resource_logs, list):
        yield LineIssue("", line, "resourceLogs", "wrong type: expected an array")
        return
    for i, rl in enumerate(resource_logs):
        scopes = rl.get("scopeLogs", []) if isinstance(rl, dict) else []
        for j, sl in enumerate(scopes or []):
            records = sl.get("logRecords", []) if isinstance(sl, dict) else []
            for k, record in enumerate(records or []):
                path = f"resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]"
                if not isinstance(record, dict):
                    continue
                try:
                    event = _log_event(record, path)
                except RecordError as e:
                    yield LineIssue("", line, e.field, e.reason)
                    continue
                if event is None:
                    continue  # not a GenAI event: not a record
                span_id = record.get("spanId")
                if not isinstance(span_id, str) or not span_id:
                    yield LineIssue(
                        "",
                        line,
                        f"{path}.spanId",
                        f"{MISSING_FIELD}: the {event['name']} log record names no span, so "
                        "no model call can be given its content",
                    )
                    continue
                yield span_id, event


def _has_log_lines(path: Path) -> bool:
    """Whether a traces file in JSON lines also holds log-record lines."""
    fh = open_lines(path)
    try:
        return any(b'"resourceLogs"' in raw for raw in fh)
    except EOFError:
        return False
    finally:
        fh.close()


def _index_log_lines(path: Path, ctx: LineContext) -> Iterator[LineIssue]:
    """The log-record lines of a traces file (the collector's file exporter writing both
    pipelines to one file), put in ``ctx.joined`` before any span is read; yields the issues
    of bad log records (each one counted record)."""
    name = str(path)
    fh = open_lines(path)
    try:
        for n, raw in enumerate(fh, 1):
            if b'"resourceLogs"' not in raw:
                continue
            try:
                doc = parse_line(raw, n == 1)
            except RecordError:
                continue  # reported when the line is read as a span line
            if not isinstance(doc, dict) or "resourceSpans" in doc:
                continue
            for item in _log_records(doc, n):
                if isinstance(item, LineIssue):
                    yield LineIssue(name, item.line, item.field, item.reason)
                elif item is not None:
                    key, event = item
                    prior = ctx.joined.get(key)
                    if isinstance(prior, SideRecord) and isinstance(prior.value, list):
                        prior.value.append(event)
                    else:
                        ctx.joined[key] = SideRecord(name, n, [event])
    except EOFError:
        pass
    finally:
        fh.close()


def read_logs_file(path: Path, ctx: LineContext) -> Iterator[tuple[str, Any] | LineIssue]:
    """The GenAI event log records of an OTLP JSON logs document or OTLP JSON lines file
    (``resourceLogs[].scopeLogs[].logRecords[]``), keyed by their span id."""
    name = str(path)
    fh = open_lines(path)
    try:
        raw = fh.read()
    except EOFError:
        yield LineIssue(name, 1, "", "truncated file: the compressed stream ends early")
        return
    finally:
        fh.close()
    try:
        docs: list[tuple[int, Any]] = [(1, parse_line(raw, True))]
    except RecordError:
        docs = []
        for n, text in enumerate(raw.splitlines(), 1):
            if not text.strip():
                continue
            try:
                docs.append((n, parse_line(text, n == 1)))
            except RecordError as e:
                yield e.issue(name, n)
    for n, doc in docs:
        ctx.line = n
        for item in _log_records(doc, n):
            if isinstance(item, LineIssue):
                yield LineIssue(name, item.line, item.field, item.reason)
            elif item is not None:
                yield item


FORMAT = LogFormat(
    name=NAME,
    sniff=never,
    reader=no_line_reader,
    description="OpenTelemetry GenAI spans, OTLP JSON or OTLP JSON lines (gen_ai.* attributes)",
    priority=40,
    sniff_file=sniff_file,
    read_file=read_file,
    sniff_index_file=sniff_logs_file,
    read_index_file=read_logs_file,
)
