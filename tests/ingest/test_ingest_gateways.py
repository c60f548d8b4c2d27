"""LiteLLM and Portkey logs in the shapes the tools write (issue 14, section 1).

Files are written by the tests from the tools' published shapes; each test names its source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate_eval.ingest import read_logs
from tests.ingest.helpers import write_jsonl

MESSAGES = [
    {"role": "system", "content": "Classify the ticket."},
    {"role": "user", "content": "My card was charged twice."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_label",
            "parameters": {"type": "object", "properties": {"label": {"type": "string"}}},
        },
    }
]


def _completion(i: int, text: str | None = "billing") -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1730000000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text, "tool_calls": None},
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 1, "total_tokens": 31},
    }


def _payload(i: int, **over: Any) -> dict[str, Any]:
    """A StandardLoggingPayload (BerriAI/litellm@main:docs/my-website/docs/proxy/
    logging_spec.md; litellm/types/utils.py StandardLoggingPayload), as a custom callback
    writes kwargs["standard_logging_object"] with json.dumps."""
    payload: dict[str, Any] = {
        "id": f"litellm-{i}",
        "trace_id": f"trace-{i}",
        "call_type": "acompletion",
        "stream": False,
        "response_cost": 0.00002,
        "status": "success",
        "custom_llm_provider": "openai",
        "total_tokens": 31,
        "prompt_tokens": 30,
        "completion_tokens": 1,
        "startTime": 1730000000.25 + i,
        "endTime": 1730000000.95 + i,
        "completionStartTime": 1730000000.95 + i,
        "response_time": 0.7,
        "model_map_information": {"model_map_key": "gpt-4o-mini", "model_map_value": None},
        "model": "gpt-4o-mini",
        "model_id": "abc123",
        "model_group": "gpt-4o-mini",
        "api_base": "https://api.openai.com/v1",
        "metadata": {
            "user_api_key_hash": "88dc28",
            "user_api_key_alias": "support-bot",
            "user_api_key_team_id": None,
            "spend_logs_metadata": {"feature": "triage"},
            "requester_ip_address": "",
            "requester_metadata": {"tenant": "acme"},
        },
        "cache_hit": None,
        "cache_key": None,
        "saved_cache_cost": 0.0,
        "request_tags": ["prod"],
        "end_user": None,
        "requester_ip_address": "",
        "messages": MESSAGES,
        "response": _completion(i),
        "error_str": None,
        "error_information": {"error_code": "", "error_class": "", "llm_provider": ""},
        "model_parameters": {"temperature": 0, "tools": TOOLS, "extra_body": {}},
        "hidden_params": {"model_id": "abc123", "api_base": "https://api.openai.com/v1"},
    }
    payload.update(over)
    return payload


def test_litellm_standard_logging_payload_lines(tmp_path: Path) -> None:
    failed = _payload(
        2,
        status="failure",
        response=None,
        error_str="litellm.RateLimitError: Rate limit reached for gpt-4o-mini",
        error_information={
            "error_code": "429",
            "error_class": "RateLimitError",
            "llm_provider": "openai",
        },
    )
    embedding = _payload(3, call_type="aembedding", messages="hello")
    path = write_jsonl(tmp_path / "litellm.jsonl", [_payload(1), failed, embedding])
    result = read_logs([path])
    assert result.formats == {"litellm": 2}
    ok, err = result.exchanges
    assert ok.id == "litellm-1"
    assert ok.request["model"] == "gpt-4o-mini" and ok.request["temperature"] == 0
    assert ok.request["tools"] == TOOLS and "extra_body" not in ok.request
    assert ok.response is not None and ok.response.text == "billing"
    assert ok.response.latency_ms is not None and 690 < ok.response.latency_ms < 710
    assert ok.metadata["feature"] == "triage" and ok.metadata["tenant"] == "acme"
    assert ok.metadata["tags"] == ["prod"]
    assert err.response is None
    assert err.error is not None and err.error.startswith("HTTP 429: RateLimitError")
    assert result.skipped[0].field == "call_type"
    assert result.skipped[0].reason.startswith("unsupported endpoint")


def test_litellm_bucket_logger_object_per_file(tmp_path: Path) -> None:
    # The GCS / S3 bucket loggers write one StandardLoggingPayload object per file (source:
    # BerriAI/litellm@main:litellm/integrations/gcs_bucket/gcs_bucket.py, json.dumps of the
    # payload): one (pretty-printed) JSON document.
    path = tmp_path / "2024-10-27" / "litellm-7.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_payload(7), indent=2))
    (ex,) = read_logs([tmp_path]).exchanges
    assert ex.id == "litellm-7" and ex.response is not None


def _spend_row(i: int, **over: Any) -> dict[str, Any]:
    """A row of GET /spend/logs (the LiteLLM_SpendLogs table: BerriAI/litellm@main:
    schema.prisma model LiteLLM_SpendLogs; docs/my-website/docs/proxy/cost_tracking.md)."""
    row: dict[str, Any] = {
        "request_id": f"chatcmpl-spend-{i}",
        "call_type": "acompletion",
        "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
        "spend": 0.00002,
        "total_tokens": 31,
        "prompt_tokens": 30,
        "completion_tokens": 1,
        "startTime": "2024-10-27T10:00:00.250000+00:00",
        "endTime": "2024-10-27T10:00:01.000000+00:00",
        "completionStartTime": "2024-10-27T10:00:00.500000+00:00",
        "model": "gpt-4o-mini",
        "model_id": "abc123",
        "model_group": "gpt-4o-mini",
        "custom_llm_provider": "openai",
        "api_base": "https://api.openai.com/v1",
        "user": "",
        "metadata": {"user_api_key_alias": "support-bot", "status": "success"},
        "cache_hit": "False",
        "cache_key": "Cache OFF",
        "request_tags": ["prod"],
        "team_id": None,
        "end_user": "customer-9",
        "requester_ip_address": "",
        "messages": MESSAGES,
        "response": _completion(i),
        "proxy_server_request": {
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "max_tokens": 5,
            "metadata": {"generation_name": "triage"},
            "litellm_session_id": "sess-1",
            "api_key": "sk-do-not-keep",
        },
        "session_id": "sess-1",
        "status": "success",
    }
    row.update(over)
    return row


def test_litellm_spend_logs_api_rows(tmp_path: Path) -> None:
    not_stored = _spend_row(3, messages={}, response={}, proxy_server_request={})
    failed = _spend_row(
        2,
        response={},
        status="failure",
        metadata={
            "status": "failure",
            "error_information": {
                "error_code": "400",
                "error_class": "BadRequestError",
                "error_message": "Invalid 'messages[1].content'",
            },
        },
    )
    path = tmp_path / "spend-logs.json"
    path.write_text(json.dumps([_spend_row(1), failed, not_stored]))
    result = read_logs([path])
    assert result.formats == {"litellm": 2}
    ok, err = result.exchanges
    assert ok.request == {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 5}
    assert ok.response is not None and ok.response.latency_ms is not None
    assert round(ok.response.latency_ms) == 750 and round(ok.response.ttft_ms or 0) == 250
    assert ok.metadata["end_user"] == "customer-9"
    # what the client told the proxy is kept aside, never replayed; a key is never kept
    assert ok.metadata["proxy_params"] == {
        "metadata": {"generation_name": "triage"},
        "litellm_session_id": "sess-1",
    }
    assert "sk-do-not-keep" not in json.dumps(ok.model_dump(mode="json"))
    assert err.error is not None and "BadRequestError" in err.error and err.response is None
    (issue,) = result.skipped
    assert issue.line == 3 and "store_prompts_in_spend_logs" in issue.reason


def test_litellm_spend_logs_v2_page(tmp_path: Path) -> None:
    # /spend/logs/v2 pages: {"data": [...], "total": n, "page": 1, "page_size": 50}
    path = tmp_path / "spend-v2.json"
    path.write_text(json.dumps({"data": [_spend_row(5)], "total": 1, "page": 1, "page_size": 50}))
    (ex,) = read_logs([path]).exchanges
    assert ex.id == "chatcmpl-spend-5"


# ---------------------------------------------------------------- Portkey


def _portkey_row(i: int, *, dotted: bool, status: int = 200) -> dict[str, Any]:
    """One line of Portkey's logs export (JSONL), the columns of
    https://portkey.ai/docs/product/observability/logs-export ("Exported Data": created_at,
    request.body, response.body, is_success, ai_org, ai_model, req_units, res_units,
    total_units, cost, cost_currency, request_url, request_method, response_status_code,
    response_time, cache_status, trace_id, metadata...)."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.3}
    resp: dict[str, Any] = _completion(i)
    if status != 200:
        resp = {"error": {"message": "Invalid API key", "type": "invalid_request_error"}}
    row: dict[str, Any] = {
        "id": f"pk-{i}",
        "created_at": "2025-01-05T08:00:00.000Z",
        "is_success": 1 if status == 200 else 0,
        "ai_org": "openai",
        "ai_model": "gpt-4o-mini",
        "req_units": 30,
        "res_units": 1,
        "total_units": 31,
        "cost": 0.002,
        "cost_currency": "USD",
        "request_url": "https://api.openai.com/v1/chat/completions",
        "request_method": "POST",
        "response_status_code": status,
        "response_time": 640,
        "cache_status": "DISABLED",
        "trace_id": f"trace-{i}",
        "metadata": {"_user": "u-1", "feature": "triage"},
    }
    if dotted:
        row["request.body"] = body
        row["response.body"] = resp
    else:
        row["request"] = {"body": body}
        row["response"] = {"body": resp}
    return row


