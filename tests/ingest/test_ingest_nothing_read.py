"""When nothing is read, the message says why (issue 14, section 3): the format each file was
sniffed as, the first reasons (file, line, field) and what to add."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.ingest import explain_nothing_read, read_logs
from tests.ingest.helpers import write_jsonl


def _output_line(i: int) -> dict[str, object]:
    # BatchRequestOutput (openai-openapi 2025-04-29: id, custom_id, response{status_code,
    # request_id, body}, error)
    return {
        "id": f"batch_req_{i}",
        "custom_id": f"task-{i}",
        "response": {
            "status_code": 200,
            "request_id": f"req_{i}",
            "body": {
                "id": f"chatcmpl-{i}",
                "object": "chat.completion",
                "created": 1711652795,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
            },
        },
        "error": None,
    }


def test_a_batch_output_file_alone(tmp_path: Path) -> None:
    out = write_jsonl(tmp_path / "batch_output.jsonl", [_output_line(1), _output_line(2)])
    result = read_logs([out])
    assert not result.exchanges
    assert result.sniffed == {str(out): "openai-batch (output/error file)"}
    message = explain_nothing_read(result.files, result.skipped, sniffed=result.sniffed)
    assert f"{out}: read as openai-batch (output/error file); 2 records skipped" in message
    assert f"{out}:1: field 'custom_id': no matching batch input line" in message
    assert "read the batch input file" in message
    # the profile command says the same, from its own streamed read
    res = CliRunner().invoke(main, ["profile", str(out)])
    assert res.exit_code == 2
    assert "read the batch input file" in res.output
    assert "openai-batch (output/error file)" in res.output


def test_spans_without_content_and_only_non_model_observations(tmp_path: Path) -> None:
    spans = tmp_path / "traces.json"
    spans.write_text(
        json.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "spanId": "a1",
                                        "attributes": [
                                            {
                                                "key": "gen_ai.operation.name",
                                                "value": {"stringValue": "chat"},
                                            }
                                        ],
                                    }
                                ]
                            }
                        ]
                    }
                ]
            }
        )
    )
    spans_only = write_jsonl(
        tmp_path / "observations.jsonl",
        [{"id": "o1", "type": "SPAN", "traceId": "t1", "startTime": "2025-01-01T00:00:00Z"}],
    )
    # without the sniffed roles, the message works them out again
    result = read_logs([spans, spans_only])
    message = explain_nothing_read(result.files, result.skipped)
    assert "read as otel-genai (whole file)" in message
    assert "read as langfuse" in message
    assert "resourceSpans[0].scopeSpans[0].spans[0].attributes.gen_ai.input.messages" in message
    assert "read the OTLP logs export (resourceLogs)" in message
    assert "export the model calls themselves" in message


def test_a_stored_completions_export_without_its_messages(tmp_path: Path) -> None:
    completion = {
        "object": "chat.completion",
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "created": 1738960610,
        "request_id": "req_1",
        "metadata": {},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    }
    path = write_jsonl(tmp_path / "completions.jsonl", [completion])
    result = read_logs([path])
    message = explain_nothing_read(result.files, result.skipped, sniffed=result.sniffed)
    assert "read as openai-stored-completions" in message
    assert "/messages pages together with the completions export" in message
