"""The logged request, in the Chat Completions shape: its field names, its identity, its parts.

One place knows which request fields are sampling parameters, tool settings or bookkeeping,
how ``response_format`` is read, how message content becomes text, and what makes two requests
"the same request" (duplicates, the noise floor, the cache).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migrate_eval.core.records import canonical_json, json_digest

if TYPE_CHECKING:
    from migrate_eval.core.records import Exchange


#: Request fields that do not change what the model is asked (left out of the fingerprint).
BOOKKEEPING_FIELDS = frozenset({"metadata", "user", "store", "stream", "stream_options"})


def _fingerprint_body(exchange: Exchange) -> dict[str, object]:
    return {k: v for k, v in exchange.request.items() if k not in BOOKKEEPING_FIELDS}


def request_fingerprint(exchange: Exchange) -> str:
    """Canonical JSON of the request without bookkeeping fields: equal means identical request."""
    return canonical_json(_fingerprint_body(exchange))


def request_digest(exchange: Exchange) -> bytes:
    """:func:`request_fingerprint` as 16 bytes (equal for identical requests), for counting
    duplicates in logs too large to keep every fingerprint's text."""
    return json_digest(_fingerprint_body(exchange))


def request_key(ex: Exchange) -> bytes:
    """16 bytes equal for identical requests (the whole request, metadata included)."""
    return json_digest(ex.request)
