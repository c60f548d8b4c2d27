"""``openai-stored-responses``: Responses API objects read back from OpenAI.

What a team that used ``store=true`` can export: ``GET /v1/responses/{id}`` (an
``object: "response"``: the answer, with the request's settings echoed: ``model``,
``instructions``, ``tools``, ``tool_choice``, ``temperature``, ``top_p``, ``text``,
``reasoning``, ``max_output_tokens``, ``metadata``...) and ``GET
/v1/responses/{id}/input_items`` (an ``object: "list"`` page of the input items). The response
object does not hold its input, so the input items come:

* in the same record: ``input_items`` (a list page or a list of items) or ``input`` added to
  the response object by the export script, or a ``{"response": {...}, "input_items": {...}}``
  pair;
* or from a side file of ``/input_items`` pages, one a line (or one JSON array of pages), each
  with the ``response_id`` the export script added (the page itself does not name its
  response: its ids are the items' own).

Order. ``/input_items`` lists the newest item first unless asked ``order=asc`` (Source: OpenAI
API reference, "List input items": ``order`` defaults to ``desc``). A page's ``order`` (or a
record's ``input_items_order``) is used when the export kept it; otherwise the order whose
first item opens a conversation (a system, developer or user message) and whose last item is
what the model answered (a user message or a tool output) is taken, newest-first when both fit.

The stored object echoes the API's defaults for settings the application did not send
(temperature 1.0, top_p 1.0, tool_choice ``auto``, parallel_tool_calls true, truncation
``disabled``, ``text.format`` text, verbosity ``medium``, reasoning without effort, top_logprobs
0, store true, the serving tier): they are dropped and listed in ``metadata["dropped_params"]``.
The request is then converted like a logged Responses request
(:mod:`migrate_eval.ingest.responses_api`): a response that continued another
(``previous_response_id``, ``conversation``) or used a stored prompt is skipped, naming it.
"""

from __future__ import annotations

from typing import Any

from migrate_eval.core.records import Exchange
from migrate_eval.ingest._common import (
    DROPPED_PARAMS,
    DROPPED_PARAMS_WHY,
    MISSING_FIELD,
    LineContext,
    RecordError,
    SideRecord,
    drop_filled_params,
    parse_timestamp,
    wrong_type,
)
from migrate_eval.ingest.registry import LogFormat
from migrate_eval.ingest.responses_api import (
    chat_request_from_responses,
    response_from_responses_body,
)

NAME = "openai-stored-responses"
_REQUEST_KEYS = (
    "model",
    "instructions",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "max_output_tokens",
    "text",
    "reasoning",
    "parallel_tool_calls",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "previous_response_id",
    "conversation",
    "prompt",
    "truncation",
    "service_tier",
    "top_logprobs",
    "max_tool_calls",
    "background",
)
ECHOES: dict[str, tuple[Any, ...]] = {
    "temperature": (1,),
    "top_p": (1,),
    "tool_choice": ("auto",),
    "parallel_tool_calls": (True,),
    "truncation": ("disabled",),
    "service_tier": ("default", "auto"),
    "top_logprobs": (0,),
    "background": (False,),
    "metadata": ({},),
    "text": ({"format": {"type": "text"}}, {"format": {"type": "text"}, "verbosity": "medium"}),
    "reasoning": ({"effort": None, "summary": None}, {"effort": None}, {}),
}
_OPENERS = frozenset({"system", "developer", "user"})


