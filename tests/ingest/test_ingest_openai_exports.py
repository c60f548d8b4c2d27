"""OpenAI's own export shapes (issue 14, sections 1-3): stored Responses with their
/input_items, stored chat-completion message pages saved as one JSON array, preference (DPO)
fine-tuning files. Files are written by the tests from the OpenAPI spec's schemas
(openai/openai-openapi, in ../shared/data/openai-openapi/openapi.yaml)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate_eval.ingest import read_logs
from tests.ingest.helpers import write_jsonl


def _response(i: int, **over: Any) -> dict[str, Any]:
    """GET /v1/responses/{id}: the ``Response`` schema, shaped like the spec's getResponse
    example (openapi.yaml, paths./responses/{response_id}.get): the request's settings echoed
    with the API's defaults for those the application did not send."""
    body: dict[str, Any] = {
        "id": f"resp_{i}",
        "object": "response",
        "created_at": 1741386163 + i,
        "status": "completed",
        "completed_at": 1741386164 + i,
        "error": None,
        "incomplete_details": None,
        "instructions": "Answer in one sentence.",
        "max_output_tokens": None,
        "model": "gpt-4o-2024-08-06",
        "output": [
            {
                "type": "message",
                "id": f"msg_out_{i}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Unicorns dream.", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "top_logprobs": 0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 36,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 40,
        },
        "user": None,
        "metadata": {"feature": "stories"},
        "service_tier": "default",
        "background": False,
    }
    body.update(over)
    return body


def _items_page(response_id: str, *, order: str | None = None) -> dict[str, Any]:
    """GET /v1/responses/{id}/input_items (``ResponseItemList``, newest first by default:
    the spec's ``order`` parameter "Default is desc"), with the ``response_id`` an export
    script adds (the page itself does not name its response)."""
    items = [
        {
            "id": "msg_2",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Now about a dragon."}],
        },
        {
            "id": "msg_1b",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "A unicorn slept.", "annotations": []}],
        },
        {
            "id": "msg_1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Tell me a story about a unicorn."}],
        },
    ]
    page: dict[str, Any] = {
        "object": "list",
        "data": items if order != "asc" else items[::-1],
        "first_id": "msg_2",
        "last_id": "msg_1",
        "has_more": False,
        "response_id": response_id,
    }
    if order is not None:
        page["order"] = order
    return page


CONVERSATION = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "Tell me a story about a unicorn."},
    {"role": "assistant", "content": "A unicorn slept."},
    {"role": "user", "content": "Now about a dragon."},
]


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with their content parts joined as text."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = "".join(p["text"] for p in content)
        out.append({"role": m["role"], "content": content})
    return out


def test_stored_responses_joined_with_their_input_items(tmp_path: Path) -> None:
    failed = _response(
        3,
        status="failed",
        output=[],
        error={"code": "server_error", "message": "The model failed to generate a response."},
    )
    responses = write_jsonl(tmp_path / "responses.jsonl", [_response(1), _response(2), failed])
    pages = write_jsonl(
        tmp_path / "input_items.jsonl",
        [_items_page("resp_1"), _items_page("resp_2", order="asc"), _items_page("resp_3")],
    )
    result = read_logs([responses, pages])
    assert result.formats == {"openai-stored-responses": 3}, result.skipped
    one, two, three = result.exchanges
    assert _plain(one.request["messages"]) == CONVERSATION == _plain(two.request["messages"])
    assert one.metadata["input_items_order"].startswith("desc")
    assert two.metadata["input_items_order"] == "asc (as exported)"
    # the echoed defaults are not replayed, and the report can show them
    for key in ("temperature", "top_p", "tool_choice", "parallel_tool_calls", "top_logprobs"):
        assert key not in one.request
    assert one.metadata["dropped_params"]["temperature"] == 1.0
    assert one.metadata["feature"] == "stories" and one.metadata["service_tier"] == "default"
    assert one.response is not None and one.response.text == "Unicorns dream."
    assert one.response.usage is not None and one.response.usage.prompt_tokens == 36
    assert three.response is None and three.error is not None
    assert "server_error" in three.error


