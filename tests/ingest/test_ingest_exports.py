"""Exports of OpenAI stored completions, the Responses API, Langfuse, Helicone, LangSmith,
OpenPipe and CSV/Parquet tables, built from real traffic (cassettes, AlpacaEval, MT-bench)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError, LogFormatError
from migrate_eval.ingest import IngestResult, read_logs
from tests.ingest.helpers import alpaca, cassette_pairs, completion, mt_bench_turns, write_jsonl


def _ok(result: IngestResult) -> None:
    assert result.lines_read == len(result.exchanges) + len(result.skipped)


def _tool_pairs() -> list[dict[str, Any]]:
    pairs = cassette_pairs("test_chat_completion_tool_calls_with_content.yaml")
    for p in pairs:
        p["body"] = json.loads(p["response"]["body"])
    return pairs


# ------------------------------------------------------------ stored completions


def _stored(pairs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    completions, pages = [], []
    for i, p in enumerate(pairs):
        body = dict(p["body"])
        body.update(
            request_id=f"req_{i}",
            metadata={"feature": "weather"},
            seed=None,
            temperature=1.0,
            top_p=1.0,
            tools=p["request"].get("tools"),
            tool_choice=p["request"].get("tool_choice"),
            service_tier="default",
        )
        completions.append(body)
        data = [{"id": f"{body['id']}-{j}", **m} for j, m in enumerate(p["request"]["messages"])]
        for d in data:
            d.setdefault("name", None)
            d.setdefault("content_parts", None)
        pages.append(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"],
                "last_id": data[-1]["id"],
                "has_more": False,
            }
        )
    return completions, pages


def test_stored_completions_join_their_messages(tmp_path: Path) -> None:
    pairs = _tool_pairs()
    completions, pages = _stored(pairs)
    # the list endpoint page saved as one JSON document, the /messages pages as JSONL
    listing = tmp_path / "completions.json"
    listing.write_text(json.dumps({"object": "list", "data": completions, "has_more": False}))
    # one completion's messages split over two pages; plus a page nobody claims
    first = pages[0]
    split = [
        {**first, "data": first["data"][:1], "has_more": True},
        {**first, "data": first["data"][1:], "first_id": first["data"][1]["id"]},
    ]
    split[1]["completion_id"] = completions[0]["id"]
    orphan = {**pages[1], "completion_id": "chatcmpl-gone"}
    messages = write_jsonl(tmp_path / "messages.jsonl", [*split, *pages[1:], orphan])
    result = read_logs([listing, messages])
    _ok(result)
    assert result.formats == {"openai-stored-completions": len(pairs)}
    ex = result.exchanges[0]
    assert ex.id == completions[0]["id"]
    assert ex.request["messages"] == pairs[0]["request"]["messages"]
    assert ex.request["tools"] == pairs[0]["request"]["tools"]
    # tool_choice "auto" is the API's default echoed back, not what the app sent (issue 14)
    assert "tool_choice" not in ex.request and "seed" not in ex.request
    dropped = ex.metadata.pop("dropped_params")
    assert dropped["tool_choice"] == "auto" and "service_tier" in dropped
    assert "echo" in ex.metadata.pop("dropped_params_reason")
    assert ex.metadata == {
        "feature": "weather",
        "request_id": "req_0",
        "service_tier": "default",
        "system_fingerprint": completions[0]["system_fingerprint"],
    }
    assert ex.response is not None and len(ex.response.tool_calls) == 2
    assert ex.response.usage is not None and ex.response.usage.cached_tokens == 0
    (issue,) = result.skipped
    assert issue.file == str(messages) and issue.reason.startswith("no matching record")

    # the completions without their messages: each one is a skipped line naming the id
    alone = read_logs([listing])
    assert not alone.exchanges and alone.skipped[0].field == "id"
    assert "read the messages export" in alone.skipped[0].reason


# ------------------------------------------------------------ Responses API


def test_responses_api_pairs_are_a_format_of_their_own(tmp_path: Path) -> None:
    rows = alpaca(3)
    lines: list[dict[str, Any]] = [
        {
            "id": f"resp-{i}",
            "request": {
                "model": "gpt-4.1",
                "instructions": "Answer helpfully.",
                "input": r["instruction"],
                "max_output_tokens": 800,
                "truncation": "auto",
            },
            "response": {
                "id": f"resp_{i}",
                "object": "response",
                "created_at": 1741476777,
                "status": "completed",
                "model": "gpt-4.1-2025-04-14",
                "output": [
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": r["output"]}],
                    }
                ],
                "usage": {
                    "input_tokens": 40,
                    "output_tokens": 100,
                    "total_tokens": 140,
                    "input_tokens_details": {"cached_tokens": 32},
                    "output_tokens_details": {"reasoning_tokens": 12},
                },
            },
        }
        for i, r in enumerate(rows)
    ]
    lines.append(
        {"request": {"model": "gpt-4.1", "input": "more", "previous_response_id": "resp_0"}}
    )
    result = read_logs([write_jsonl(tmp_path / "responses.jsonl", lines)])
    _ok(result)
    assert result.formats == {"openai-responses": 3}
    ex = result.exchanges[0]
    assert ex.request["messages"][0] == {"role": "system", "content": "Answer helpfully."}
    assert ex.request["max_tokens"] == 800
    assert "truncation" in " ".join(ex.metadata["conversion_notes"])
    assert ex.response is not None and ex.response.text == rows[0]["output"]
    assert ex.response.usage is not None
    assert (ex.response.usage.cached_tokens, ex.response.usage.reasoning_tokens) == (32, 12)
    (issue,) = result.skipped
    assert issue.field == "request.previous_response_id"
    assert issue.reason.startswith("cannot convert to Chat Completions")


# ------------------------------------------------------------ Langfuse


def _langfuse(turn: dict[str, Any], i: int) -> dict[str, Any]:
    return {
        "id": f"obs-{i}",
        "traceId": f"trace-{i}",
        "type": "GENERATION",
        "name": "ChatOpenAI",
        "startTime": "2025-03-01T10:00:00.000Z",
        "completionStartTime": "2025-03-01T10:00:00.300Z",
        "endTime": "2025-03-01T10:00:01.250Z",
        "model": "gpt-4",
        "modelParameters": {"temperature": "0.7", "max_tokens": "1024"},
        "input": turn["messages"],
        "output": {"role": "assistant", "content": turn["answer"]},
        "usageDetails": {"input": 50, "output": 200, "total": 250, "input_cached_tokens": 16},
        "metadata": {"category": turn["category"]},
        "level": "DEFAULT",
    }


def test_langfuse_observations_and_trace(tmp_path: Path) -> None:
    turns = mt_bench_turns()[:4]
    rows = [_langfuse(t, i) for i, t in enumerate(turns)]
    rows.append(
        {
            **rows[0],
            "id": "obs-err",
            "level": "ERROR",
            "statusMessage": "429 rate limited",
            "output": None,
        }
    )
    result = read_logs([write_jsonl(tmp_path / "observations.jsonl", rows)])
    _ok(result)
    assert result.formats == {"langfuse": 5}
    ex = result.exchanges[1]  # turn 2 of question 1: the history is in the request
    assert ex.request["messages"] == turns[1]["messages"]
    assert ex.request["temperature"] == 0.7 and ex.request["max_tokens"] == 1024
    assert ex.response is not None and ex.response.text == turns[1]["answer"]
    assert ex.response.latency_ms == pytest.approx(1250.0)
    assert ex.response.ttft_ms == pytest.approx(300.0)
    assert ex.response.usage is not None and ex.response.usage.cached_tokens == 16
    assert ex.metadata["category"] == turns[1]["category"]
    assert result.exchanges[-1].error == "429 rate limited"

    trace = {
        "id": "trace-1",
        "name": "support-chat",
        "tags": ["prod"],
        "metadata": {"feature": "faq"},
        "observations": [
            {
                "id": "span-1",
                "traceId": "trace-1",
                "type": "SPAN",
                "name": "retrieve",
                "startTime": "2025-03-01T10:00:00Z",
            },
            _langfuse(turns[0], 9),
        ],
    }
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace, indent=2))
    result = read_logs([path])
    _ok(result)
    (ex,) = result.exchanges
    assert ex.metadata["feature"] == "faq" and ex.metadata["trace_name"] == "support-chat"
    assert ex.source.line == 2
    (issue,) = result.skipped
    assert issue.field == "type" and "SPAN observation is not a model call" in issue.reason


# ------------------------------------------------------------ Helicone


def test_helicone_rows_keep_custom_properties(tmp_path: Path) -> None:
    pairs = _tool_pairs()
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"hc-{i}",
            "request_created_at": "2024-11-11T23:43:54.000Z",
            "request_body": json.dumps(p["request"]),
            "response_body": p["body"],
            "response_status": 200,
            "delay_ms": 912,
            "request_properties": {"Helicone-Property-Feature": "weather"},
            "request_user_id": "user-7",
        }
        for i, p in enumerate(pairs)
    ]
    rows.append(
        {
            **rows[0],
            "request_id": "hc-err",
            "response_status": 500,
            "response_body": {"error": {"message": "server error", "type": "server_error"}},
        }
    )
    result = read_logs([write_jsonl(tmp_path / "helicone.jsonl", rows)])
    _ok(result)
    assert result.formats == {"helicone": 3}
    ex = result.exchanges[0]
    assert ex.request["tools"] == pairs[0]["request"]["tools"]
    assert ex.response is not None and ex.response.latency_ms == 912
    assert ex.response.finish_reason == "tool_calls"
    assert ex.metadata["Helicone-Property-Feature"] == "weather"
    assert ex.metadata["request_user_id"] == "user-7"
    assert result.exchanges[-1].error == "HTTP 500: server_error: server error"


# ------------------------------------------------------------ LangSmith


def _lc(kind: str, content: Any, **kwargs: Any) -> dict[str, Any]:
    return {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", kind],
        "kwargs": {"content": content, **kwargs},
    }


def test_langsmith_llm_runs(tmp_path: Path) -> None:
    pairs = _tool_pairs()
    first, second = pairs[0], pairs[1]
    call = first["body"]["choices"][0]["message"]["tool_calls"][0]
    run_chat = {
        "id": "run-1",
        "name": "ChatOpenAI",
        "run_type": "llm",
        "start_time": "2024-11-11T23:43:54.000",
        "end_time": "2024-11-11T23:43:55.500",
        "inputs": {
            "messages": [
                [
                    _lc("SystemMessage", "You're a helpful assistant."),
                    _lc("HumanMessage", first["request"]["messages"][1]["content"]),
                ]
            ]
        },
        "outputs": {
            "generations": [
                [
                    {
                        "text": "",
                        "generation_info": {"finish_reason": "tool_calls"},
                        "message": _lc(
                            "AIMessage",
                            "",
                            tool_calls=[
                                {
                                    "name": call["function"]["name"],
                                    "args": json.loads(call["function"]["arguments"]),
                                    "id": call["id"],
                                    "type": "tool_call",
                                }
                            ],
                            usage_metadata={
                                "input_tokens": 80,
                                "output_tokens": 50,
                                "total_tokens": 130,
                                "input_token_details": {"cache_read": 64},
                                "output_token_details": {"reasoning": 10},
                            },
                        ),
                    }
                ]
            ],
            "llm_output": {"model_name": "gpt-4o-mini-2024-07-18"},
        },
        "extra": {
            "invocation_params": {
                "model": "gpt-4o-mini",
                "temperature": 0.0,
                "tools": first["request"]["tools"],
            },
            "metadata": {"feature": "weather"},
        },
        "tags": ["prod"],
    }
    run_openai = {
        "id": "run-2",
        "run_type": "llm",
        "inputs": {"messages": second["request"]["messages"], "model": "gpt-4o-mini"},
        "outputs": second["body"],
        "start_time": "2024-11-11T23:43:56",
    }
    chain = {"id": "run-3", "run_type": "chain", "inputs": {"question": "x"}}
    failed = {
        **run_openai,
        "id": "run-4",
        "outputs": None,
        "error": "RateLimitError('429')\nTraceback...",
    }
    result = read_logs(
        [write_jsonl(tmp_path / "runs.jsonl", [run_chat, run_openai, chain, failed])]
    )
    _ok(result)
    one, two, four = result.exchanges
    assert one.request["messages"] == first["request"]["messages"]
    assert one.request["tools"] == first["request"]["tools"] and one.request["temperature"] == 0.0
    assert one.response is not None and one.response.tool_calls[0].parsed_arguments == {
        "location": "Seattle, WA"
    }
    assert one.response.finish_reason == "tool_calls"
    assert one.response.usage is not None
    assert (one.response.usage.cached_tokens, one.response.usage.reasoning_tokens) == (64, 10)
    assert one.response.latency_ms == pytest.approx(1500.0)
    assert one.metadata["feature"] == "weather" and one.metadata["tags"] == ["prod"]
    tool_msgs = [m for m in two.request["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 2
    assert two.response is not None and two.response.usage is not None
    assert four.error == "RateLimitError('429')"
    (issue,) = result.skipped
    assert (issue.line, issue.field) == (3, "run_type")


# ------------------------------------------------------------ OpenPipe


def test_openpipe_dataset_and_request_logs(tmp_path: Path) -> None:
    pairs = _tool_pairs()
    rows: list[dict[str, Any]] = [
        {
            "messages": [*t["messages"], {"role": "assistant", "content": t["answer"]}],
            "split": "TEST" if i % 2 else "TRAIN",
        }
        for i, t in enumerate(mt_bench_turns()[:4])
    ]
    rows.append(
        {
            "messages": [
                *pairs[0]["request"]["messages"],
                pairs[0]["body"]["choices"][0]["message"],
            ],
            "tools": pairs[0]["request"]["tools"],
            "tool_choice": "auto",
            "split": "TRAIN",
        }
    )
    result = read_logs([write_jsonl(tmp_path / "openpipe.jsonl", rows)])
    _ok(result)
    assert result.formats == {"openpipe": 5}
    assert [ex.metadata["split"] for ex in result.exchanges[:2]] == ["TRAIN", "TEST"]
    tool = result.exchanges[-1]
    assert tool.request["tool_choice"] == "auto" and tool.response is not None
    assert len(tool.response.tool_calls) == 2

    logs = [
        {
            "reqPayload": p["request"],
            "respPayload": p["body"],
            "statusCode": 200,
            "requestedAt": 1731368634000,
            "receivedAt": 1731368635200,
            "tags": {"prompt_id": "weather"},
        }
        for p in pairs
    ]
    logs.append({**logs[0], "statusCode": 429, "respPayload": None, "errorMessage": "Rate limited"})
    result = read_logs([write_jsonl(tmp_path / "openpipe-logs.jsonl", logs)])
    _ok(result)
    assert result.formats == {"openpipe": 3}
    assert result.exchanges[0].response is not None
    assert result.exchanges[0].response.latency_ms == pytest.approx(1200.0)
    assert result.exchanges[0].metadata == {"prompt_id": "weather"}
    assert result.exchanges[-1].error == "HTTP 429: Rate limited"


# ------------------------------------------------------------ CSV / Parquet


def test_csv_with_common_column_names(tmp_path: Path) -> None:
    rows = alpaca(5)
    path = tmp_path / "eval.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "system_prompt", "question", "answer", "label", "dataset"])
        for i, r in enumerate(rows):
            w.writerow(
                [f"row-{i}", "Be helpful.", r["instruction"], r["output"], "", r.get("dataset", "")]
            )
        w.writerow(["row-empty", "", "", "nothing", "", ""])
    result = read_logs([path])
    _ok(result)
    assert result.formats == {"table": 5}
    ex = result.exchanges[0]
    assert ex.id == "row-0" and ex.source.line == 2
    assert ex.request["messages"] == [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": rows[0]["instruction"]},
    ]
    assert ex.response is not None and ex.response.text == rows[0]["output"]
    (issue,) = result.skipped
    assert issue.field == "question" and issue.reason.startswith("missing field")
    # multi-line cells (alpaca answers have newlines) keep the line numbers right
    assert ex.source.line < result.exchanges[1].source.line


def test_parquet_with_named_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    turns = [t for t in mt_bench_turns() if t["id"].endswith("turn1")][:6]
    table = pa.table(
        {
            "uid": [t["id"] for t in turns],
            "q": [t["messages"][-1]["content"] for t in turns],
            "a": [t["answer"] for t in turns],
            "category": [t["category"] for t in turns],
            "gold_category": [t["category"] for t in turns],
        }
    )
    path = tmp_path / "turns.parquet"
    pq.write_table(table, path)
    with pytest.raises(LogFormatError, match="no prompt column"):
        read_logs([path])
    cols = {"prompt": "q", "response": "a", "id": "uid", "label": "gold_category"}
    result = read_logs([path], columns=cols)
    _ok(result)
    ex = result.exchanges[2]
    assert ex.id == turns[2]["id"] and ex.source.line == 3
    assert ex.gold == turns[2]["category"] and ex.metadata == {"category": turns[2]["category"]}
    with pytest.raises(ConfigError, match="unknown column key"):
        read_logs([path], columns={"prompt": "q", "answer": "a"})


def test_chat_completion_in_a_response_cell(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    body = json.dumps(
        completion("Paris", usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})
    )
    path.write_text(f"prompt\tresponse\nCapital of France?\t{body}\n", encoding="utf-8")
    (ex,) = read_logs([path]).exchanges
    assert ex.response is not None and ex.response.text == "Paris"
    assert ex.response.usage is not None and ex.response.usage.total_tokens == 6


def test_streamed_responses_are_reassembled(tmp_path: Path) -> None:
    """Helicone keeps a streamed call's body as the server-sent events it relayed."""
    pairs = cassette_pairs("test_chat_completion_multiple_tools_streaming_with_content.yaml")
    rows = [
        {
            "request_id": f"s-{i}",
            "request_body": p["request"],
            "response_body": p["response"]["body"],  # the SSE text as recorded
            "response_status": p["response"]["status_code"],
        }
        for i, p in enumerate(pairs)
    ]
    result = read_logs([write_jsonl(tmp_path / "stream.jsonl", rows)])
    _ok(result)
    assert not result.skipped
    ex = result.exchanges[0]
    assert ex.request["stream"] is True
    assert ex.response is not None and ex.response.usage is not None
    assert [tc.name for tc in ex.response.tool_calls] == ["get_current_weather"] * 2
    assert all(isinstance(tc.parsed_arguments, dict) for tc in ex.response.tool_calls)
    assert ex.response.finish_reason == "tool_calls"


