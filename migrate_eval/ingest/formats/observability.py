"""Exports of LLM observability tools: ``langfuse``, ``helicone``, ``langsmith``, ``openpipe``.

Each is read a record at a time, from JSON Lines or from a JSON document (an array, or an
object whose ``data``/``observations``/``runs`` array holds the records: see
:mod:`migrate_eval.ingest.reader`).

``langfuse`` - observations (``GET /api/public/observations`` or the UI's JSON/JSONL export),
or a single trace (``GET /api/public/traces/{id}``: ``{..., "observations": [...]}``). An
observation of ``type: GENERATION`` is one exchange: ``input`` (a messages array, an object
with ``messages`` [and ``tools``], or a prompt string), ``output`` (an assistant message, a
chat completion, or a string), ``model``, ``modelParameters`` (strings such as ``"0.7"`` are
numbers), ``usageDetails``/``usage`` (``input``/``output``/``total``, cached
``input_cached_tokens``/``cache_read_input_tokens``, ``output_reasoning_tokens``),
``startTime``/``endTime`` (latency), ``level: ERROR`` with ``statusMessage`` (a logged
error), ``metadata``, and ``name``, ``traceId``, ``promptName`` kept in the metadata. Other
observation types (``SPAN``, ``EVENT``...) are skipped records (``not this log format``).

``helicone`` - request export rows: ``request_body`` (the OpenAI request, object or JSON
string), ``response_body``, ``response_status``, ``request_id``, ``request_created_at``,
``delay_ms``/``latency``, ``request_properties``/``properties`` (the ``Helicone-Property-*``
custom properties, kept as metadata for task discovery), ``request_user_id``.

``langsmith`` - runs (``client.list_runs()`` dumps / exports): ``run_type: "llm"`` runs are
exchanges (others are skipped records): ``inputs.messages`` (OpenAI-style dicts or LangChain
serialised messages, possibly nested one list per prompt: the first prompt is used),
``outputs.generations[0][0]`` (``message``, ``text``, ``generation_info.finish_reason``) or
``outputs`` as a chat completion, ``outputs.llm_output.token_usage`` or the message's
``usage_metadata``, ``extra.invocation_params`` (model, sampling parameters, tools,
tool_choice, response_format), ``extra.metadata``, ``tags``, ``error``, ``feedback_stats``.

``openpipe`` - OpenPipe's dataset export (JSONL, the OpenAI fine-tuning chat format plus
``split`` and optional ``tool_choice``/``metadata``: the last assistant message is the
reference) and OpenPipe request logs (``reqPayload``/``respPayload``/``statusCode``/
``requestedAt``/``receivedAt``/``tags``/``errorMessage``, as the OpenPipe SDK reports them).
Assumption: these are the two shapes OpenPipe documents for exports and logged requests; a
dataset row without ``split`` is read by ``finetune-chat``, which gives the same exchange.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from migrate_eval.core.records import Exchange, Response, Usage
from migrate_eval.core.request import REQUEST_OPTIONS
from migrate_eval.ingest._common import (
    BAD_RESPONSE,
    DROPPED_PARAMS,
    DROPPED_PARAMS_WHY,
    INVALID_JSON,
    MISSING_FIELD,
    NOTHING,
    WRONG_FORMAT,
    LineContext,
    Logged,
    RecordError,
    SideRecord,
    as_object,
    check_chat_request,
    drop_filled_params,
    error_text,
    float_or_none,
    int_or_none,
    merge_metadata,
    parse_timestamp,
    record_id,
    wrong_type,
)
from migrate_eval.ingest._csv_records import (
    csv_reader,
    csv_sniffer,
    export_reader,
    export_sniffer,
)
from migrate_eval.ingest._jsonl import loads
from migrate_eval.ingest._responses import logged_response
from migrate_eval.ingest.formats import finetune_chat
from migrate_eval.ingest.registry import LogFormat

_LANGFUSE_TYPES = frozenset(
    {
        "GENERATION",
        "SPAN",
        "EVENT",
        "AGENT",
        "TOOL",
        "CHAIN",
        "RETRIEVER",
        "EMBEDDING",
        "EVALUATOR",
        "GUARDRAIL",
    }
)
_LC_ROLES = {
    "human": "user",
    "humanmessage": "user",
    "user": "user",
    "ai": "assistant",
    "aimessage": "assistant",
    "aimessagechunk": "assistant",
    "assistant": "assistant",
    "system": "system",
    "systemmessage": "system",
    "developer": "developer",
    "tool": "tool",
    "toolmessage": "tool",
    "function": "function",
    "functionmessage": "function",
    "chat": "user",
    "chatmessage": "user",
}
_SAMPLING = REQUEST_OPTIONS  # what a logging tool records beside the messages


def _maybe_json(value: Any, path: str) -> Any:
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            return loads(value.encode())
        except ValueError as e:
            raise RecordError(path, INVALID_JSON, f"not JSON: {e}") from e
    return value


def _number(value: Any) -> Any:
    """A parameter logged as a string (``"0.7"``, ``"256"``) as a number."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _latency(start: Any, end: Any) -> float | None:
    try:
        s = parse_timestamp(start, "startTime")
        e = parse_timestamp(end, "endTime")
    except RecordError:
        return None
    if s is None or e is None or e < s:
        return None
    return (e - s).total_seconds() * 1000.0


