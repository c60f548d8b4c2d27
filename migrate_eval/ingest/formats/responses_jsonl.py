"""``openai-responses``: OpenAI Responses API request/response logs, one pair a line.

``{"request": <POST /v1/responses body>, "response": <object: "response">}`` (also under
``req``/``res`` or ``input``/``output``, with ``id``, ``timestamp``, ``latency_ms``,
``metadata`` as for ``chat-jsonl``). The request is converted to the Chat Completions shape
and the response normalised by :mod:`migrate_eval.ingest.responses_api`. What cannot be
converted faithfully is reported per exchange: a request that changes what the model sees
(``previous_response_id``, ``conversation``, stored ``prompt`` templates, hosted tools...) is a
skipped line whose reason names the field (``cannot convert to Chat Completions``); settings
dropped without changing the conversation are listed in ``metadata["conversion_notes"]``.

The same lines are readable as ``chat-jsonl`` (which accepts both APIs); this format is
detected first when the request or the response is a Responses API one, so that summaries
count Responses API traffic apart.
"""

from __future__ import annotations

from typing import Any

from migrate_eval.ingest.formats import chat_jsonl
from migrate_eval.ingest.registry import LogFormat
from migrate_eval.ingest.responses_api import looks_like_responses_request

NAME = "openai-responses"


def sniff(record: dict[str, Any]) -> bool:
    if not chat_jsonl.sniff(record):
        return False
    for req_key, res_key in (("request", "response"), ("req", "res"), ("input", "output")):
        request = record.get(req_key)
        if isinstance(request, dict):
            inner = request.get("body")
            body: dict[str, Any] = inner if isinstance(inner, dict) else request
            response = record.get(res_key)
            if isinstance(response, dict) and response.get("object") == "response":
                return True
            return looks_like_responses_request(body)
    return False


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=chat_jsonl.read,
    description="OpenAI Responses API request/response pairs as JSON Lines (converted)",
    priority=19,
)
