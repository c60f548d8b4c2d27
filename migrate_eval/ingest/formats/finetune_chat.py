"""``finetune-chat``: OpenAI fine-tuning chat JSONL (``FineTuneChatRequestInput``).

Each line is ``{"messages": [...], "tools"?: [...], "parallel_tool_calls"?: ..., "functions"?:
[...]}``. The last message must be an assistant turn: it is the reference response (text and/or
tool calls). The messages before it, with the ``tools``, are the request; the model is unknown,
so it is the ``default_model`` given to :func:`~migrate_eval.ingest.read_logs` or ``"unknown"``.
The fine-tuning-only ``weight`` key is removed from the request's messages.

Skipped lines (the reason names the field): ``messages`` missing or not an array; a message
that is not an object, has no ``role`` or an unknown one, has no ``content`` (an assistant
message with tool calls may omit it) or content of the wrong type; no final assistant turn;
no user (or tool) message before it - nothing to replay.
"""

from __future__ import annotations

from typing import Any

from migrate_eval.core.records import Exchange, Response
from migrate_eval.ingest._common import (
    BAD_RESPONSE,
    NO_ASSISTANT_TURN,
    NO_USER_MESSAGE,
    LineContext,
    RecordError,
    check_messages,
    wrong_type,
)
from migrate_eval.ingest._responses import check_tool_calls
from migrate_eval.ingest.registry import LogFormat

NAME = "finetune-chat"
_NOT_HERE = ("request", "response", "req", "res", "custom_id")
_PROMPT_ROLES = frozenset({"user", "tool", "function"})


def sniff(record: dict[str, Any]) -> bool:
    return "messages" in record and not any(k in record for k in _NOT_HERE)


def _strip_weight(message: dict[str, Any]) -> dict[str, Any]:
    if "weight" not in message:
        return message
    return {k: v for k, v in message.items() if k != "weight"}


def read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    messages = check_messages(record.get("messages"), "messages", ctx, require_content=True)
    last_index = len(messages) - 1
    last = messages[last_index]
    if last["role"] != "assistant":
        raise RecordError(
            f"messages[{last_index}].role",
            NO_ASSISTANT_TURN,
            f"the last message is a {last['role']!r} message; the reference answer must be "
            "a final assistant message",
        )
    prompt = messages[:last_index]
    if not any(m["role"] in _PROMPT_ROLES for m in prompt):
        raise RecordError(
            "messages",
            NO_USER_MESSAGE,
            "the final assistant turn answers no user (or tool) message: nothing to replay",
        )
    check_tool_calls(last.get("tool_calls"), f"messages[{last_index}].tool_calls")

    model = record.get("model")
    if model is not None and not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    request: dict[str, Any] = {
        "model": model or ctx.model_fallback,
        "messages": [_strip_weight(m) for m in prompt],
    }
    for key, expected in (("tools", list), ("functions", list), ("parallel_tool_calls", bool)):
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, expected):
            raise wrong_type(key, "an array" if expected is list else "a boolean", value)
        request[key] = value
    try:
        response = Response.from_chat_completion({"choices": [{"message": last}]})
    except ValueError as e:
        raise RecordError(f"messages[{last_index}]", BAD_RESPONSE, str(e)) from e

    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise wrong_type("metadata", "an object", metadata)
    return Exchange(
        id=ctx.default_id(),
        source=ctx.source(),
        request=request,
        response=response,
        metadata=dict(metadata) if metadata else {},
    )


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="fine-tuning chat JSONL ({'messages': [...]}: the last assistant turn is the reference)",
    priority=30,
)
