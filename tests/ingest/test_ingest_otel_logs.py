"""The OpenTelemetry openai-v2 instrumentation's event-based shape (issue 14, section 1): the
span carries the call's parameters and usage, the message content is in OTLP *log records*
(``resourceLogs``) tied to the span by ``spanId``.

Source of the shapes: open-telemetry/opentelemetry-python-contrib@main,
instrumentation-genai/opentelemetry-instrumentation-openai-v2/src/opentelemetry/
instrumentation/openai_v2/utils.py (message_to_event, choice_to_event: events
``gen_ai.system.message``/``gen_ai.user.message``/``gen_ai.assistant.message``/
``gen_ai.tool.message``/``gen_ai.choice`` with attribute ``gen_ai.system: openai`` and a body of
``content``, ``tool_calls``, ``id``; choice body ``{index, finish_reason, message}``), the OTLP
JSON encoding of logs (opentelemetry-proto, ``ExportLogsServiceRequest``: ``resourceLogs[]
.scopeLogs[].logRecords[]`` with ``timeUnixNano``, ``eventName`` or attribute ``event.name``,
``body`` AnyValue, ``traceId``, ``spanId``) and the recorded calls in
../shared/data/otel-openai-cassettes (test_chat_completion_tool_calls_with_content.yaml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate_eval.ingest import read_logs


def _s(v: str) -> dict[str, Any]:
    return {"stringValue": v}


def _kv(d: dict[str, Any]) -> dict[str, Any]:
    def val(x: Any) -> dict[str, Any]:
        if isinstance(x, dict):
            return _kv(x)
        if isinstance(x, list):
            return {"arrayValue": {"values": [val(i) for i in x]}}
        if isinstance(x, int):
            return {"intValue": str(x)}
        return _s(str(x))

    return {"kvlistValue": {"values": [{"key": k, "value": val(v)} for k, v in d.items()]}}


def _span(span_id: str, *, error: bool = False) -> dict[str, Any]:
    attrs = {
        "gen_ai.operation.name": _s("chat"),
        "gen_ai.system": _s("openai"),
        "gen_ai.request.model": _s("gpt-4o-mini"),
        "gen_ai.request.temperature": {"doubleValue": 0.5},
        "gen_ai.response.model": _s("gpt-4o-mini-2024-07-18"),
        "gen_ai.response.id": _s("chatcmpl-" + span_id),
        "gen_ai.response.finish_reasons": {"arrayValue": {"values": [_s("tool_calls")]}},
        "gen_ai.usage.input_tokens": {"intValue": "75"},
        "gen_ai.usage.output_tokens": {"intValue": "51"},
        "server.address": _s("api.openai.com"),
    }
    span: dict[str, Any] = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": span_id,
        "name": "chat gpt-4o-mini",
        "kind": 3,
        "startTimeUnixNano": "1730000000000000000",
        "endTimeUnixNano": "1730000001200000000",
        "attributes": [{"key": k, "value": v} for k, v in attrs.items()],
        "status": {},
    }
    if error:
        span["status"] = {"code": 2, "message": "Error code: 404 - model_not_found"}
    return span


def _record(span_id: str, name: str, body: dict[str, Any], *, old_sdk: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "timeUnixNano": "1730000000100000000",
        "observedTimeUnixNano": "1730000000100000000",
        "severityNumber": 9,
        "body": _kv(body),
        "attributes": [{"key": "gen_ai.system", "value": _s("openai")}],
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": span_id,
    }
    if old_sdk:  # SDKs before eventName: the event name as an attribute
        rec["attributes"].append({"key": "event.name", "value": _s(name)})
    else:
        rec["eventName"] = name
    return rec


def _logs(span_id: str, *, old_sdk: bool = False) -> list[dict[str, Any]]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_current_weather", "arguments": '{"location": "Seattle"}'},
    }
    return [
        _record(
            span_id, "gen_ai.system.message", {"content": "You help with weather."}, old_sdk=old_sdk
        ),
        _record(
            span_id, "gen_ai.user.message", {"content": "Weather in Seattle?"}, old_sdk=old_sdk
        ),
        _record(
            span_id,
            "gen_ai.choice",
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {"role": "assistant", "tool_calls": [call]},
            },
            old_sdk=old_sdk,
        ),
    ]


def _resource(key: str, scope_key: str, items_key: str, items: list[Any]) -> dict[str, Any]:
    return {
        key: [
            {
                "resource": {"attributes": [{"key": "service.name", "value": _s("weather-bot")}]},
                scope_key: [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                        items_key: items,
                    }
                ],
            }
        ]
    }


def test_span_content_from_otlp_log_records(tmp_path: Path) -> None:
    traces = tmp_path / "traces.json"
    traces.write_text(
        json.dumps(
            _resource(
                "resourceSpans",
                "scopeSpans",
                "spans",
                [_span("b7ad6b7169203331"), _span("c7ad6b7169203332"), _span("d7ad", error=True)],
            ),
            indent=2,
        )
    )
    # the collector's file exporter: one ExportLogsServiceRequest a line
    logs = tmp_path / "logs.jsonl"
    lines = [
        _resource("resourceLogs", "scopeLogs", "logRecords", _logs("b7ad6b7169203331")),
        _resource(
            "resourceLogs", "scopeLogs", "logRecords", _logs("c7ad6b7169203332", old_sdk=True)
        ),
        _resource("resourceLogs", "scopeLogs", "logRecords", _logs("d7ad")[:2]),
        _resource("resourceLogs", "scopeLogs", "logRecords", _logs("e7ad-no-span")),
    ]
    logs.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = read_logs([traces, logs])  # spans first: the logs are read before them anyway
    assert result.formats == {"otel-genai": 3}, result.skipped
    new, old, failed = result.exchanges
    for ex in (new, old):
        assert ex.request["messages"] == [
            {"role": "system", "content": "You help with weather."},
            {"role": "user", "content": "Weather in Seattle?"},
        ]
        assert ex.request["model"] == "gpt-4o-mini" and ex.request["temperature"] == 0.5
        assert ex.response is not None and ex.response.finish_reason == "tool_calls"
        assert [(c.name, c.parsed_arguments) for c in ex.response.tool_calls] == [
            ("get_current_weather", {"location": "Seattle"})
        ]
        assert ex.metadata["content_from"] == str(logs)
    assert failed.error is not None and "model_not_found" in failed.error
    assert failed.response is None and failed.request["messages"][1]["content"].startswith(
        "Weather"
    )
    # log records of a span no file holds: one skipped record, saying so
    (issue,) = result.skipped
    assert issue.file == str(logs) and "e7ad-no-span" in issue.reason
    assert result.lines_read == len(result.exchanges) + len(result.skipped)


def test_spans_without_their_logs_still_say_content_capture(tmp_path: Path) -> None:
    traces = tmp_path / "traces.json"
    traces.write_text(json.dumps(_resource("resourceSpans", "scopeSpans", "spans", [_span("aa")])))
    result = read_logs([traces])
    (issue,) = result.skipped
    assert "content capture was off" in issue.reason


def test_the_dataset_path_joins_the_log_records_too(tmp_path: Path) -> None:
    from migrate_eval.ingest import ingest_to_dataset, iter_exchanges

    traces = tmp_path / "traces.json"
    traces.write_text(json.dumps(_resource("resourceSpans", "scopeSpans", "spans", [_span("f1")])))
    logs = tmp_path / "logs.json"
    logs.write_text(json.dumps(_resource("resourceLogs", "scopeLogs", "logRecords", _logs("f1"))))
    ds, summary = ingest_to_dataset([logs, traces], tmp_path / "cache")
    (ex,) = list(iter_exchanges(ds))
    assert ex.request["messages"][1]["content"] == "Weather in Seattle?"
    assert summary.exchanges == 1 and summary.skipped == 0


def test_the_operation_details_event_of_the_current_semconv(tmp_path: Path) -> None:
    # opentelemetry-util-genai (open-telemetry/opentelemetry-python-contrib@main:
    # util/opentelemetry-util-genai/README.rst) with EVENT_ONLY capture: one
    # gen_ai.client.inference.operation.details log record a call, carrying
    # gen_ai.input.messages / gen_ai.output.messages as the span would (JSON schemas in
    # ../shared/data/otel-genai-semconv/gen-ai-input-messages.json, -output-messages.json).
    inputs = [{"role": "user", "parts": [{"type": "text", "content": "Weather in Seattle?"}]}]
    outputs = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Rainy, 12 C."}],
            "finish_reason": "stop",
        }
    ]
    record = {
        "timeUnixNano": "1730000001200000000",
        "eventName": "gen_ai.client.inference.operation.details",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": _s("chat")},
            {"key": "gen_ai.input.messages", "value": _s(json.dumps(inputs))},
            {"key": "gen_ai.output.messages", "value": _s(json.dumps(outputs))},
        ],
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "a2",
    }
    traces = tmp_path / "traces.json"
    traces.write_text(json.dumps(_resource("resourceSpans", "scopeSpans", "spans", [_span("a2")])))
    logs = tmp_path / "logs.json"
    logs.write_text(json.dumps(_resource("resourceLogs", "scopeLogs", "logRecords", [record])))
    (ex,) = read_logs([traces, logs]).exchanges
    assert ex.request["messages"] == [{"role": "user", "content": "Weather in Seattle?"}]
    assert ex.response is not None and ex.response.text == "Rainy, 12 C."


def test_one_collector_file_with_both_pipelines(tmp_path: Path) -> None:
    # The collector's file exporter used by the traces and the logs pipelines with one path:
    # lines of ExportLogsServiceRequest and ExportTraceServiceRequest mixed, logs first or last.
    spans = _resource("resourceSpans", "scopeSpans", "spans", [_span("m1"), _span("m2")])
    logs1 = _resource("resourceLogs", "scopeLogs", "logRecords", _logs("m1"))
    logs2 = _resource("resourceLogs", "scopeLogs", "logRecords", _logs("m2", old_sdk=True))
    for order in ([logs1, spans, logs2], [spans, logs1, logs2]):
        path = tmp_path / "otel-export.jsonl"
        path.write_text("\n".join(json.dumps(x) for x in order) + "\n")
        result = read_logs([path])
        assert result.formats == {"otel-genai": 2}, result.skipped
        assert not result.skipped
        assert all(ex.response is not None for ex in result.exchanges)