def test_stored_completions_bad_lines(tmp_path: Path) -> None:
    completions, pages = _stored(_tool_pairs())
    bad_meta = {**completions[1], "metadata": ["not", "an", "object"]}
    comp = tmp_path / "completions.jsonl"
    comp.write_bytes(
        b"\n".join(
            [
                json.dumps(completions[0]).encode(),
                b'{"object": "chat.completion",',
                json.dumps(bad_meta).encode(),
            ]
        )
        + b"\n"
    )
    msgs = tmp_path / "messages.jsonl"
    msgs.write_bytes(b"\n".join(json.dumps(p).encode() for p in pages) + b"\n\xff\xfe not text\n")
    result = read_logs([comp, msgs])
    _ok(result)
    assert [ex.id for ex in result.exchanges] == [completions[0]["id"]]
    where = {(i.file, i.line): i for i in result.skipped}
    assert where[(str(comp), 2)].reason.startswith("invalid JSON")
    assert where[(str(comp), 3)].field == "metadata"
    assert where[(str(msgs), 3)].reason.startswith("not valid UTF-8")


def test_json_schemas_survive_ingestion(tmp_path: Path) -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "order",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    }
    request = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Order 42 please"}],
        "response_format": schema,
    }
    body = completion('{"order_id": "42"}')
    helicone = write_jsonl(
        tmp_path / "h.jsonl", [{"request_id": "h1", "request_body": request, "response_body": body}]
    )
    stored = {**body, "id": "chatcmpl-s1", "request_id": "r1", "response_format": schema}
    stored_path = write_jsonl(tmp_path / "s.jsonl", [{**stored, "messages": request["messages"]}])
    langfuse = write_jsonl(
        tmp_path / "l.jsonl",
        [
            {
                "id": "o1",
                "traceId": "t1",
                "type": "GENERATION",
                "startTime": "2025-01-01T00:00:00Z",
                "model": "gpt-4o",
                "input": {"messages": request["messages"], "response_format": schema},
                "output": body,
            }
        ],
    )
    result = read_logs([helicone, stored_path, langfuse])
    assert result.formats == {"helicone": 1, "openai-stored-completions": 1, "langfuse": 1}
    for ex in result.exchanges:
        assert ex.request["response_format"] == schema
        assert ex.response is not None and ex.response.text == '{"order_id": "42"}'