def _pair(record: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(the response object, the input items in the record or None)."""
    inner = record.get("response")
    if isinstance(inner, dict) and inner.get("object") == "response":
        return inner, record.get("input_items", record.get("input"))
    return record, record.get("input_items", record.get("input"))


def sniff(record: dict[str, Any]) -> bool:
    response, _ = _pair(record)
    return (
        response.get("object") == "response"
        and "output" in response
        and "request" not in record
        and "custom_id" not in record
    )


def sniff_index(record: dict[str, Any]) -> bool:
    data = record.get("data")
    return (
        record.get("object") == "list"
        and "response_id" in record
        and isinstance(data, list)
        and (not data or (isinstance(data[0], dict) and "type" in data[0]))
    )


def read_input_items(record: dict[str, Any], ctx: LineContext) -> tuple[str, Any]:
    """An ``/input_items`` page with the ``response_id`` the export added: (id, page)."""
    key = record.get("response_id")
    if not isinstance(key, str) or not key:
        raise wrong_type("response_id", "the id of the response these items belong to", key)
    data = record.get("data")
    if not isinstance(data, list):
        raise wrong_type("data", "an array of input items", data)
    order = record.get("order")
    return key, [{"_order": order}, *data] if order in ("asc", "desc") else list(data)


def _is_opener(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("role") in _OPENERS
        and (item.get("type") in (None, "message"))
    )


def _is_last(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    return item.get("type") == "function_call_output" or (
        item.get("role") == "user" and item.get("type") in (None, "message")
    )


def _ordered(items: list[Any], order: Any) -> tuple[list[Any], str]:
    """The items oldest first, and how the order was known."""
    if order == "asc":
        return items, "asc (as exported)"
    if order == "desc":
        return items[::-1], "desc (as exported)"
    newest_first = items[::-1]

    def fits(seq: list[Any]) -> int:
        return int(bool(seq) and _is_opener(seq[0])) + int(bool(seq) and _is_last(seq[-1]))

    if fits(items) > fits(newest_first):
        return items, "asc (inferred)"
    return newest_first, "desc (the API's default, assumed)"


def _items(value: Any, path: str) -> tuple[list[Any], Any]:
    """Input items given as a page, a list of items or a string; (items, stated order)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}], "asc"
    if isinstance(value, dict):
        data = value.get("data")
        if not isinstance(data, list):
            raise wrong_type(f"{path}.data", "an array of input items", data)
        return list(data), value.get("order")
    if isinstance(value, list):
        marks = [x for x in value if isinstance(x, dict) and "_order" in x]
        order = marks[0]["_order"] if marks else None
        return [x for x in value if not (isinstance(x, dict) and "_order" in x)], order
    raise wrong_type(path, "the input items (a list page or an array)", value)


def read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    response, given = _pair(record)
    prefix = "response." if response is not record else ""
    rid = response.get("id")
    if not isinstance(rid, str) or not rid:
        raise wrong_type(f"{prefix}id", "a response id", rid)
    ipath = "input_items"
    if given is None:
        side = ctx.joined.pop(rid, None)
        if side is None:
            raise RecordError(
                f"{prefix}id",
                MISSING_FIELD,
                f"no input items for {rid!r}: read the /input_items export (pages with "
                "'response_id') together with the responses, or add 'input_items' to each",
            )
        given = side.value if isinstance(side, SideRecord) else side
        ipath = f"input items of {rid}"
    items, order = _items(given, ipath)
    order = record.get("input_items_order", order)
    items, how = _ordered(items, order)
    body: dict[str, Any] = {k: response[k] for k in _REQUEST_KEYS if response.get(k) is not None}
    body["input"] = items
    metadata: dict[str, Any] = {}
    dropped = drop_filled_params(body, {}, ECHOES, "")
    request, notes = chat_request_from_responses(body, prefix.rstrip("."), ctx)
    if isinstance(request.get("metadata"), dict):
        metadata.update(request["metadata"])
    metadata["endpoint"] = "/v1/responses"
    metadata["input_items_order"] = how
    if notes:
        metadata["conversion_notes"] = notes
    if dropped:
        metadata[DROPPED_PARAMS] = dropped
        metadata[DROPPED_PARAMS_WHY] = (
            "stored responses echo the API's defaults (temperature 1.0, top_p 1.0, tool_choice "
            "auto, parallel_tool_calls true, truncation disabled, text format) for settings "
            "the application did not send"
        )
    if response.get("service_tier") is not None:
        metadata["service_tier"] = response["service_tier"]
    logged = response_from_responses_body(response, prefix.rstrip("."))
    return Exchange(
        id=rid,
        source=ctx.source(),
        timestamp=parse_timestamp(response.get("created_at"), f"{prefix}created_at"),
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="OpenAI stored Responses (GET /v1/responses/{id}) with their /input_items",
    priority=16,
    sniff_index=sniff_index,
    index_reader=read_input_items,
)
