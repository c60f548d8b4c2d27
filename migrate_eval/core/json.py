"""Canonical JSON and digests: equal JSON values give equal text and equal digests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 preserved."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_digest(obj: Any) -> bytes:
    """16 bytes that are equal for equal JSON values, keys in any order (equal requests, for
    instance): a BLAKE2b digest of the value written with sorted keys (by ``orjson``, or by
    :func:`canonical_json` for what ``orjson`` refuses, such as integers beyond 64 bits)."""
    try:
        raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raw = canonical_json(obj).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).digest()


def stable_id(*parts: Any) -> str:
    """A short stable id from any JSON-able parts."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]
