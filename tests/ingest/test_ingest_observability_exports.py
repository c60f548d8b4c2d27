"""Langfuse and Helicone exports in the shapes the tools write (issue 14, sections 1-3).

Every file here is written by the test from the tool's published shape; each test names its
source. Nothing is copied from the tools' repositories.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import LogFormatError
from migrate_eval.ingest import read_logs
from tests.ingest.helpers import write_jsonl

MESSAGES = [
    {"role": "system", "content": "You are a support bot."},
    {"role": "user", "content": "Where is my order 123?"},
]
ANSWER = {"role": "assistant", "content": "It ships tomorrow."}
# What the Langfuse SDK's OpenAI integration logs for a call that set none of these
# (langfuse/langfuse-python@main:langfuse/openai.py, _get_langfuse_data_from_kwargs: temperature
# 1, max_tokens float("inf"), top_p 1, frequency_penalty 0, presence_penalty 0).
SDK_DEFAULTS = {
    "temperature": 1,
    "max_tokens": "Infinity",
    "top_p": 1,
    "frequency_penalty": 0,
    "presence_penalty": 0,
}


def _blob_row(i: int, **over: Any) -> dict[str, Any]:
    """One row of Langfuse's blob-storage / ClickHouse observations export (snake_case columns
    of the ClickHouse ``observations`` table; objects as JSON text; ClickHouse DateTime64
    text). Source: langfuse/langfuse@main:packages/shared/src/server/repositories/
    observations_converters.ts (convertObservation: record.provided_model_name,
    record.model_parameters, record.usage_details, record.cost_details...) and
    https://langfuse.com/docs/api-and-data-platform/features/export-to-blob-storage."""
    row = {
        "id": f"obs-{i}",
        "trace_id": f"trace-{i}",
        "project_id": "proj-1",
        "type": "GENERATION",
        "parent_observation_id": None,
        "start_time": f"2025-03-04 10:00:0{i}.123456",
        "end_time": f"2025-03-04 10:00:0{i}.923456",
        "completion_start_time": f"2025-03-04 10:00:0{i}.323456",
        "name": "OpenAI-generation",
        "metadata": json.dumps({"feature": "orders"}),
        "level": "DEFAULT",
        "status_message": None,
        "version": None,
        "input": json.dumps(MESSAGES),
        "output": json.dumps(ANSWER),
        "provided_model_name": "gpt-4o-mini-2024-07-18",
        "internal_model_id": "cm3abc",
        "model_parameters": json.dumps(SDK_DEFAULTS),
        "provided_usage_details": json.dumps({"input": 20, "output": 5}),
        "usage_details": {"input": 20, "output": 5, "total": 25},
        "provided_cost_details": {},
        "cost_details": {"input": 0.00001, "output": 0.00002, "total": 0.00003},
        "total_cost": 0.00003,
        "prompt_id": None,
        "prompt_name": None,
        "prompt_version": None,
        "created_at": "2025-03-04 10:00:10.000",
        "updated_at": "2025-03-04 10:00:10.000",
        "event_ts": "2025-03-04 10:00:10.000",
        "is_deleted": 0,
    }
    row.update(over)
    return row


def test_langfuse_blob_storage_jsonl_export(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "observations.jsonl",
        [
            _blob_row(1),
            _blob_row(2, type="SPAN", provided_model_name=None, model_parameters=None),
            _blob_row(3, level="ERROR", status_message="429 Rate limit reached", output=None),
            _blob_row(4, model_parameters=json.dumps({"temperature": "0.2", "max_tokens": "64"})),
        ],
    )
    result = read_logs([path])
    assert result.formats == {"langfuse": 3}
    first, failed, set_params = result.exchanges
    assert first.request["model"] == "gpt-4o-mini-2024-07-18"
    assert first.request["messages"] == MESSAGES
    for key in SDK_DEFAULTS:
        assert key not in first.request  # the SDK's defaults, not what the app sent
    assert first.metadata["dropped_params"] == {
        "temperature": 1,
        "max_tokens": "inf",
        "top_p": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0,
    }
    assert "Langfuse SDK" in first.metadata["dropped_params_reason"]
    assert first.response is not None and first.response.text == "It ships tomorrow."
    assert first.response.usage is not None and first.response.usage.prompt_tokens == 20
    assert first.response.latency_ms == pytest.approx(800.0)
    assert first.response.ttft_ms == pytest.approx(200.0)
    assert first.timestamp is not None and first.timestamp.microsecond == 123456
    assert first.metadata["feature"] == "orders"
    assert failed.error == "429 Rate limit reached" and failed.response is None
    assert set_params.request["temperature"] == 0.2 and set_params.request["max_tokens"] == 64
    assert "dropped_params" not in set_params.metadata
    assert [i.reason.split(":")[0] for i in result.skipped] == ["not this log format"]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    header = list(rows[0])
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(
                [
                    ""
                    if row[k] is None
                    else json.dumps(row[k])
                    if isinstance(row[k], dict | list)
                    else str(row[k])
                    for k in header
                ]
            )
    return path


