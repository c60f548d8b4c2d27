"""Helpers of the in-process open-model providers (``hf-local``, ``llama-cpp``).

Both render a request with the model's own chat template (Hugging Face ``chat_template``,
GGUF ``tokenizer.chat_template``) and read tool calls out of the generated text:

* :func:`template_messages`: Chat Completions messages in the shape chat templates expect
  (text content; ``developer`` as ``system``; assistant tool calls with arguments as objects;
  ``tool`` results with their ``tool_call_id``). Images, audio and unknown roles are refused.
* :func:`parse_tool_calls`: Hermes / Qwen 2.5 ``<tool_call>{json}</tool_call>`` blocks.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from migrate_eval.core.records import ToolCall
from migrate_eval.core.request import content_text
from migrate_eval.replay.providers._translate import (
    MessageCheck,
    content_parts,
    messages_of,
    parse_arguments,
    unsupported,
)

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """Split generated text into content and Hermes/Qwen ``<tool_call>{json}</tool_call>`` calls.

    A block whose JSON has no ``name`` string is left in the text (not a call).
    ``arguments`` (or ``parameters``) may be an object or a JSON string.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    for m in _TOOL_CALL.finditer(text):
        try:
            payload = json.loads(m.group(1))
        except ValueError:
            payload = None
        name = payload.get("name") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or not isinstance(name, str):
            continue
        kept.append(text[pos : m.start()])
        pos = m.end()
        args = payload.get("arguments", payload.get("parameters", {}))
        arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        calls.append(ToolCall.from_raw(name, arguments, new_call_id()))
    kept.append(text[pos:])
    content = "".join(kept).strip()
    return (content or None), calls


def template_messages(request: Mapping[str, Any], vendor: str) -> list[dict[str, Any]]:
    """Chat Completions messages in the shape chat templates expect (text content)."""
    check = MessageCheck()
    out: list[dict[str, Any]] = []
    for m in messages_of(request):
        for part in content_parts(m.get("content")):
            check.part(part, images=False)
        role = m.get("role")
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role}
        msg["content"] = content_text(m.get("content"))
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for tc in m["tool_calls"]:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    check.problems.append("an assistant tool call without a function name")
                    continue
                calls.append(
                    {
                        "id": tc.get("id"),
                        "type": "function",
                        "function": {
                            "name": fn["name"],
                            "arguments": parse_arguments(fn.get("arguments")),
                        },
                    }
                )
            msg["tool_calls"] = calls
        if role == "tool":
            msg["tool_call_id"] = m.get("tool_call_id")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            check.problems.append(f"messages with role {role!r}")
        out.append(msg)
    unsupported(check.problems, vendor)
    return out


def tool_message(calls: list[ToolCall], content: str | None) -> dict[str, Any]:
    """The assistant message of a Chat Completions body for ``content`` and ``calls``."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]  # fmt: skip
    return message