def _assistant_response(message: Any, path: str, finish: Any = None) -> Response:
    """An assistant message (OpenAI or LangChain shape) as a Response."""
    if isinstance(message, str):
        return Response(text=message, finish_reason=finish)
    if not isinstance(message, dict):
        raise wrong_type(path, "an assistant message", message)
    msg = _lc_message(message, path)
    try:
        return Response.from_chat_completion(
            {"choices": [{"message": msg, "finish_reason": finish}]}
        )
    except (ValueError, ValidationError) as e:
        raise RecordError(path, BAD_RESPONSE, str(e)) from e


def _lc_message(m: dict[str, Any], path: str) -> dict[str, Any]:
    """A LangChain serialised message (or an OpenAI one) as a Chat Completions message."""
    if "role" in m and "lc" not in m:
        return m
    kwargs = m.get("kwargs") if isinstance(m.get("kwargs"), dict) else m.get("data", m)
    if not isinstance(kwargs, dict):
        raise wrong_type(path, "a message", m)
    kind = m.get("type")
    if m.get("lc") is not None and isinstance(m.get("id"), list) and m["id"]:
        kind = m["id"][-1]
    if kind == "constructor" and isinstance(m.get("id"), list):
        kind = m["id"][-1]
    role = kwargs.get("role") if kind in ("chat", "ChatMessage") else None
    role = role or _LC_ROLES.get(str(kwargs.get("type", kind)).lower())
    if role is None:
        raise RecordError(f"{path}.type", MISSING_FIELD, f"unknown message type {kind!r}")
    out: dict[str, Any] = {"role": role, "content": kwargs.get("content")}
    extra = as_object(kwargs.get("additional_kwargs"))
    calls = kwargs.get("tool_calls") or []
    if calls and isinstance(calls, list):
        out["tool_calls"] = [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {
                    "name": c.get("name"),
                    "arguments": c["args"]
                    if isinstance(c.get("args"), str)
                    else _dumps(c.get("args") or {}),
                },
            }
            if isinstance(c, dict) and "function" not in c
            else c
            for c in calls
        ]
    elif extra.get("tool_calls"):
        out["tool_calls"] = extra["tool_calls"]
    if extra.get("function_call"):
        out["function_call"] = extra["function_call"]
    if extra.get("refusal"):
        out["refusal"] = extra["refusal"]
    if role == "tool" and kwargs.get("tool_call_id"):
        out["tool_call_id"] = kwargs["tool_call_id"]
    if kwargs.get("name") and role != "assistant":
        out["name"] = kwargs["name"]
    if out["content"] == "" and out.get("tool_calls"):
        out["content"] = None
    return out


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    inp = u.get("input", u.get("input_tokens", u.get("prompt_tokens", u.get("promptTokens"))))
    out = u.get(
        "output", u.get("output_tokens", u.get("completion_tokens", u.get("completionTokens")))
    )
    total = u.get("total", u.get("total_tokens", u.get("totalTokens")))
    cached = None
    reasoning = None
    for key in (
        "input_cached_tokens",
        "cache_read_input_tokens",
        "input_cache_read",
        "cached_tokens",
    ):
        if isinstance(u.get(key), int):
            cached = u[key]
    for key in ("output_reasoning_tokens", "output_reasoning", "reasoning_tokens"):
        if isinstance(u.get(key), int):
            reasoning = u[key]
    for details_key, target in (
        ("input_token_details", "cached"),
        ("output_token_details", "reasoning"),
        ("prompt_tokens_details", "cached"),
        ("completion_tokens_details", "reasoning"),
    ):
        d = u.get(details_key)
        if isinstance(d, dict):
            if target == "cached":
                cached = d.get("cache_read", d.get("cached_tokens", cached))
            else:
                reasoning = d.get("reasoning", d.get("reasoning_tokens", reasoning))
    if inp is None and out is None and total is None:
        return None
    ints = [
        v if isinstance(v, int) and not isinstance(v, bool) else None
        for v in (inp, out, total, cached, reasoning)
    ]
    return Usage(
        prompt_tokens=ints[0],
        completion_tokens=ints[1],
        total_tokens=ints[2],
        cached_tokens=ints[3],
        reasoning_tokens=ints[4],
    )