def test_langfuse_csv_export_is_not_a_plain_table(tmp_path: Path) -> None:
    # The same ClickHouse columns written as CSV (blob-storage export with fileType CSV;
    # source as for _blob_row), multi-line JSON cells included.
    rows = [_blob_row(i) for i in range(1, 6)]
    rows[2]["input"] = json.dumps([{"role": "user", "content": "line one\nline two"}], indent=2)
    rows[3]["type"] = "SPAN"
    path = _write_csv(tmp_path / "langfuse-observations.csv", rows)
    result = read_logs([path])
    assert result.formats == {"langfuse": 4}
    assert result.lines_read == 5
    assert result.exchanges[2].request["messages"][0]["content"] == "line one\nline two"
    assert all("temperature" not in ex.request for ex in result.exchanges)


def test_langfuse_v2_observations_api_page(tmp_path: Path) -> None:
    # GET /api/public/v2/observations: {"data": [...], "meta": {...}}, camelCase fields, the
    # model as providedModelName (https://api.reference.langfuse.com, ObservationsV2; the field
    # list of langfuse/langfuse@main:packages/shared/src/server/repositories/
    # observations_converters.ts).
    obs = {
        "id": "obs-9",
        "traceId": "trace-9",
        "type": "GENERATION",
        "name": "chat",
        "startTime": "2025-03-04T10:00:00.000Z",
        "endTime": "2025-03-04T10:00:01.500Z",
        "completionStartTime": None,
        "providedModelName": "gpt-4o",
        "modelParameters": {**SDK_DEFAULTS, "temperature": 0.7},
        "input": {"messages": MESSAGES},
        "output": {"role": "assistant", "content": "Done."},
        "usageDetails": {"input": 12, "output": 2, "total": 14},
        "costDetails": {"total": 0.0001},
        "level": "DEFAULT",
        "statusMessage": None,
        "metadata": {"tenant": "acme"},
    }
    path = tmp_path / "observations-page.json"
    path.write_text(json.dumps({"data": [obs], "meta": {"cursor": None}}, indent=2))
    (ex,) = read_logs([path]).exchanges
    assert ex.request["model"] == "gpt-4o"
    assert ex.request["temperature"] == 0.7  # set by the application: kept
    assert "top_p" not in ex.request and "max_tokens" not in ex.request
    assert ex.response is not None and ex.response.latency_ms == pytest.approx(1500.0)
    assert ex.metadata["tenant"] == "acme"


# ---------------------------------------------------------------- Helicone


def _helicone_record(i: int, status: int = 200) -> dict[str, Any]:
    """One row of POST /v1/request/query-clickhouse as the export tool writes it with
    --include-body (request_body/response_body from the signed body URL). Source:
    Helicone/helicone@main:examples/export/typescript/index.ts (RequestResponse, getAllData)
    and https://docs.helicone.ai/rest/request/post-v1requestquery-clickhouse."""
    body: dict[str, Any] = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1722500000 + i,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": ANSWER, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
    if status != 200:
        body = {
            "error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}
        }
    return {
        "response_id": f"resp-{i}",
        "response_created_at": "2024-08-01T12:00:01.000Z",
        "response_status": status,
        "request_id": f"req-{i}",
        "request_created_at": "2024-08-01T12:00:00.000Z",
        "request_body": {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0},
        "response_body": body,
        "request_properties": {"Helicone-Property-Feature": "orders"},
        "request_user_id": "user-7",
        "model": "gpt-4o-2024-08-06",
        "prompt_tokens": 20,
        "completion_tokens": 5,
        "latency": 812,
        "cost_usd": 0.0001,
        "provider": "OPENAI",
        "signed_body_url": "https://example.invalid/body",
    }


