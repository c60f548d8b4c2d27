"""Helpers of the in-process open-model providers (``hf-local``, ``llama-cpp``).

Both render a request with the model's own chat template (Hugging Face ``chat_template``,
GGUF ``tokenizer.chat_template``) and read tool calls out of the generated text:

* :func:`template_messages`: Chat Completions messages in the shape chat templates expect
  (text content; ``developer`` as ``system``; assistant tool calls with arguments as objects;
  ``tool`` results with their ``tool_call_id``). Images, audio and unknown roles are refused.
* :func:`parse_tool_calls`: the tool calls of the families' own formats: Hermes / Qwen
  ``<tool_call>{json}</tool_call>`` blocks, Mistral's ``[TOOL_CALLS]`` (a JSON list, or
  ``name[ARGS]{json}`` from tokenizer v11 on), Llama 3.x JSON (``<|python_tag|>`` and/or an
  answer that is only ``{"name", "parameters"}`` objects) and the pythonic list of Llama 3.2
  and 4 (``[f(a=1), g(b="x")]``). The formats without markup count only with the name of a
  tool the request declared, so an ordinary JSON answer is never taken for a call.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Collection, Mapping
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


def parse_tool_calls(
    text: str, tools: Collection[str] | None = None
) -> tuple[str | None, list[ToolCall]]:
    """Split generated text into content and tool calls, in the first format that finds any
    (module docstring). ``tools``: the names of the request's tools; a call in a format
    without markup (a bare JSON object or list, a pythonic list) counts only with one of them.

    A Hermes block whose JSON has no ``name`` string is left in the text (not a call).
    ``arguments`` (or ``parameters``) may be an object or a JSON string.
    """
    for parse in (_hermes, _mistral, _llama_json, _pythonic):
        found = parse(text, tools)
        if found is not None and found[1]:
            return found
    return (text.strip() or None), []


def tool_names(tools: Any) -> set[str]:
    """The function names of a request's ``tools`` (Chat Completions shape)."""
    names: set[str] = set()
    for tool in tools if isinstance(tools, list) else ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return names


def _call(name: str, args: Any) -> ToolCall:
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall.from_raw(name, arguments, new_call_id())


def _as_call(payload: Any, tools: Collection[str] | None, *, named: bool) -> ToolCall | None:
    """A ``{"name", "arguments" | "parameters"}`` object as a call (``named``: the name must
    be one of ``tools``)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    if named and (tools is None or payload["name"] not in tools):
        return None
    extra = set(payload) - {"name", "arguments", "parameters", "id", "type"}
    if named and extra:  # an object with other fields is an answer, not a call
        return None
    return _call(payload["name"], payload.get("arguments", payload.get("parameters", {})))


def _hermes(text: str, tools: Collection[str] | None) -> tuple[str | None, list[ToolCall]]:
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    for m in _TOOL_CALL.finditer(text):
        try:
            payload = json.loads(m.group(1))
        except ValueError:
            payload = None
        call = _as_call(payload, tools, named=False)
        if call is None:
            continue
        kept.append(text[pos : m.start()])
        pos = m.end()
        calls.append(call)
    kept.append(text[pos:])
    content = "".join(kept).strip()
    return (content or None), calls


_MISTRAL = "[TOOL_CALLS]"
_MISTRAL_V11 = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(?:\[CALL_ID\]\s*\w+\s*)?(?:\[ARGS\])?\s*")


def _mistral(text: str, tools: Collection[str] | None) -> tuple[str | None, list[ToolCall]] | None:
    """``content[TOOL_CALLS] [{"name", "arguments"}, ...]`` (tokenizers before v11) or
    ``content[TOOL_CALLS]name[ARGS]{json}[TOOL_CALLS]...`` (v11 on; ``[ARGS]`` may be absent)."""
    at = text.find(_MISTRAL)
    if at < 0:
        return None
    content, rest = text[:at].strip() or None, text[at + len(_MISTRAL) :]
    decoder = json.JSONDecoder()
    if rest.lstrip().startswith("["):
        try:
            payload, _ = decoder.raw_decode(rest.lstrip())
        except ValueError:
            return None
        items = payload if isinstance(payload, list) else []
        calls = [c for c in (_as_call(p, tools, named=False) for p in items) if c is not None]
        return (content, calls) if len(calls) == len(items) else None
    calls = []
    for part in rest.split(_MISTRAL):
        m = _MISTRAL_V11.match(part)
        if m is None:
            return None
        try:
            args, _ = decoder.raw_decode(part[m.end() :])
        except ValueError:
            return None
        calls.append(_call(m.group(1), args))
    return content, calls


def _llama_json(
    text: str, tools: Collection[str] | None
) -> tuple[str | None, list[ToolCall]] | None:
    """Llama 3.x: ``<|python_tag|>`` (when kept) and/or the whole answer being one or more
    ``{"name", "parameters"}`` objects (separated by ``;``) or a JSON list of them."""
    body, content, tagged = text.strip(), None, False
    if "<|python_tag|>" in body:
        head, _, body = body.partition("<|python_tag|>")
        content, body, tagged = head.strip() or None, body.strip(), True
    if not body.startswith(("{", "[")):
        return None
    decoder = json.JSONDecoder()
    payloads: list[Any] = []
    pos = 0
    while pos < len(body):
        try:
            value, end = decoder.raw_decode(body, pos)
        except ValueError:
            return None
        payloads.extend(value if isinstance(value, list) else [value])
        pos = end
        while pos < len(body) and body[pos] in " \t\r\n;,":
            pos += 1
    calls = [_as_call(p, tools, named=not tagged) for p in payloads]
    if not calls or any(c is None for c in calls):
        return None
    return content, [c for c in calls if c is not None]


def _pythonic(text: str, tools: Collection[str] | None) -> tuple[str | None, list[ToolCall]] | None:
    """Llama 3.2 / 4's pythonic calls: the whole answer is ``[f(a=1), g(b="x")]`` (Llama 4
    may wrap it in ``<|python_start|>...<|python_end|>``), every name a declared tool and every
    argument a literal."""
    body = text.strip().removeprefix("<|python_start|>").removesuffix("<|python_end|>").strip()
    if not (body.startswith("[") and body.endswith("]")) or tools is None:
        return None
    try:
        tree = ast.parse(body, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
            return None
        if node.func.id not in tools:
            return None
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except (ValueError, SyntaxError, RecursionError):
            return None
        if len(args) != len(node.keywords):  # **kwargs
            return None
        calls.append(_call(node.func.id, args))
    return None, calls


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
