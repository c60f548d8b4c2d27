"""``openai-stored-completions``: an export of OpenAI stored chat completions.

Two kinds of files, read together (like a Batch input file and its output file):

* completions: the objects of ``GET /v1/chat/completions`` (``ChatCompletionList.data``), one
  a line, or a saved list page ``{"object": "list", "data": [...]}``. Each is a
  ``chat.completion`` with the stored request's parameters (``seed``, ``temperature``,
  ``top_p``, ``tools``, ``tool_choice``, ``response_format``...), ``metadata``, ``request_id``
  and the answer (``choices``, ``usage``);
* messages: the pages of ``GET /v1/chat/completions/{id}/messages``
  (``ChatCompletionMessageList``), one a line. The join key is the line's ``completion_id``
  (an export script adds it) or, as OpenAI numbers the messages of completion ``chatcmpl-X``
  ``chatcmpl-X-0``, ``chatcmpl-X-1``..., the ``first_id`` without its ``-N`` suffix. Several
  pages of one completion are concatenated in file order.

A completion may also carry its request messages itself (``messages`` or
``request_messages``: an exporter that joined them already). A completion with no messages
is a skipped line (``missing field``); a messages page no completion claims is a skipped line
of the messages file (``no matching record``). ``metadata`` (the tags the application stored
with ``store=True``) is kept for task discovery, with ``request_id`` and ``service_tier``.
"""

from __future__ import annotations

import re
from typing import Any

from migrate_eval.core.records import Exchange
from migrate_eval.core.request import REQUEST_OPTIONS
from migrate_eval.ingest._common import (
    DROPPED_PARAMS,
    DROPPED_PARAMS_WHY,
    MISSING_FIELD,
    LineContext,
    RecordError,
    SideRecord,
    check_chat_request,
    drop_filled_params,
    parse_timestamp,
    wrong_type,
)
from migrate_eval.ingest._responses import chat_completion
from migrate_eval.ingest.registry import LogFormat

NAME = "openai-stored-completions"
_PARAMS = REQUEST_OPTIONS  # the request options a stored completion echoes
_MESSAGE_SUFFIX = re.compile(r"-\d+$")
_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio"}
)


#: What a stored completion reports for a parameter the application did not send: the API's
#: defaults, echoed (temperature 1.0, top_p 1.0, penalties 0, n 1, parallel_tool_calls true,
#: tool_choice "auto" with tools / "none" without). ``service_tier`` is the tier that served
#: the call, not a request parameter (kept in the metadata).
STORED_ECHOES: dict[str, tuple[Any, ...]] = {
    "temperature": (1,),
    "top_p": (1,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "n": (1,),
    "parallel_tool_calls": (True,),
    "tool_choice": ("auto", "none"),
    "service_tier": ("default", "auto"),
}
#: Assumption: the API echoes a ``seed`` it chose itself when the application sent none, a
#: random 64-bit integer; seeds an application picks are small. A seed of 2**32 or more is
#: taken as the server's and dropped (a random 64-bit seed is below 2**32 once in 4 billion).
SERVER_SEED_MIN = 1 << 32


def drop_echoed_params(request: dict[str, Any], dropped: dict[str, Any]) -> str:
    """Drop from a stored completion's request what the server echoed rather than what the
    application sent; fill ``dropped`` and return why (empty when nothing was dropped)."""
    seed = request.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and abs(seed) >= SERVER_SEED_MIN:
        dropped["seed"] = request.pop("seed")
    if request.get("tool_choice") == "none" and request.get("tools"):
        echoes = {k: v for k, v in STORED_ECHOES.items() if k != "tool_choice"}
        echoes["tool_choice"] = ("auto",)
    else:
        echoes = STORED_ECHOES
    dropped.update(drop_filled_params(request, {}, echoes, ""))
    if not dropped:
        return ""
    return (
        "stored completions echo the API's defaults (temperature 1.0, top_p 1.0, penalties 0, "
        "tool_choice auto, parallel_tool_calls true), the serving tier and a server-chosen "
        "seed for calls that did not set them"
    )


def sniff(record: dict[str, Any]) -> bool:
    return (
        record.get("object") == "chat.completion"
        and "choices" in record
        and ("request_id" in record or "metadata" in record)
        and "request" not in record
    )


def sniff_index(record: dict[str, Any]) -> bool:
    data = record.get("data")
    return (
        record.get("object") == "list"
        and isinstance(data, list)
        and (
            "completion_id" in record
            or (
                bool(data)
                and isinstance(data[0], dict)
                and "role" in data[0]
                and "type" not in data[0]
            )
        )
    )


def read_messages(record: dict[str, Any], ctx: LineContext) -> tuple[str, Any]:
    """A ``ChatCompletionMessageList`` page: (completion id, its messages)."""
    data = record.get("data")
    if not isinstance(data, list):
        raise wrong_type("data", "an array of messages", data)
    key = record.get("completion_id", record.get("chat_completion_id"))
    if key is None:
        first = record.get("first_id")
        if not isinstance(first, str) and data and isinstance(data[0], dict):
            first = data[0].get("id")
        if not isinstance(first, str) or not _MESSAGE_SUFFIX.search(first):
            raise RecordError(
                "completion_id",
                MISSING_FIELD,
                "cannot tell which completion these messages belong to: add 'completion_id'",
            )
        key = _MESSAGE_SUFFIX.sub("", first)
    if not isinstance(key, str):
        raise wrong_type("completion_id", "a string", key)
    messages = []
    for i, m in enumerate(data):
        if not isinstance(m, dict):
            raise wrong_type(f"data[{i}]", "a message object", m)
        msg = {k: v for k, v in m.items() if k in _MESSAGE_KEYS and v is not None}
        if msg.get("content") is None and isinstance(m.get("content_parts"), list):
            msg["content"] = m["content_parts"]
        messages.append(msg)
    return key, messages


def read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    cid = record.get("id")
    if not isinstance(cid, str) or not cid:
        raise wrong_type("id", "a chat completion id", cid)
    messages: Any = record.get("messages", record.get("request_messages"))
    mpath = "messages"
    if messages is None:
        side = ctx.joined.pop(cid, None)
        if side is None:
            raise RecordError(
                "id",
                MISSING_FIELD,
                f"no /messages page for {cid!r}: read the messages export together with the "
                "completions export",
            )
        messages = side.value if isinstance(side, SideRecord) else side
        mpath = f"messages of {cid}"
    request: dict[str, Any] = {"model": record.get("model"), "messages": messages}
    for key in _PARAMS:
        value = record.get(key)
        if value is not None:
            request[key] = value
    echoed: dict[str, Any] = {}
    echoed_why = drop_echoed_params(request, echoed)
    try:
        check_chat_request(request, "", ctx)
    except RecordError as e:
        if mpath != "messages" and e.field.startswith("messages"):
            e.field = e.field.replace("messages", mpath, 1)
        raise
    logged = chat_completion(record, "")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise wrong_type("metadata", "an object", metadata)
    metadata = dict(metadata)
    for key in ("request_id", "service_tier", "system_fingerprint"):
        if record.get(key) is not None:
            metadata[key] = record[key]
    if logged.other_choices:
        metadata["other_choices"] = logged.other_choices
    if echoed:
        metadata[DROPPED_PARAMS] = echoed
        metadata[DROPPED_PARAMS_WHY] = echoed_why
    return Exchange(
        id=cid,
        source=ctx.source(),
        timestamp=parse_timestamp(record.get("created"), "created"),
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="OpenAI stored completions export (list objects + their /messages pages)",
    priority=15,
    sniff_index=sniff_index,
    index_reader=read_messages,
)