def test_helicone_json_export_with_its_trailing_comma(tmp_path: Path) -> None:
    # The export tool writes "[\n", each record JSON.stringify(record, null, 2) followed by
    # ",\n" while under --limit, then "]\n": a comma before the closing bracket.
    path = tmp_path / "output.json"
    text = "[\n" + "".join(
        json.dumps(r, indent=2) + ",\n" for r in (_helicone_record(1), _helicone_record(2, 429))
    )
    path.write_text(text + "]\n")
    result = read_logs([path])
    assert result.formats == {"helicone": 2}
    ok, failed = result.exchanges
    assert ok.id == "req-1" and ok.response is not None and ok.response.text == ANSWER["content"]
    assert ok.metadata["Helicone-Property-Feature"] == "orders"
    assert failed.error is not None and failed.error.startswith("HTTP 429")
    assert failed.response is None


def test_helicone_jsonl_export_and_api_page(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "output.jsonl", [_helicone_record(1), _helicone_record(2)])
    page = tmp_path / "query-clickhouse.json"
    page.write_text(json.dumps({"data": [_helicone_record(3)], "error": None}))
    result = read_logs([jsonl, page])
    assert result.formats == {"helicone": 3}
    assert [ex.id for ex in result.exchanges] == ["req-1", "req-2", "req-3"]


def test_helicone_csv_export_with_doubled_quotes(tmp_path: Path) -> None:
    # convertToCSVRow (source as above) writes these 12 columns, JSON-stringifies objects,
    # doubles their quotes, then quotes the cell doubling them again: no response_body column.
    fields = [
        "response_id",
        "response_created_at",
        "response_status",
        "request_created_at",
        "request_body",
        "request_properties",
        "request_user_id",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "latency",
        "cost_usd",
    ]

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            value = json.dumps(value, separators=(",", ":")).replace('"', '""')
        if value is None:
            return ""
        return '"' + str(value).replace('"', '""') + '"'

    lines = [",".join(fields)]
    for rec in (_helicone_record(1), _helicone_record(2, 500)):
        lines.append(",".join(cell(rec.get(f)) for f in fields))
    path = tmp_path / "output.csv"
    path.write_text("\n".join(lines) + "\n")
    result = read_logs([path])
    assert result.formats == {"helicone": 2}, result.skipped
    ok, failed = result.exchanges
    assert ok.id == "resp-1"
    assert ok.request["messages"] == MESSAGES and ok.request["temperature"] == 0
    assert ok.response is None and "include-body" in ok.metadata["note"]
    assert failed.error is not None and failed.error.startswith("HTTP 500")


def test_a_broken_json_document_blames_the_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"request_body": {"model": "m"},\n]\n')
    with pytest.raises(LogFormatError, match=r"nor one valid JSON document .*line 3 column 1"):
        read_logs([path])