def test_stored_response_with_its_items_in_the_record(tmp_path: Path) -> None:
    pair = {
        "response": _response(5, temperature=0.2, max_output_tokens=50),
        "input_items": _items_page("resp_5"),
    }
    embedded = {**_response(6), "input_items": _items_page("resp_6")["data"]}
    alone = _response(7)
    chained = {**_response(8, previous_response_id="resp_7"), "input_items": []}
    path = write_jsonl(tmp_path / "export.jsonl", [pair, embedded, alone, chained])
    result = read_logs([path])
    five, six = result.exchanges
    assert five.request["temperature"] == 0.2 and five.request["max_tokens"] == 50
    assert _plain(six.request["messages"]) == CONVERSATION
    missing, chain = result.skipped
    assert missing.line == 3 and "input_items" in missing.reason
    assert chain.field == "previous_response_id"


def test_stored_completion_message_pages_saved_as_one_json_array(tmp_path: Path) -> None:
    # The list endpoint's objects (ChatCompletionList) and the /messages pages
    # (ChatCompletionMessageList) as an export script saves them with json.dump(pages).
    completion = {
        "object": "chat.completion",
        "id": "chatcmpl-abc",
        "model": "gpt-4o-2024-08-06",
        "created": 1738960610,
        "request_id": "req_ded8",
        "tool_choice": None,
        "usage": {"total_tokens": 31, "completion_tokens": 18, "prompt_tokens": 13},
        "seed": 4944116822809979520,
        "top_p": 1.0,
        "temperature": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "system_fingerprint": "fp_50cad350e4",
        "input_user": None,
        "service_tier": "default",
        "tools": None,
        "metadata": {"feature": "haiku"},
        "choices": [
            {
                "index": 0,
                "message": {"content": "Mind of circuits hum", "role": "assistant"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "response_format": None,
    }
    listing = tmp_path / "completions.json"
    listing.write_text(json.dumps({"object": "list", "data": [completion]}, indent=2))
    page = {
        "object": "list",
        "data": [
            {
                "id": "chatcmpl-abc-0",
                "role": "user",
                "content": "write a haiku about ai",
                "name": None,
                "content_parts": None,
            }
        ],
        "first_id": "chatcmpl-abc-0",
        "last_id": "chatcmpl-abc-0",
        "has_more": False,
    }
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps([page], indent=2))
    result = read_logs([listing, messages])
    (ex,) = result.exchanges
    assert ex.request == {
        "model": "gpt-4o-2024-08-06",
        "messages": [{"role": "user", "content": "write a haiku about ai"}],
    }
    assert ex.metadata["dropped_params"]["seed"] == 4944116822809979520
    # the items of one page saved bare, as a JSON array, join as well
    messages.write_text(json.dumps(page["data"]))
    assert len(read_logs([listing, messages]).exchanges) == 1


def test_preference_fine_tuning_file(tmp_path: Path) -> None:
    # FineTunePreferenceRequestInput (openapi.yaml): input.messages/tools/parallel_tool_calls,
    # preferred_output, non_preferred_output.
    line = {
        "input": {
            "messages": [
                {
                    "role": "user",
                    "content": "Hello, can you tell me how cold San Francisco is today?",
                }
            ],
            "tools": [],
            "parallel_tool_calls": True,
        },
        "preferred_output": [
            {"role": "assistant", "content": "Today in San Francisco, it is a cool 12 degrees."}
        ],
        "non_preferred_output": [{"role": "assistant", "content": "It is not cold."}],
    }
    bad = {**line, "input": {"messages": [{"role": "user"}]}}
    result = read_logs([write_jsonl(tmp_path / "dpo.jsonl", [line, bad])])
    assert result.formats == {"openai-preference": 1}
    (ex,) = result.exchanges
    assert ex.response is not None and ex.response.text is not None
    assert ex.response.text.startswith("Today in San Francisco")
    assert ex.metadata["non_preferred_output"][0]["content"] == "It is not cold."
    (issue,) = result.skipped
    assert issue.field == "input.messages[0].content"
