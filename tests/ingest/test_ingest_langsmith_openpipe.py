"""LangSmith and OpenPipe exports beyond single runs / dataset rows (issue 14, section 1).

Files are written by the tests from the tools' published shapes; each test names its source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.ingest import read_logs
from tests.ingest.helpers import write_jsonl

MESSAGES = [
    {"role": "system", "content": "Summarise in five words."},
    {"role": "user", "content": "The meeting moved to Friday at noon."},
]


def _run(i: int, **over: Any) -> dict[str, Any]:
    """A LangSmith run of a `langsmith.wrappers.wrap_openai` client (run_type "llm", the
    OpenAI kwargs as inputs, the chat completion as outputs). Fields of
    langchain-ai/langsmith-sdk@main:python/langsmith/schemas.py (RunBase/Run: id, name,
    start_time, run_type, end_time, extra, error, inputs, outputs, tags, trace_id,
    session_id, parent_run_id, status...)."""
    run: dict[str, Any] = {
        "id": f"0193-run-{i}",
        "name": "ChatOpenAI",
        "start_time": "2024-11-11T23:43:54.000000",
        "end_time": "2024-11-11T23:43:55.250000",
        "run_type": "llm",
        "extra": {
            "invocation_params": {"model": "gpt-4o-mini", "temperature": 0.2},
            "metadata": {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "team": "ops"},
        },
        "error": None,
        "inputs": {"messages": MESSAGES, "model": "gpt-4o-mini", "temperature": 0.2},
        "outputs": {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 1731368635,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Meeting moved to Friday noon."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 25, "completion_tokens": 7, "total_tokens": 32},
        },
        "tags": ["prod"],
        "trace_id": f"0193-trace-{i}",
        "session_id": "proj-1",
        "parent_run_id": None,
        "status": "success",
    }
    run.update(over)
    return run


def test_langsmith_runs_query_page(tmp_path: Path) -> None:
    # POST /api/v1/runs/query answers {"runs": [...], "cursors": {...}}
    # (https://api.smith.langchain.com/redoc, query_runs)
    failed = _run(2, outputs=None, status="error", error="openai.RateLimitError: 429\nTraceback")
    chain = _run(3, run_type="chain")
    page = tmp_path / "runs.json"
    page.write_text(json.dumps({"runs": [_run(1), failed, chain], "cursors": {"next": None}}))
    result = read_logs([page])
    assert result.formats == {"langsmith": 2}
    ok, err = result.exchanges
    assert ok.request["messages"] == MESSAGES and ok.request["temperature"] == 0.2
    assert ok.response is not None and ok.response.latency_ms == pytest.approx(1250.0)
    assert err.response is None and err.error == "openai.RateLimitError: 429"
    assert result.skipped[0].field == "run_type"


def test_langsmith_bulk_export_parquet(tmp_path: Path) -> None:
    # Bulk data export writes runs as Parquet (https://docs.smith.langchain.com/observability/
    # how_to_guides/data_export: "exported in Parquet format"), objects as JSON text columns and
    # times as timestamps.
    import datetime as dt

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    runs = [_run(1), _run(2, run_type="chain")]
    table = pa.table(
        {
            "id": [r["id"] for r in runs],
            "name": [r["name"] for r in runs],
            "run_type": [r["run_type"] for r in runs],
            "start_time": [dt.datetime(2024, 11, 11, 23, 43, 54) for _ in runs],
            "end_time": [dt.datetime(2024, 11, 11, 23, 43, 55, 500000) for _ in runs],
            "inputs": [json.dumps(r["inputs"]) for r in runs],
            "outputs": [json.dumps(r["outputs"]) for r in runs],
            "extra": [json.dumps(r["extra"]) for r in runs],
            "error": [None for _ in runs],
            "trace_id": [r["trace_id"] for r in runs],
            "status": ["success" for _ in runs],
        }
    )
    path = tmp_path / "export" / "runs.parquet"
    path.parent.mkdir()
    pq.write_table(table, path)
    result = read_logs([path])
    assert result.formats == {"langsmith": 1}, result.skipped
    (ex,) = result.exchanges
    assert ex.request["model"] == "gpt-4o-mini" and ex.request["messages"] == MESSAGES
    assert ex.response is not None and ex.response.latency_ms == pytest.approx(1500.0)
    assert ex.metadata["team"] == "ops"
    assert result.skipped[0].line == 2 and result.skipped[0].field == "run_type"


def test_openpipe_request_logs_export(tmp_path: Path) -> None:
    # Request logs export (https://docs.openpipe.ai/features/request-logs/exporting-logs):
    # {"input": <chat request>, "output": <chat completion or error>, "tags": {...}}
    ok = {
        "input": {"model": "gpt-4o-mini", "messages": MESSAGES},
        "output": {
            "id": "c767",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "created": 1702666185,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Friday noon meeting."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 25, "completion_tokens": 4, "total_tokens": 29},
        },
        "tags": {"prompt_id": "summary"},
    }
    err = {
        "input": {"model": "gpt-4o-mini", "messages": MESSAGES},
        "output": {"error": {"message": "Rate limit exceeded", "type": "requests"}},
        "tags": {"prompt_id": "summary"},
    }
    result = read_logs([write_jsonl(tmp_path / "openpipe-logs.jsonl", [ok, err])])
    assert len(result.exchanges) == 2, result.skipped
    first, second = result.exchanges
    assert first.response is not None and first.response.text == "Friday noon meeting."
    assert first.metadata["tags"] == {"prompt_id": "summary"}
    assert second.response is None and second.error is not None
    assert "Rate limit" in second.error