def test_langfuse_generations_csv_with_camel_case_columns(tmp_path: Path) -> None:
    # The generations table exported from the UI: the API's camelCase field names as columns
    # (the Observation fields of https://api.reference.langfuse.com), objects as JSON text, no
    # type column (the table holds generations only).
    rows = [
        {
            "id": f"gen-{i}",
            "traceId": f"trace-{i}",
            "name": "chat",
            "startTime": "2025-03-04T10:00:00.000Z",
            "endTime": "2025-03-04T10:00:00.400Z",
            "model": "gpt-4o-mini",
            "modelParameters": SDK_DEFAULTS,
            "input": MESSAGES,
            "output": ANSWER,
            "usageDetails": {"input": 20, "output": 5, "total": 25},
            "level": "DEFAULT",
            "statusMessage": None,
        }
        for i in range(3)
    ]
    path = _write_csv(tmp_path / "generations.csv", rows)
    result = read_logs([path])
    assert result.formats == {"langfuse": 3}, result.skipped
    ex = result.exchanges[0]
    assert ex.request == {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert ex.response is not None and ex.response.latency_ms == pytest.approx(400.0)


def test_langfuse_sdk_spans_over_otlp(tmp_path: Path) -> None:
    # The Langfuse SDK (v3+) is built on OpenTelemetry: a generation is a span with
    # langfuse.observation.* attributes, values JSON-serialised (langfuse/langfuse-python@main:
    # langfuse/_client/attributes.py, LangfuseOtelSpanAttributes and
    # create_generation_attributes). Captured with a collector's file exporter.
    def attr(key: str, value: Any) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    def span(span_id: str, kind: str, *, error: bool = False) -> dict[str, Any]:
        return {
            "traceId": "5b8aa5a2d2c872e8321cf37308d69df2",
            "spanId": span_id,
            "name": "OpenAI-generation",
            "startTimeUnixNano": "1741082400000000000",
            "endTimeUnixNano": "1741082400750000000",
            "attributes": [
                attr("langfuse.observation.type", kind),
                attr("langfuse.observation.input", json.dumps(MESSAGES)),
                attr("langfuse.observation.output", json.dumps(ANSWER)),
                attr("langfuse.observation.model.name", "gpt-4o-mini"),
                attr("langfuse.observation.model.parameters", json.dumps(SDK_DEFAULTS)),
                attr("langfuse.observation.usage_details", json.dumps({"input": 20, "output": 5})),
                attr(
                    "langfuse.observation.completion_start_time",
                    json.dumps("2025-03-04T10:00:00.250000+00:00"),
                ),
                attr("langfuse.observation.metadata.feature", "orders"),
            ],
            "status": {"code": 2, "message": "Connection error."} if error else {},
        }

    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", "shop")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "langfuse-sdk"},
                        "spans": [
                            span("a1", "generation"),
                            span("a2", "span"),
                            span("a3", "generation", error=True),
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "otel-traces.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    result = read_logs([path])
    assert len(result.exchanges) == 2, result.skipped
    ok, failed = result.exchanges
    assert ok.request == {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert set(ok.metadata["dropped_params"]) == set(SDK_DEFAULTS)
    assert ok.response is not None and ok.response.text == ANSWER["content"]
    assert ok.response.latency_ms == pytest.approx(750.0)
    assert ok.response.ttft_ms == pytest.approx(250.0)
    assert ok.metadata["feature"] == "orders"
    assert failed.response is None and failed.error == "Connection error."


def test_a_bare_infinity_written_by_python_json_dumps(tmp_path: Path) -> None:
    # An export script dumping the SDK's modelParameters with json.dumps writes max_tokens
    # float("inf") as a bare Infinity (not JSON; Python's default allow_nan=True): the line is
    # read, and the value that cannot have been sent is not replayed.
    obs = {
        "id": "obs-inf",
        "traceId": "t",
        "type": "GENERATION",
        "startTime": "2025-03-04T10:00:00Z",
        "model": "gpt-4o",
        "modelParameters": {"temperature": 0.3, "max_tokens": float("inf")},
        "input": MESSAGES,
        "output": ANSWER,
    }
    pair = {
        "request": {"model": "gpt-4o", "messages": MESSAGES, "top_p": float("nan")},
        "response": None,
    }
    path = tmp_path / "dump.jsonl"
    path.write_text(json.dumps(obs) + "\n")
    assert "Infinity" in path.read_text()
    result = read_logs([path])
    assert not result.skipped
    (lf,) = result.exchanges
    assert lf.request["temperature"] == 0.3 and "max_tokens" not in lf.request
    assert lf.metadata["dropped_params"] == {"max_tokens": "inf"}
    only_pair = tmp_path / "pair.jsonl"
    only_pair.write_text(json.dumps(pair) + "\n")
    (ex,) = read_logs([only_pair]).exchanges
    assert "top_p" not in ex.request
    assert ex.metadata["dropped_params_reason"] == "not a finite number"


def test_helicone_manual_logger_requests(tmp_path: Path) -> None:
    # HeliconeAsyncLogRequest, the body the manual logger / async SDKs send to
    # /custom/v1/log (https://docs.helicone.ai/getting-started/integration-method/
    # manual-logger-curl: providerRequest {url, json, meta}, providerResponse {headers, status,
    # json | textBody}, timing {startTime, endTime: {seconds, milliseconds}, timeToFirstToken}),
    # as an application that tees them to a file writes them.
    def log(i: int, status: int = 200) -> dict[str, Any]:
        rec = _helicone_record(i, status)
        return {
            "providerRequest": {
                "url": "https://api.openai.com/v1/chat/completions",
                "json": rec["request_body"],
                "meta": {"Helicone-Property-Feature": "orders"},
            },
            "providerResponse": {"headers": {}, "status": status, "json": rec["response_body"]},
            "timing": {
                "startTime": {"seconds": 1722513600, "milliseconds": 100},
                "endTime": {"seconds": 1722513601, "milliseconds": 350},
                "timeToFirstToken": 420,
            },
        }

    result = read_logs([write_jsonl(tmp_path / "helicone-async.jsonl", [log(1), log(2, 500)])])
    assert result.formats == {"helicone": 2}, result.skipped
    ok, failed = result.exchanges
    assert ok.request["messages"] == MESSAGES
    assert ok.response is not None and ok.response.latency_ms == pytest.approx(1250.0)
    assert ok.response.ttft_ms == 420 and ok.metadata["Helicone-Property-Feature"] == "orders"
    assert failed.response is None and failed.error is not None


def test_langfuse_blob_export_folder_with_traces_and_scores(tmp_path: Path) -> None:
    # The blob-storage export writes one folder per table: observations/, traces/, scores/
    # (https://langfuse.com/docs/api-and-data-platform/features/export-to-blob-storage; the
    # ClickHouse traces columns id, timestamp, name, user_id, metadata, release, version,
    # project_id, environment, public, bookmarked, tags, input, output, session_id...; scores
    # id, timestamp, project_id, trace_id, observation_id, name, value, source, comment,
    # data_type, string_value...). Traces give their observations metadata; scores become
    # feedback; neither is an error.
    trace = {
        "id": "trace-1",
        "timestamp": "2025-03-04 10:00:00.000",
        "name": "support-chat",
        "user_id": "user-42",
        "metadata": {"tier": "gold"},
        "release": None,
        "version": None,
        "project_id": "proj-1",
        "environment": "default",
        "public": False,
        "bookmarked": False,
        "tags": ["checkout"],
        "input": None,
        "output": None,
        "session_id": "sess-9",
        "created_at": "2025-03-04 10:00:10.000",
        "updated_at": "2025-03-04 10:00:10.000",
        "event_ts": "2025-03-04 10:00:10.000",
        "is_deleted": 0,
    }

    def score(i: int, obs: str | None, value: float, name: str) -> dict[str, Any]:
        return {
            "id": f"score-{i}",
            "timestamp": "2025-03-04 10:05:00.000",
            "project_id": "proj-1",
            "trace_id": "trace-1",
            "observation_id": obs,
            "name": name,
            "value": value,
            "source": "API",
            "comment": None,
            "data_type": "NUMERIC",
            "string_value": None,
        }

    write_jsonl(tmp_path / "observations" / "2025-03-04.jsonl", [_blob_row(1)])
    write_jsonl(tmp_path / "traces" / "2025-03-04.jsonl", [trace, {**trace, "id": "trace-x"}])
    write_jsonl(
        tmp_path / "scores" / "2025-03-04.jsonl",
        [score(1, "obs-1", 1.0, "correct"), score(2, None, 0.0, "user-thumbs")],
    )
    result = read_logs([tmp_path])
    (ex,) = result.exchanges
    assert ex.metadata["session_id"] == "sess-9" and ex.metadata["user_id"] == "user-42"
    assert ex.metadata["tier"] == "gold" and ex.metadata["tags"] == ["checkout"]
    assert [f["name"] for f in ex.metadata["feedback"]] == ["correct", "user-thumbs"]
    # the trace with no generation is one skipped record of the traces file, saying so
    (issue,) = result.skipped
    assert "traces" in issue.file and "trace-x" in issue.reason


def test_side_files_join_on_the_dataset_path_too(tmp_path: Path) -> None:
    # The streamed, Arrow-backed read (what `run` uses) joins the same side files as read_logs.
    from migrate_eval.ingest import ingest_to_dataset, iter_exchanges

    write_jsonl(tmp_path / "observations.jsonl", [_blob_row(1), _blob_row(2)])
    write_jsonl(
        tmp_path / "scores.jsonl",
        [
            {
                "id": "s1",
                "trace_id": "trace-2",
                "observation_id": "obs-2",
                "name": "correct",
                "value": 0.0,
                "source": "ANNOTATION",
                "data_type": "BOOLEAN",
            }
        ],
    )
    in_memory = read_logs([tmp_path])
    ds, summary = ingest_to_dataset([tmp_path], tmp_path / "cache")
    streamed = list(iter_exchanges(ds))
    assert [ex.metadata for ex in streamed] == [ex.metadata for ex in in_memory.exchanges]
    assert streamed[1].metadata["feedback"][0]["name"] == "correct"
    assert summary.exchanges == 2 and summary.skipped == 0