def test_portkey_logs_export_dotted_and_nested(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "portkey-export.jsonl",
        [
            _portkey_row(1, dotted=True),
            _portkey_row(2, dotted=False),
            _portkey_row(3, dotted=True, status=401),
        ],
    )
    result = read_logs([path])
    assert result.formats == {"portkey": 3}
    a, b, c = result.exchanges
    assert (
        a.request == b.request == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.3}
    )
    assert a.response is not None and a.response.latency_ms == 640
    assert a.metadata["feature"] == "triage" and a.metadata["trace_id"] == "trace-1"
    assert c.response is None and c.error is not None and c.error.startswith("HTTP 401")


def test_portkey_export_without_request_bodies_says_which_column(tmp_path: Path) -> None:
    row = _portkey_row(1, dotted=True)
    row["request.body"] = None
    result = read_logs([write_jsonl(tmp_path / "p.jsonl", [row])])
    (issue,) = result.skipped
    assert issue.field == "request.body" and "add request.body" in issue.reason


def test_portkey_custom_log_shape(tmp_path: Path) -> None:
    # Portkey's "insert a log" body (POST /v1/logs: request {url, method, headers, body},
    # response {status, headers, body, response_time}, metadata; https://portkey.ai/docs/
    # api-reference/admin-api/data-plane/logs/insert-a-log): read as a request/response pair.
    ok = {
        "request": {
            "url": "https://api.openai.com/v1/chat/completions",
            "method": "POST",
            "headers": {"content-type": "application/json"},
            "body": {"model": "gpt-4o-mini", "messages": MESSAGES},
        },
        "response": {"status": 200, "headers": {}, "body": _completion(1), "response_time": 300},
        "metadata": {"_user": "u-1", "feature": "triage"},
    }
    failed = {
        **ok,
        "response": {"status": 503, "headers": {}, "body": {"error": {"message": "overloaded"}}},
    }
    result = read_logs([write_jsonl(tmp_path / "portkey-logs.jsonl", [ok, failed])])
    a, b = result.exchanges
    assert a.request == {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert a.response is not None and a.response.text == "billing"
    assert a.metadata["feature"] == "triage"
    assert b.response is None and b.error == "HTTP 503: overloaded"


def test_litellm_spend_logs_table_dumped_as_csv(tmp_path: Path) -> None:
    # A CSV dump of the LiteLLM_SpendLogs table (e.g. psql \copy ... csv header): the same
    # columns as /spend/logs rows, JSON columns as JSON text.
    import csv

    rows = [_spend_row(1), _spend_row(2)]
    header = list(rows[0])
    path = tmp_path / "LiteLLM_SpendLogs.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(
                [
                    json.dumps(row[k]) if isinstance(row[k], dict | list) else row[k] or ""
                    for k in header
                ]
            )
    result = read_logs([path])
    assert result.formats == {"litellm": 2}, result.skipped
    assert result.exchanges[0].request["max_tokens"] == 5