def _openapi_example(schema: str) -> Any:
    """The JSON example of a schema in the shared OpenAPI spec (read as text: parsing the
    whole YAML takes seconds)."""
    from tests.ingest.helpers import data_file

    lines = data_file("openai-openapi", "openapi.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"    {schema}:")
    i = next(k for k in range(start, len(lines)) if lines[k].strip().startswith("example:"))
    body = []
    indent = None
    for line in lines[i + 1 :]:
        if not line.strip():
            body.append("")
            continue
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        if width < indent:
            break
        body.append(line[indent:])
    return json.loads("\n".join(body))


def test_the_openapi_examples_of_stored_completions(tmp_path: Path) -> None:
    listing = _openapi_example("ChatCompletionList")
    messages = _openapi_example("ChatCompletionMessageList")
    completions_path = tmp_path / "list.json"
    completions_path.write_text(json.dumps(listing, indent=2))
    messages_path = write_jsonl(tmp_path / "messages.jsonl", [messages])
    result = read_logs([completions_path, messages_path])
    _ok(result)
    (ex,) = result.exchanges
    assert ex.id == "chatcmpl-AyPNinnUqUDYo9SAdA52NobMflmj2"
    assert ex.request["messages"] == [{"role": "user", "content": "write a haiku about ai"}]
    assert ex.request["model"] == "gpt-4o-2024-08-06"
    # the spec's example echoes temperature 1.0, top_p 1.0 and a server-chosen 19-digit seed:
    # none of them was sent by the application, none is replayed (issue 14, section 2)
    for key in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        assert key not in ex.request
    assert ex.metadata["dropped_params"]["seed"] == 4944116822809979520
    assert ex.metadata["dropped_params"]["temperature"] == 1.0
    assert ex.metadata["request_id"] == "req_ded8ab984ec4bf840f37566c1011c417"
    assert ex.response is not None and ex.response.text is not None
    assert ex.response.text.startswith("Mind of circuits hum")
    assert ex.response.usage is not None and ex.response.usage.total_tokens == 31
