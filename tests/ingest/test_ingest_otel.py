"""otel-genai: OTLP JSON spans built from real OpenAI traffic (the VCR cassettes), in the
current semconv (message JSON schemas) and the deprecated attribute and event forms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from migrate_eval.ingest import read_logs
from tests.ingest.helpers import cassette_pairs, data_file


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}  # OTLP JSON writes 64-bit ints as strings
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [{"stringValue": x} for x in value]}}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def _parts(message: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions message in the semconv ``ChatMessage`` shape."""
    parts: list[dict[str, Any]] = []
    if message["role"] == "tool":
        parts.append(
            {
                "type": "tool_call_response",
                "id": message["tool_call_id"],
                "response": message["content"],
            }
        )
    else:
        if message.get("content"):
            parts.append({"type": "text", "content": message["content"]})
        for tc in message.get("tool_calls") or []:
            parts.append(
                {
                    "type": "tool_call",
                    "id": tc["id"],
                    "name": tc["function"]["name"],
                    "arguments": json.loads(tc["function"]["arguments"]),
                }
            )
    return {"role": message["role"], "parts": parts}


def _span(pair: dict[str, Any], i: int) -> dict[str, Any]:
    request = pair["request"]
    body = json.loads(pair["response"]["body"])
    system = [m for m in request["messages"] if m["role"] == "system"]
    rest = [m for m in request["messages"] if m["role"] != "system"]
    choice = body["choices"][0]
    attrs = [
        _attr("gen_ai.operation.name", "chat"),
        _attr("gen_ai.provider.name", "openai"),
        _attr("gen_ai.request.model", request["model"]),
        _attr("gen_ai.response.model", body["model"]),
        _attr("gen_ai.response.id", body["id"]),
        _attr("gen_ai.response.finish_reasons", [choice["finish_reason"]]),
        _attr("gen_ai.usage.input_tokens", body["usage"]["prompt_tokens"]),
        _attr("gen_ai.usage.output_tokens", body["usage"]["completion_tokens"]),
        _attr("gen_ai.usage.cache_read.input_tokens", 7),
        _attr("gen_ai.usage.reasoning.output_tokens", 3),
        _attr("gen_ai.input.messages", json.dumps([_parts(m) for m in rest])),
        _attr(
            "gen_ai.output.messages",
            json.dumps([{**_parts(choice["message"]), "finish_reason": choice["finish_reason"]}]),
        ),
    ]
    if system:
        attrs.append(
            _attr(
                "gen_ai.system_instructions",
                json.dumps([{"type": "text", "content": m["content"]} for m in system]),
            )
        )
    if request.get("tools"):
        attrs.append(
            _attr(
                "gen_ai.tool.definitions",
                json.dumps([{"type": "function", **t["function"]} for t in request["tools"]]),
            )
        )
    for key, name in (("temperature", "temperature"), ("max_tokens", "max_tokens")):
        if key in request:
            attrs.append(_attr(f"gen_ai.request.{name}", request[key]))
    return {
        "traceId": f"{i:032x}",
        "spanId": f"{i + 1:016x}",
        "name": f"chat {request['model']}",
        "kind": 3,
        "startTimeUnixNano": str(1731368634_000_000_000 + i),
        "endTimeUnixNano": str(1731368634_000_000_000 + i + 850_000_000),
        "attributes": attrs,
        "status": {},
    }


def _export(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "support-bot")]},
                "scopeSpans": [
                    {"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "spans": spans}
                ],
            }
        ]
    }


def _pairs() -> list[dict[str, Any]]:
    pairs = cassette_pairs("test_chat_completion_tool_calls_with_content.yaml") + cassette_pairs(
        "test_chat_completion_with_content.yaml"
    )
    return [p for p in pairs if p["response"]["status_code"] == 200]


def test_semconv_spans_validate_against_the_shared_schemas() -> None:
    """The test spans follow the official message JSON schemas (so the reader is tested on
    what instrumentations really write)."""
    schema_in = json.loads(
        data_file("otel-genai-semconv", "gen-ai-input-messages.json").read_text()
    )
    schema_out = json.loads(
        data_file("otel-genai-semconv", "gen-ai-output-messages.json").read_text()
    )
    for i, pair in enumerate(_pairs()):
        attrs = {a["key"]: a["value"] for a in _span(pair, i)["attributes"]}
        jsonschema.validate(json.loads(attrs["gen_ai.input.messages"]["stringValue"]), schema_in)
        jsonschema.validate(json.loads(attrs["gen_ai.output.messages"]["stringValue"]), schema_out)


def test_otlp_json_document_of_real_traffic(tmp_path: Path) -> None:
    pairs = _pairs()
    spans = [_span(p, i) for i, p in enumerate(pairs)]
    # a non-GenAI span (the HTTP call) is not a record
    spans.append({"traceId": "f" * 32, "spanId": "e" * 16, "name": "POST", "attributes": []})
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(_export(spans), indent=2))
    result = read_logs([path])
    assert result.formats == {"otel-genai": len(pairs)}
    assert result.lines_read == len(pairs) and not result.skipped

    first = result.exchanges[0]  # tool calls asked for, two in parallel
    assert first.id == spans[0]["spanId"]
    assert first.request["messages"][0] == {
        "role": "system",
        "content": "You're a helpful assistant.",
    }
    assert first.request["tools"][0]["function"]["name"] == "get_current_weather"
    assert first.response is not None
    assert [tc.parsed_arguments for tc in first.response.tool_calls] == [
        {"location": "Seattle, WA"},
        {"location": "San Francisco, CA"},
    ]
    assert first.response.finish_reason == "tool_calls"
    assert first.response.usage is not None
    assert first.response.usage.cached_tokens == 7
    assert first.response.usage.reasoning_tokens == 3
    assert first.response.latency_ms == pytest.approx(850.0)
    assert first.metadata["service"] == "support-bot"
    assert first.metadata["provider"] == "openai"

    second = result.exchanges[1]  # the tool results sent back
    tool_msgs = [m for m in second.request["messages"] if m["role"] == "tool"]
    assert {m["tool_call_id"] for m in tool_msgs} == {
        tc["id"] for tc in pairs[1]["request"]["messages"][2]["tool_calls"]
    }
    assert second.response is not None and "Seattle" in (second.response.text or "")


