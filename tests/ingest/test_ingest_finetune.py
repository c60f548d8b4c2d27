"""finetune-chat: the last assistant turn is the reference, what comes before is the request."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate_eval.core.errors import BadLineError
from migrate_eval.ingest import read_logs
from tests.ingest.helpers import data_file, write_jsonl


def test_toy_fine_tuning_file_reads_the_good_lines_and_names_the_bad_one() -> None:
    path = data_file("openai-cookbook", "toy_chat_fine_tuning.jsonl")
    result = read_logs([path])

    assert result.lines_read == 5
    assert len(result.exchanges) == 4
    assert result.formats == {"finetune-chat": 4}
    assert [ex.source.line for ex in result.exchanges] == [1, 2, 3, 5]
    # Line 4 is a system prompt followed by an assistant answer: nothing to replay.
    assert len(result.skipped) == 1
    issue = result.skipped[0]
    assert (issue.file, issue.line, issue.field) == (str(path), 4, "messages")
    assert issue.reason.startswith("no user message")
    assert f"{path}:4: field 'messages'" in str(issue)

    first, multi_turn, no_system, long_answer = result.exchanges
    assert first.request["messages"] == [
        {
            "role": "system",
            "content": "You are a happy assistant that puts a positive spin on everything.",
        },
        {"role": "user", "content": "I fell off my bike today."},
    ]
    assert first.response is not None
    assert first.response.text == "It's great that you're getting exercise outdoors!"
    assert first.model == "unknown"
    # The multi-turn example: every earlier turn is context, the last answer is the reference.
    assert len(multi_turn.request["messages"]) == 8
    assert multi_turn.request["messages"][-1] == {
        "role": "user",
        "content": "I don't even know how to play golf.",
    }
    assert multi_turn.response is not None and multi_turn.response.text == "It's easy to learn!"
    assert [m["role"] for m in no_system.request["messages"]] == ["user"]
    assert long_answer.response is not None and long_answer.response.text is not None
    assert long_answer.response.text.startswith("Eat a banana!")
    assert len(long_answer.response.text) > 20_000

    summary = result.summary()
    assert summary.skipped_by_reason == {"no user message": 1}
    assert summary.examples == [str(issue)]
    assert summary.lines_read == summary.exchanges + summary.skipped


def test_uploaded_output_file_and_default_model() -> None:
    path = data_file("openai-cookbook", "uploaded_output.jsonl")
    result = read_logs([path], default_model="gpt-4o-mini-2024-07-18")
    assert (result.lines_read, len(result.exchanges), result.skipped) == (11, 11, [])
    for ex in result.exchanges:
        assert ex.model == "gpt-4o-mini-2024-07-18"
        assert [m["role"] for m in ex.request["messages"]] == ["system", "user"]
        assert ex.response is not None and ex.response.text
        assert ex.source.format == "finetune-chat"
    assert "CREATE TABLE Orders" in result.exchanges[0].system_prompt
    # Ids come from the file name and line: the same on every run, different per line.
    again = read_logs([path])
    assert [e.id for e in again.exchanges] == [e.id for e in result.exchanges]
    assert len({e.id for e in result.exchanges}) == 11


def test_tool_call_reference_tools_and_weight(tmp_path: Path) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    line = {
        "messages": [
            {"role": "user", "content": "What is the weather in San Francisco?"},
            {"role": "assistant", "content": "Let me check.", "weight": 0},
            {"role": "user", "content": "Go on."},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_id",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": '{"location": "San Francisco, USA", "format": "celsius"}',
                        },
                    }
                ],
            },
        ],
        "parallel_tool_calls": False,
        "tools": tools,
    }
    result = read_logs([write_jsonl(tmp_path / "ft.jsonl", [line])])
    (ex,) = result.exchanges
    assert ex.request["tools"] == tools
    assert ex.request["parallel_tool_calls"] is False
    assert ex.request["messages"][1] == {"role": "assistant", "content": "Let me check."}
    assert ex.response is not None
    (call,) = ex.response.tool_calls
    assert call.name == "get_current_weather"
    assert call.parsed_arguments == {"location": "San Francisco, USA", "format": "celsius"}
    assert ex.response.text is None


@pytest.mark.parametrize(
    ("messages", "field", "category"),
    [
        ("hello", "messages", "wrong type"),
        ([], "messages", "invalid value"),
        (
            [{"content": "hi"}, {"role": "assistant", "content": "yo"}],
            "messages[0].role",
            "missing field",
        ),
        (
            [{"role": "user"}, {"role": "assistant", "content": "yo"}],
            "messages[0].content",
            "missing field",
        ),
        (
            [{"role": "user", "content": 7}, {"role": "assistant", "content": "yo"}],
            "messages[0].content",
            "wrong type",
        ),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}],
            "messages[1].content",
            "wrong type",
        ),
        (
            [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "messages[0].role",
            "invalid value",
        ),
        ([{"role": "user", "content": "hi"}, "assistant: yo"], "messages[1]", "wrong type"),
        (
            [{"role": "assistant", "content": "yo"}, {"role": "user", "content": "hi"}],
            "messages[1].role",
            "no final assistant turn",
        ),
    ],
)
def test_malformed_examples_are_skipped_with_their_field(
    tmp_path: Path, messages: object, field: str, category: str
) -> None:
    good = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    path = write_jsonl(tmp_path / "ft.jsonl", [good, {"messages": messages}, good])
    result = read_logs([path])
    assert len(result.exchanges) == 2
    (issue,) = result.skipped
    assert (issue.line, issue.field) == (2, field)
    assert issue.reason.startswith(category)
    with pytest.raises(BadLineError) as raised:
        read_logs([path], strict=True)
    assert f"ft.jsonl:2: field '{field}'" in str(raised.value)
    assert raised.value.issue == issue
