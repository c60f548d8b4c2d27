"""openai-batch: Batch API input files, joined with their output files on custom_id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import BadLineError
from migrate_eval.ingest import read_logs
from tests.ingest.helpers import cassette_pairs, data_file, write_jsonl


def _responses_body(text: str, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1776481279,
        "status": "completed",
        "model": "gpt-5.4-nano-2026-03-01",
        "output": [
            {"id": "rs_1", "type": "reasoning", "summary": []},
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": 180,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": 60,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": 240,
        },
    }


def _ok(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req_{custom_id}", "body": body},
        "error": None,
    }


def test_nightly_batch_input_converts_responses_requests() -> None:
    path = data_file("openai-cookbook", "nightly_support_qa_batch.jsonl")
    result = read_logs([path])
    assert (result.lines_read, len(result.exchanges), result.skipped) == (10, 10, [])
    assert result.formats == {"openai-batch": 10}
    assert [ex.id for ex in result.exchanges] == [f"qa-T-{i:03d}" for i in range(1, 11)]
    first_line = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    ex = result.exchanges[0]
    assert ex.request == {
        "model": "gpt-5.4-nano",
        "messages": [
            {"role": "system", "content": first_line["body"]["instructions"]},
            {"role": "user", "content": first_line["body"]["input"]},
        ],
        "max_tokens": 160,
        "reasoning_effort": "low",
        "verbosity": "low",
    }
    assert ex.metadata == {"endpoint": "/v1/responses"}
    assert ex.response is None and ex.error is None  # an input file alone: nothing logged yet
    assert ex.system_prompt == "Return concise internal support QA tags and a one-sentence summary."


def test_nightly_batch_joined_with_an_output_file(tmp_path: Path) -> None:
    inputs = data_file("openai-cookbook", "nightly_support_qa_batch.jsonl")
    output_lines = [
        _ok(
            "qa-T-001",
            _responses_body(
                "tags: order_status. Order O-1001 is in transit.", cached=128, reasoning=32
            ),
        ),
        _ok(
            "qa-T-002",
            {
                **_responses_body("unused"),
                "output": [
                    {
                        "type": "function_call",
                        "call_id": "call_9",
                        "name": "lookup_order",
                        "arguments": '{"order_id": "O-1002"}',
                    }
                ],
            },
        ),
        {
            "id": "batch_req_3",
            "custom_id": "qa-T-003",
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window expired.",
            },
        },
        {
            "id": "batch_req_4",
            "custom_id": "qa-T-004",
            "response": {
                "status_code": 500,
                "request_id": "req_4",
                "body": {"error": {"message": "The server had an error.", "type": "server_error"}},
            },
            "error": None,
        },
        _ok("qa-T-005", {"object": "response", "status": "completed", "output": "not a list"}),
        _ok("qa-T-999", _responses_body("an answer to a request we do not have")),
        _ok("qa-T-001", _responses_body("a second answer for the same custom_id")),
    ]
    outputs = write_jsonl(tmp_path / "batch_output.jsonl", output_lines)
    with outputs.open("a", encoding="utf-8") as fh:
        fh.write('{"custom_id": "qa-T-006", "response": {"status_code": 200,\n')  # cut short

    # The output file may come first: it is joined whatever the order.
    result = read_logs([outputs, inputs])

    by_id = {ex.id: ex for ex in result.exchanges}
    assert sorted(by_id) == [f"qa-T-{i:03d}" for i in (1, 2, 3, 4, 6, 7, 8, 9, 10)]
    ok = by_id["qa-T-001"]
    assert ok.response is not None and ok.error is None
    assert ok.response.text == "tags: order_status. Order O-1001 is in transit."
    assert ok.response.finish_reason == "stop"
    assert ok.response.usage is not None
    assert (ok.response.usage.prompt_tokens, ok.response.usage.completion_tokens) == (180, 60)
    assert (ok.response.usage.cached_tokens, ok.response.usage.reasoning_tokens) == (128, 32)
    assert ok.metadata["request_id"] == "req_qa-T-001"
    assert ok.timestamp is not None and int(ok.timestamp.timestamp()) == 1776481279
    assert ok.source.file == str(inputs) and ok.source.line == 1

    tool = by_id["qa-T-002"].response
    assert tool is not None and tool.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.parsed_arguments) for c in tool.tool_calls] == [
        ("call_9", "lookup_order", {"order_id": "O-1002"})
    ]
    # Error lines are kept as logged errors, not skipped.
    assert by_id["qa-T-003"].response is None
    assert by_id["qa-T-003"].error == (
        "batch_expired: This request could not be executed before the completion window expired."
    )
    assert by_id["qa-T-004"].error == "HTTP 500: server_error: The server had an error."
    # Input lines no output line answers (006-010) failed: the error file holds them
    # (issue 14: a failed logged call is a logged failure, never an exchange with no answer).
    assert result.logged_errors == 7
    missing = by_id["qa-T-006"]
    assert missing.response is None and missing.error is not None
    assert "error file" in missing.error and missing.metadata["batch_missing_output"] is True

    skipped = {(Path(i.file).name, i.line): i for i in result.skipped}
    assert sorted(skipped) == [
        ("batch_output.jsonl", 5),
        ("batch_output.jsonl", 6),
        ("batch_output.jsonl", 7),
        ("batch_output.jsonl", 8),
    ]
    # The malformed output line takes its input line with it, and says where it is.
    assert skipped["batch_output.jsonl", 5].field == "response.body.output"
    assert skipped["batch_output.jsonl", 5].reason.startswith("wrong type")
    assert skipped["batch_output.jsonl", 6].reason.startswith("no matching batch input line")
    assert "qa-T-999" in skipped["batch_output.jsonl", 6].reason
    assert skipped["batch_output.jsonl", 7].reason.startswith("duplicate custom_id")
    assert skipped["batch_output.jsonl", 8].reason.startswith("invalid JSON")

    # 10 input lines + 3 output lines that could not be joined (unknown id, repeat, bad JSON).
    assert result.lines_read == 13
    assert result.lines_read == len(result.exchanges) + len(result.skipped)
    assert result.files == [str(outputs), str(inputs)]
    assert result.summary().skipped_by_reason == {
        "wrong type": 1,
        "no matching batch input line": 1,
        "duplicate custom_id": 1,
        "invalid JSON": 1,
    }


def test_output_file_alone_skips_every_line_with_a_clear_reason(tmp_path: Path) -> None:
    outputs = write_jsonl(
        tmp_path / "out.jsonl",
        [_ok("a", _responses_body("x")), _ok("b", _responses_body("y"))],
    )
    result = read_logs([outputs])
    assert result.exchanges == []
    assert result.lines_read == 2 == len(result.skipped)
    assert [(i.line, i.field) for i in result.skipped] == [(1, "custom_id"), (2, "custom_id")]
    assert all("no matching batch input line" in i.reason for i in result.skipped)
    with pytest.raises(
        BadLineError, match=r"out\.jsonl:1: field 'custom_id': no matching batch input line"
    ):
        read_logs([outputs], strict=True)


def test_chat_completions_batch_with_cassette_responses(tmp_path: Path) -> None:
    """Real recorded chat completions as a Batch: tool calls and usage survive the join."""
    pairs = [
        p
        for p in cassette_pairs("test_chat_completion_*.yaml")
        if p["response"]["body"].startswith("{")
    ]
    inputs = [
        {
            "custom_id": p["id"],
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": p["request"],
        }
        for p in pairs
    ]
    outputs = [
        {
            "id": f"batch_req_{i}",
            "custom_id": p["id"],
            "response": {
                "status_code": p["response"]["status_code"],
                "request_id": f"req_{i}",
                "body": json.loads(p["response"]["body"]),
            },
            "error": None,
        }
        for i, p in enumerate(pairs)
    ]
    result = read_logs(
        [write_jsonl(tmp_path / "in.jsonl", inputs), write_jsonl(tmp_path / "out.jsonl", outputs)]
    )
    assert len(result.exchanges) == len(pairs) and result.skipped == []
    assert result.lines_read == len(pairs)
    by_id = {ex.id: ex for ex in result.exchanges}
    tool = by_id["test_chat_completion_tool_calls_with_content#0"]
    assert tool.response is not None
    assert [c.parsed_arguments for c in tool.response.tool_calls] == [
        {"location": "Seattle, WA"},
        {"location": "San Francisco, CA"},
    ]
    assert tool.request["tools"][0]["function"]["name"] == "get_current_weather"
    assert by_id["test_chat_completion_404#0"].error is not None
    assert by_id["test_chat_completion_404#0"].error.startswith("HTTP 404: model_not_found")


def test_responses_cassettes_as_a_batch(tmp_path: Path) -> None:
    """Real recorded Responses API calls: requests converted, responses normalised."""
    pairs = [
        p
        for p in cassette_pairs("test_responses_create_*.yaml")
        if p["response"]["body"].startswith("{")
    ]
    inputs = [
        {"custom_id": p["id"], "method": "POST", "url": "/v1/responses", "body": p["request"]}
        for p in pairs
    ]
    outputs = [
        {
            "custom_id": p["id"],
            "response": {
                "status_code": p["response"]["status_code"],
                "body": json.loads(p["response"]["body"]),
            },
        }
        for p in pairs
    ]
    result = read_logs(
        [write_jsonl(tmp_path / "in.jsonl", inputs), write_jsonl(tmp_path / "out.jsonl", outputs)]
    )
    assert result.skipped == [] and len(result.exchanges) == len(pairs)
    by_id = {ex.id: ex for ex in result.exchanges}

    reasoning = by_id["test_responses_create_reports_reasoning_tokenscontent_mode0#0"]
    assert reasoning.response is not None and reasoning.response.usage is not None
    assert reasoning.response.usage.reasoning_tokens == 9
    assert reasoning.request["reasoning_effort"] == "low"
    assert reasoning.request["max_tokens"] == 300

    tool = by_id["test_responses_create_captures_tool_call_contentcontent_mode0#0"]
    assert tool.request["messages"] == [
        {"role": "user", "content": "What's the weather in Seattle right now?"}
    ]
    assert tool.request["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_current_weather"},
    }
    assert tool.request["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. Boston, MA",
                    }
                },
                "required": ["location"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    assert tool.response is not None
    assert [(c.id, c.name, c.parsed_arguments) for c in tool.response.tool_calls] == [
        ("call_90uO5LcGP5vTBTCrjyhYtWsA", "get_current_weather", {"location": "Seattle, WA"})
    ]
    error = by_id["test_responses_create_api_errorcontent_mode0#0"]
    assert error.response is None and error.error is not None and "model_not_found" in error.error


@pytest.mark.parametrize(
    ("url", "body", "field", "category"),
    [
        (
            "/v1/responses",
            {"model": "m", "input": "hi", "previous_response_id": "resp_1"},
            "body.previous_response_id",
            "cannot convert to Chat Completions",
        ),
        (
            "/v1/responses",
            {"model": "m", "input": "hi", "tools": [{"type": "web_search"}]},
            "body.tools[0].type",
            "cannot convert to Chat Completions",
        ),
        (
            "/v1/responses",
            {
                "model": "m",
                "input": [{"role": "user", "content": "hi"}, {"type": "item_reference", "id": "x"}],
            },
            "body.input[1].type",
            "cannot convert to Chat Completions",
        ),
        (
            "/v1/responses",
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}
                ],
            },
            "body.input[0].content[0].image_url",
            "cannot convert to Chat Completions",
        ),
        ("/v1/responses", {"model": "m", "input": 42}, "body.input", "wrong type"),
        ("/v1/responses", {"model": "m"}, "body.input", "missing field"),
        (
            "/v1/embeddings",
            {"model": "text-embedding-3-small", "input": "hi"},
            "url",
            "unsupported endpoint",
        ),
        ("/v1/chat/completions", {"model": "m", "messages": "hi"}, "body.messages", "wrong type"),
        ("/v1/chat/completions", {"model": "m"}, "body.messages", "missing field"),
        (None, {"model": "m", "messages": []}, "url", "missing field"),
    ],
)
def test_unconvertible_input_lines_are_skipped_naming_the_field(
    tmp_path: Path, url: str | None, body: dict[str, Any], field: str, category: str
) -> None:
    good = {
        "custom_id": "ok",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    bad: dict[str, Any] = {"custom_id": "bad", "method": "POST", "body": body}
    if url is not None:
        bad["url"] = url
    result = read_logs([write_jsonl(tmp_path / "in.jsonl", [good, bad])])
    assert [ex.id for ex in result.exchanges] == ["ok"]
    (issue,) = result.skipped
    assert (issue.line, issue.field) == (2, field)
    assert issue.reason.startswith(category)


def test_responses_input_items_and_dropped_settings(tmp_path: Path) -> None:
    body = {
        "model": "gpt-4.1",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather in Paris? See "},
                    {
                        "type": "input_image",
                        "image_url": "https://example.com/p.png",
                        "detail": "low",
                    },
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]},
            {"role": "user", "content": "Thanks! As JSON please."},
        ],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "answer",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "temperature": 0.2,
        "truncation": "auto",
        "metadata": {"feature": "weather-bot"},
    }
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/responses", "body": body}
    (ex,) = read_logs([write_jsonl(tmp_path / "in.jsonl", [line])]).exchanges
    assert ex.request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use tools."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris? See "},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/p.png", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks! As JSON please."},
    ]
    assert ex.request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    assert ex.request["tools"] == [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    assert ex.request["temperature"] == 0.2 and ex.request["tool_choice"] == "auto"
    assert ex.metadata["feature"] == "weather-bot"
    notes = ex.metadata["conversion_notes"]
    assert any(n.startswith("body.input[2]: reasoning item dropped") for n in notes)
    assert any(n.startswith("body.truncation='auto'") for n in notes)