def test_otlp_json_lines_from_the_collector_file_exporter(tmp_path: Path) -> None:
    pairs = _pairs()
    path = tmp_path / "otel.jsonl"
    with path.open("w") as fh:
        for i, p in enumerate(pairs):
            fh.write(json.dumps(_export([_span(p, i)])) + "\n")
        fh.write('{"resourceSpans": [\n')  # a truncated last line
    result = read_logs([path])
    assert [ex.source.line for ex in result.exchanges] == list(range(1, len(pairs) + 1))
    (issue,) = result.skipped
    assert issue.line == len(pairs) + 1 and issue.reason.startswith("invalid JSON")
    assert result.lines_read == len(result.exchanges) + len(result.skipped)


def test_deprecated_attributes_and_events(tmp_path: Path) -> None:
    indexed = {
        "traceId": "1" * 32,
        "spanId": "a" * 16,
        "name": "openai.chat",
        "attributes": [
            _attr("gen_ai.system", "openai"),
            _attr("gen_ai.request.model", "gpt-4o-mini"),
            _attr("gen_ai.request.temperature", 0.5),
            _attr("gen_ai.prompt.0.role", "system"),
            _attr("gen_ai.prompt.0.content", "Be brief."),
            _attr("gen_ai.prompt.1.role", "user"),
            _attr("gen_ai.prompt.1.content", "Weather in Paris?"),
            _attr("gen_ai.completion.0.role", "assistant"),
            _attr("gen_ai.completion.0.finish_reason", "tool_calls"),
            _attr("gen_ai.completion.0.tool_calls.0.id", "call_1"),
            _attr("gen_ai.completion.0.tool_calls.0.name", "get_weather"),
            _attr("gen_ai.completion.0.tool_calls.0.arguments", '{"city": "Paris"}'),
            _attr("gen_ai.usage.prompt_tokens", 12),
            _attr("gen_ai.usage.completion_tokens", 5),
        ],
    }
    events = {
        "traceId": "2" * 32,
        "spanId": "b" * 16,
        "name": "chat gpt-4o",
        "attributes": [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.request.model", "gpt-4o"),
        ],
        "events": [
            {"name": "gen_ai.system.message", "attributes": [_attr("content", "Be kind.")]},
            {"name": "gen_ai.user.message", "attributes": [_attr("content", "Hi!")]},
            {
                "name": "gen_ai.choice",
                "attributes": [
                    _attr(
                        "gen_ai.event.content",
                        json.dumps(
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "Hello!"},
                            }
                        ),
                    )
                ],
            },
        ],
    }
    error = {
        "traceId": "3" * 32,
        "spanId": "c" * 16,
        "name": "chat gpt-4o",
        "attributes": [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.request.model", "gpt-4o"),
            _attr(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": "x"}]}]),
            ),
            _attr("error.type", "RateLimitError"),
        ],
        "status": {"code": 2, "message": "Rate limit reached"},
    }
    no_content = {
        "traceId": "4" * 32,
        "spanId": "d" * 16,
        "name": "chat gpt-4o",
        "attributes": [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.request.model", "gpt-4o"),
        ],
    }
    embedding = {
        "traceId": "5" * 32,
        "spanId": "e" * 16,
        "name": "embeddings",
        "attributes": [_attr("gen_ai.operation.name", "embeddings")],
    }
    path = tmp_path / "old.json"
    # pretty-printed: one document, records numbered by span ordinal
    path.write_text(json.dumps(_export([indexed, events, error, no_content, embedding]), indent=1))
    result = read_logs([path])
    by_id = {ex.id: ex for ex in result.exchanges}
    old = by_id["a" * 16]
    assert old.request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert old.request["temperature"] == 0.5
    assert old.response is not None
    assert old.response.tool_calls[0].parsed_arguments == {"city": "Paris"}
    assert old.response.finish_reason == "tool_calls"
    assert old.response.usage is not None and old.response.usage.total_tokens == 17
    assert old.metadata["provider"] == "openai"
    ev = by_id["b" * 16]
    assert [m["role"] for m in ev.request["messages"]] == ["system", "user"]
    assert ev.response is not None and ev.response.text == "Hello!"
    err = by_id["c" * 16]
    assert err.response is None and err.error == "RateLimitError: Rate limit reached"
    reasons = {i.line: (i.field, i.reason.split(":")[0]) for i in result.skipped}
    assert reasons == {
        4: (
            "resourceSpans[0].scopeSpans[0].spans[3].attributes.gen_ai.input.messages",
            "missing field",
        ),
        5: (
            "resourceSpans[0].scopeSpans[0].spans[4].attributes.gen_ai.operation.name",
            "unsupported endpoint",
        ),
    }
    assert result.lines_read == 5