# ---------------------------------------------------------------- Langfuse


def sniff_langfuse(record: dict[str, Any]) -> bool:
    return (
        record.get("type") in _LANGFUSE_TYPES
        and ("traceId" in record or "trace_id" in record or "_trace" in record)
        and ("startTime" in record or "start_time" in record or "input" in record)
    )


#: The blob-storage / ClickHouse export's snake_case columns and their API (camelCase) names.
_LANGFUSE_SNAKE = {
    "trace_id": "traceId",
    "start_time": "startTime",
    "end_time": "endTime",
    "completion_start_time": "completionStartTime",
    "provided_model_name": "providedModelName",
    "model_parameters": "modelParameters",
    "usage_details": "usageDetails",
    "provided_usage_details": "providedUsageDetails",
    "cost_details": "costDetails",
    "total_cost": "totalCost",
    "status_message": "statusMessage",
    "prompt_name": "promptName",
    "prompt_version": "promptVersion",
    "parent_observation_id": "parentObservationId",
    "session_id": "sessionId",
    "user_id": "userId",
    "observation_id": "observationId",
    "data_type": "dataType",
    "string_value": "stringValue",
    "trace_name": "traceName",
}
#: What the Langfuse SDK's OpenAI integration logs in ``modelParameters`` for a call that did
#: not set the parameter (langfuse/langfuse-python, langfuse/openai.py,
#: ``_get_langfuse_data_from_kwargs``: temperature 1, top_p 1, penalties 0, n 1, max_tokens
#: ``float("inf")``, which the API serialises as ``"Infinity"``).
LANGFUSE_SDK_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "temperature": (1,),
    "top_p": (1,),
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "n": (1,),
    "max_tokens": ("Infinity", "inf", "Inf"),
}


#: Columns that tell a Langfuse observations CSV from another table with an ``input`` column.
_LANGFUSE_CSV_MARKS = frozenset(
    {
        "type",
        "providedModelName",
        "provided_model_name",
        "modelParameters",
        "model_parameters",
        "usageDetails",
        "usage_details",
    }
)


def _langfuse_camel(record: dict[str, Any]) -> dict[str, Any]:
    """A blob-storage/ClickHouse export row (snake_case) with the API's field names."""
    if "trace_id" not in record and "start_time" not in record:
        return record
    out = dict(record)
    for snake, camel in _LANGFUSE_SNAKE.items():
        if snake in out and camel not in out:
            out[camel] = out.pop(snake)
    return out


def _json_cell(value: Any, path: str) -> Any:
    """A value an export wrote as JSON text (objects, arrays, a quoted string)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("{", "[")) or (len(text) >= 2 and text[0] == text[-1] == '"'):
            try:
                return loads(text.encode())
            except ValueError as e:
                if text.startswith(("{", "[")):
                    raise RecordError(path, INVALID_JSON, f"not JSON: {e}") from e
    return value


def _joined(ctx: LineContext, key: str) -> Any:
    """A side record for ``key`` (a trace, the scores of an observation or of a trace),
    marked as used: it stays for the other observations of the same trace."""
    side = ctx.joined.get(key)
    if isinstance(side, SideRecord):
        ctx.joined[key] = side.value
        return side.value
    return side


def _is_trace(record: dict[str, Any]) -> bool:
    observations = record.get("observations")
    if isinstance(observations, list) and any(isinstance(o, dict) for o in observations):
        return False  # a trace with its observations: the records themselves
    return (
        "type" not in record
        and "id" in record
        and "timestamp" in record
        and ("bookmarked" in record or "public" in record)
        and ("sessionId" in record or "session_id" in record or "userId" in record)
    )


def _is_score(record: dict[str, Any]) -> bool:
    return (
        "value" in record
        and "name" in record
        and ("traceId" in record or "trace_id" in record)
        and ("dataType" in record or "data_type" in record or "source" in record)
    )


def sniff_langfuse_side(record: dict[str, Any]) -> bool:
    """Langfuse traces and scores (API pages or the blob-storage export's traces and scores
    tables): side records of the observations."""
    return _is_trace(record) or _is_score(record)


def read_langfuse_side(record: dict[str, Any], ctx: LineContext) -> tuple[str, Any]:
    """A trace (kept by id for its observations' metadata) or a score (kept by observation,
    else by trace, as feedback)."""
    record = {
        **record,
        **{c: record[k] for k, c in _LANGFUSE_SNAKE.items() if k in record and c not in record},
    }
    if _is_score(record):
        score = {
            k: v
            for k, v in {
                "name": record.get("name"),
                "value": record.get("value"),
                "string_value": record.get("stringValue"),
                "data_type": record.get("dataType"),
                "source": record.get("source"),
                "comment": record.get("comment"),
            }.items()
            if v is not None
        }
        obs = record.get("observationId")
        if isinstance(obs, str) and obs:
            return f"observation:{obs}", [score]
        return f"trace:{record.get('traceId')}:scores", [score]
    trace_id = record.get("id")
    if not isinstance(trace_id, str) or not trace_id:
        raise wrong_type("id", "a trace id", trace_id)
    trace = {
        "id": trace_id,
        "name": record.get("name"),
        "metadata": _json_cell(record.get("metadata"), "metadata"),
        "tags": _json_cell(record.get("tags"), "tags"),
        "sessionId": record.get("sessionId"),
        "userId": record.get("userId"),
    }
    return f"trace:{trace_id}", trace


def _messages_from_input(value: Any, path: str) -> tuple[list[Any], dict[str, Any]]:
    """A logged ``input``: (messages, other request fields)."""
    value = _maybe_json(value, path)
    if isinstance(value, str):
        return [{"role": "user", "content": value}], {}
    if isinstance(value, list):
        return [
            _lc_message(m, f"{path}[{i}]") if isinstance(m, dict) else m
            for i, m in enumerate(value)
        ], {}
    if isinstance(value, dict):
        if "messages" in value:
            extra = {k: v for k, v in value.items() if k in _SAMPLING or k == "model"}
            msgs = value["messages"]
            if isinstance(msgs, list) and msgs and isinstance(msgs[0], list):
                msgs = msgs[0]
            if not isinstance(msgs, list):
                raise wrong_type(f"{path}.messages", "an array of messages", msgs)
            return [
                _lc_message(m, f"{path}.messages[{i}]") if isinstance(m, dict) else m
                for i, m in enumerate(msgs)
            ], extra
        if "prompt" in value and isinstance(value["prompt"], str):
            return [{"role": "user", "content": value["prompt"]}], {}
        if "role" in value:
            return [value], {}
    if value is None:
        raise RecordError(path, MISSING_FIELD, "no input recorded: nothing to replay")
    raise wrong_type(path, "messages, an object with 'messages' or a prompt string", value)


def _output_response(value: Any, path: str, latency: float | None) -> Logged:
    value = _maybe_json(value, path)
    if value is None:
        return NOTHING
    if isinstance(value, dict) and ("choices" in value or value.get("object") == "response"):
        return logged_response(value, path, latency)
    if isinstance(value, dict) and "completion" in value and "role" not in value:
        value = value["completion"]
    response = _assistant_response(value, path)
    response.latency_ms = latency
    return Logged(response)


def read_langfuse(record: dict[str, Any], ctx: LineContext) -> Exchange:
    snake = "trace_id" in record or "start_time" in record
    record = _langfuse_camel(record)
    # a generations table exported without its type column holds generations only
    kind = record.get("type", "GENERATION")
    if kind != "GENERATION":
        raise RecordError("type", WRONG_FORMAT, f"a {kind} observation is not a model call")
    messages, extra = _messages_from_input(_json_cell(record.get("input"), "input"), "input")
    params_field = "model_parameters" if snake else "modelParameters"
    params = _json_cell(record.get("modelParameters"), params_field) or {}
    if not isinstance(params, dict):
        raise wrong_type(params_field, "an object", params)
    model = record.get("model") or record.get("providedModelName") or extra.pop("model", None)
    extra.pop("model", None)
    request: dict[str, Any] = {"model": model, "messages": messages, **extra}
    from_params: dict[str, Any] = {}
    for key, value in params.items():
        if value is not None and key in _SAMPLING and key not in extra:
            from_params[key] = _number(value)
    dropped = drop_filled_params(
        from_params,
        {},
        LANGFUSE_SDK_DEFAULTS,
        "",
    )
    request.update(from_params)
    check_chat_request(request, "input", ctx)
    latency = _latency(record.get("startTime"), record.get("endTime"))
    error = None
    if record.get("level") == "ERROR":
        logged = NOTHING
        error = str(record.get("statusMessage") or "error")
    else:
        logged = _output_response(_json_cell(record.get("output"), "output"), "output", latency)
    response = logged.response
    if response is not None:
        usage = (
            _usage(_json_cell(record.get("usageDetails"), "usage_details"))
            or _usage(_json_cell(record.get("providedUsageDetails"), "provided_usage_details"))
            or _usage(record.get("usage"))
        )
        if usage is not None:
            response.usage = usage
        if response.model is None and isinstance(model, str):
            response.model = model
        start = record.get("startTime")
        first = _json_cell(record.get("completionStartTime"), "completionStartTime")
        if first is not None:
            response.ttft_ms = _latency(start, first)
    trace = as_object(record.get("_trace"))
    trace_id = record.get("traceId") or trace.get("id")
    if not trace and isinstance(trace_id, str):
        trace = as_object(_joined(ctx, f"trace:{trace_id}"))
    feedback: list[Any] = []
    for key in (f"observation:{record.get('id')}", f"trace:{trace_id}:scores"):
        scores = _joined(ctx, key)
        if isinstance(scores, list):
            feedback.extend(scores)
    metadata = merge_metadata(
        (_json_cell(trace.get("metadata"), "trace.metadata"), "trace.metadata"),
        (_json_cell(record.get("metadata"), "metadata"), "metadata"),
    )
    for key, value in (
        ("name", record.get("name")),
        ("trace_id", record.get("traceId") or trace.get("id")),
        ("trace_name", trace.get("name") or record.get("traceName")),
        ("prompt_name", record.get("promptName")),
        ("session_id", trace.get("sessionId") or record.get("sessionId")),
        ("user_id", trace.get("userId") or record.get("userId")),
        ("tags", trace.get("tags") or None),
        ("cost", _json_cell(record.get("costDetails"), "cost_details") or None),
    ):
        if value is not None:
            metadata.setdefault(key, value)
    if feedback:
        metadata["feedback"] = feedback
    if dropped:
        metadata[DROPPED_PARAMS] = dropped
        metadata[DROPPED_PARAMS_WHY] = (
            "the Langfuse SDK logs these defaults in modelParameters for calls that did not "
            "set them"
        )
    return Exchange(
        id=record_id(record.get("id"), "id") or ctx.default_id(),
        source=ctx.source(),
        timestamp=parse_timestamp(record.get("startTime"), "startTime"),
        request=request,
        response=response,
        error=error or logged.error,
        metadata=metadata,
    )


# ---------------------------------------------------------------- Helicone


def _helicone_async_log(record: dict[str, Any]) -> dict[str, Any]:
    """A ``HeliconeAsyncLogRequest`` (what the manual logger and the async SDKs send to
    ``/custom/v1/log``: ``providerRequest {url, json, meta}``, ``providerResponse {headers,
    status, json | textBody}``, ``timing {startTime, endTime: {seconds, milliseconds},
    timeToFirstToken}``; Source: https://docs.helicone.ai/getting-started/integration-method/
    manual-logger-curl) as an export row."""
    req = as_object(record.get("providerRequest"))
    res = as_object(record.get("providerResponse"))
    timing = as_object(record.get("timing"))

    def seconds(t: Any) -> float | None:
        t = as_object(t)
        s, ms = t.get("seconds"), t.get("milliseconds", 0)
        if not isinstance(s, int | float) or not isinstance(ms, int | float):
            return None
        return float(s) + float(ms) / 1000.0

    start, end = seconds(timing.get("startTime")), seconds(timing.get("endTime"))
    row: dict[str, Any] = {
        "request_body": req.get("json"),
        "response_body": res.get("json", res.get("textBody")),
        "response_status": res.get("status"),
        "request_properties": req.get("meta"),
        "request_created_at": start,
        "_ttft_ms": timing.get("timeToFirstToken"),
    }
    if start is not None and end is not None and end >= start:
        row["latency"] = (end - start) * 1000.0
    return row


def sniff_helicone(record: dict[str, Any]) -> bool:
    if "providerRequest" in record and "providerResponse" in record:
        return True
    return "request_body" in record and (
        "response_body" in record
        or "request_id" in record
        or "response_id" in record
        or "response_status" in record
    )


def read_helicone(record: dict[str, Any], ctx: LineContext) -> Exchange:
    if "providerRequest" in record:
        record = _helicone_async_log(record)
    body = _maybe_json(record.get("request_body"), "request_body")
    if body is None:
        raise RecordError(
            "request_body",
            MISSING_FIELD,
            "no request body recorded (export with the bodies: npx @helicone/export "
            "--include-body)",
        )
    if not isinstance(body, dict):
        raise wrong_type("request_body", "a request object", body)
    if body.get("model") is None and isinstance(record.get("model"), str) and record["model"]:
        body["model"] = record["model"]
    request = check_chat_request(body, "request_body", ctx)
    latency = float_or_none(record.get("delay_ms", record.get("latency")))
    status = int_or_none(record.get("response_status", record.get("status")))
    response_body = _maybe_json(record.get("response_body"), "response_body")
    if status is not None and not 200 <= status < 300:
        err = response_body.get("error") if isinstance(response_body, dict) else response_body
        logged = Logged(None, error_text(err, status))
    else:
        logged = logged_response(response_body, "response_body", latency)
        ttft = float_or_none(record.get("_ttft_ms"))
        if logged.response is not None and ttft is not None:
            logged.response.ttft_ms = ttft
    props = record.get("request_properties", record.get("properties"))
    props = _maybe_json(props, "properties")
    metadata = merge_metadata(
        (request.get("metadata"), "request_body.metadata"), (props, "properties")
    )
    for key in (
        "request_user_id",
        "user_id",
        "provider",
        "cost",
        "cost_usd",
        "country_code",
        "prompt_tokens",
        "completion_tokens",
    ):
        if record.get(key) is not None:
            metadata[key] = record[key]
    if logged.response is None and logged.error is None and "response_body" not in record:
        metadata["note"] = (
            "this Helicone export holds no response bodies: export as JSON or JSONL with "
            "--include-body to compare against the logged answers"
        )
    feedback = record.get("feedback", record.get("scores"))
    if feedback is not None:
        metadata["feedback"] = feedback
    ts = record.get("request_created_at", record.get("created_at"))
    ex_id = record_id(record.get("request_id"), "request_id") or record_id(
        record.get("response_id"), "response_id"
    )
    return Exchange(
        id=ex_id or ctx.default_id(),
        source=ctx.source(),
        timestamp=parse_timestamp(ts, "request_created_at") if ts is not None else None,
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


# ---------------------------------------------------------------- LangSmith


def sniff_langsmith(record: dict[str, Any]) -> bool:
    return "run_type" in record and "inputs" in record


def _langsmith_output(outputs: Any, latency: float | None) -> Logged:
    if outputs is None:
        return NOTHING
    if not isinstance(outputs, dict):
        raise wrong_type("outputs", "an object", outputs)
    if "choices" in outputs or outputs.get("object") == "response":
        return logged_response(outputs, "outputs", latency)
    gens = outputs.get("generations")
    if isinstance(gens, list) and gens:
        first = gens[0]
        path = "outputs.generations[0]"
        if isinstance(first, list):
            if not first:
                raise RecordError(path, BAD_RESPONSE, "no generation")
            first = first[0]
            path += "[0]"
        if not isinstance(first, dict):
            raise wrong_type(path, "a generation object", first)
        info = as_object(first.get("generation_info"))
        finish = info.get("finish_reason")
        message = first.get("message")
        if isinstance(message, dict):
            response = _assistant_response(message, f"{path}.message", finish)
            inner = message.get("kwargs")
            kwargs: dict[str, Any] = inner if isinstance(inner, dict) else message
            meta_usage = kwargs.get("usage_metadata")
            if meta_usage is not None:
                response.usage = _usage(meta_usage)
            rmeta = kwargs.get("response_metadata")
            if isinstance(rmeta, dict):
                response.finish_reason = response.finish_reason or rmeta.get("finish_reason")
                response.model = rmeta.get("model_name")
        else:
            response = Response(text=first.get("text"), finish_reason=finish)
        llm_output = outputs.get("llm_output")
        if isinstance(llm_output, dict):
            if response.usage is None:
                response.usage = _usage(llm_output.get("token_usage"))
            response.model = response.model or llm_output.get("model_name")
        response.latency_ms = latency
        return Logged(response)
    if "output" in outputs or "content" in outputs or "role" in outputs:
        message = outputs.get("output", outputs)
        response = _assistant_response(message, "outputs")
        response.latency_ms = latency
        return Logged(response)
    raise RecordError("outputs", BAD_RESPONSE, "expected 'generations' or a chat completion")


def read_langsmith(record: dict[str, Any], ctx: LineContext) -> Exchange:
    run_type = record.get("run_type")
    if run_type != "llm":
        raise RecordError("run_type", WRONG_FORMAT, f"a {run_type!r} run is not a model call")
    # bulk exports (Parquet) and CSV dumps hold the objects as JSON text
    record = {
        **record,
        **{
            k: _maybe_json(record[k], k)
            for k in ("inputs", "outputs", "extra", "tags", "feedback_stats")
            if isinstance(record.get(k), str)
        },
    }
    inputs = record.get("inputs")
    if not isinstance(inputs, dict):
        raise wrong_type("inputs", "an object", inputs)
    if "messages" in inputs:
        messages, extra = _messages_from_input({"messages": inputs["messages"]}, "inputs")
    elif isinstance(inputs.get("prompts"), list) and inputs["prompts"]:
        messages, extra = [{"role": "user", "content": inputs["prompts"][0]}], {}
    else:
        messages, extra = _messages_from_input(
            inputs.get("input", inputs.get("prompt")), "inputs.input"
        )
    for key in _SAMPLING:
        if key in inputs and key not in extra:
            extra[key] = inputs[key]
    extra_field = as_object(record.get("extra"))
    params = as_object(extra_field.get("invocation_params"))
    run_meta = as_object(extra_field.get("metadata"))
    model = (
        params.get("model")
        or params.get("model_name")
        or run_meta.get("ls_model_name")
        or inputs.get("model")
    )
    request: dict[str, Any] = {"model": model, "messages": messages, **extra}
    for key, value in params.items():
        if value is not None and key in _SAMPLING:
            request[key] = value
    check_chat_request(request, "inputs", ctx)
    latency = _latency(record.get("start_time"), record.get("end_time"))
    error = record.get("error")
    if error:
        logged = Logged(None, str(error).splitlines()[0][:500])
    else:
        logged = _langsmith_output(record.get("outputs"), latency)
    metadata = dict(run_meta)
    for key in ("name", "trace_id", "session_id", "parent_run_id"):
        if record.get(key) is not None:
            metadata[key] = record[key]
    if record.get("tags"):
        metadata["tags"] = record["tags"]
    if record.get("feedback_stats"):
        metadata["feedback"] = record["feedback_stats"]
    return Exchange(
        id=record_id(record.get("id"), "id") or ctx.default_id(),
        source=ctx.source(),
        timestamp=parse_timestamp(record.get("start_time"), "start_time"),
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


# ---------------------------------------------------------------- OpenPipe


def sniff_openpipe(record: dict[str, Any]) -> bool:
    if "reqPayload" in record:
        return True
    return "messages" in record and "split" in record and "request" not in record


def read_openpipe(record: dict[str, Any], ctx: LineContext) -> Exchange:
    if "reqPayload" in record:
        return _read_openpipe_log(record, ctx)
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise wrong_type("split", "a string", split)
    base = {k: v for k, v in record.items() if k not in ("split", "tool_choice", "response_format")}
    exchange = finetune_chat.read(base, ctx)
    for key in ("tool_choice", "response_format"):
        if record.get(key) is not None:
            exchange.request[key] = record[key]
    if split is not None:
        exchange.metadata["split"] = split
    return exchange


def _read_openpipe_log(record: dict[str, Any], ctx: LineContext) -> Exchange:
    body = _maybe_json(record.get("reqPayload"), "reqPayload")
    if not isinstance(body, dict):
        raise wrong_type("reqPayload", "a request object", body)
    request = check_chat_request(body, "reqPayload", ctx)
    latency = _latency(record.get("requestedAt"), record.get("receivedAt"))
    status = record.get("statusCode")
    resp = _maybe_json(record.get("respPayload"), "respPayload")
    if record.get("errorMessage") or (isinstance(status, int) and not 200 <= status < 300):
        err = record.get("errorMessage") or (resp.get("error") if isinstance(resp, dict) else resp)
        logged = Logged(None, error_text(err, status if isinstance(status, int) else None))
    else:
        logged = logged_response(resp, "respPayload", latency)
    metadata = merge_metadata(
        (request.get("metadata"), "reqPayload.metadata"), (record.get("tags"), "tags")
    )
    return Exchange(
        id=record_id(record.get("id"), "id") or ctx.default_id(),
        source=ctx.source(),
        timestamp=parse_timestamp(record.get("requestedAt"), "requestedAt"),
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


FORMATS = (
    LogFormat(
        name="langfuse",
        sniff=sniff_langfuse,
        reader=read_langfuse,
        description="Langfuse observations (API, trace JSON, blob-storage/ClickHouse JSONL or CSV)",
        priority=18,
        sniff_file=csv_sniffer(
            lambda h: (
                bool({"traceId", "trace_id"} & h) and "input" in h and bool(_LANGFUSE_CSV_MARKS & h)
            )
        ),
        read_file=csv_reader(read_langfuse),
        sniff_index=sniff_langfuse_side,
        index_reader=read_langfuse_side,
    ),
    LogFormat(
        name="helicone",
        sniff=sniff_helicone,
        reader=read_helicone,
        description="Helicone request export rows (JSON, JSONL, CSV; request_body/response_body)",
        priority=18,
        sniff_file=csv_sniffer(
            lambda h: "request_body" in h and bool({"response_id", "request_id"} & h)
        ),
        read_file=csv_reader(read_helicone),
    ),
    LogFormat(
        name="langsmith",
        sniff=sniff_langsmith,
        reader=read_langsmith,
        description="LangSmith runs (API, list_runs dumps, bulk export Parquet/CSV)",
        priority=18,
        sniff_file=export_sniffer(lambda h: "run_type" in h and "inputs" in h),
        read_file=export_reader(read_langsmith),
    ),
    LogFormat(
        name="openpipe",
        sniff=sniff_openpipe,
        reader=read_openpipe,
        description="OpenPipe dataset export (messages + split) or request logs (reqPayload)",
        priority=18,
    ),
)
