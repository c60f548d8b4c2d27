"""JSON helpers shared by the structured-output and tool-call metrics.

JSON-aware equality means: object key order is irrelevant, numbers compare by value (``1`` equals
``1.0``), booleans are not numbers (``true`` does not equal ``1``), strings compare exactly,
arrays compare position by position.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(
    r"\A\s*```[ \t]*(?:json|JSON|json5|jsonc)?[ \t]*\r?\n(?P<body>.*?)\r?\n?```\s*\Z", re.DOTALL
)


def parse_json_answer(text: str | None) -> tuple[bool, Any]:
    """Parse a model's text answer as JSON: ``(True, value)`` or ``(False, None)``.

    Documented leniency: an answer that is exactly one Markdown code fence (```` ```json ````
    or a bare ```` ``` ````, with optional surrounding whitespace) is unwrapped first, because
    many models fence JSON even when asked not to. Prose around the fence is not accepted.
    """
    if text is None:
        return False, None
    try:
        return True, json.loads(text)
    except ValueError:
        pass
    m = _FENCE.match(text)
    if m is None:
        return False, None
    try:
        return True, json.loads(m.group("body"))
    except ValueError:
        return False, None


def json_equal(a: Any, b: Any) -> bool:
    """JSON-aware equality (see the module docstring)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return False
        return all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _normalize(x: Any) -> Any:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, float):
        return int(x) if x.is_integer() else x
    if isinstance(x, dict):
        return {str(k): _normalize(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_normalize(v) for v in x]
    return x


def canonical_key(x: Any) -> str:
    """A string that is equal for two values exactly when they are :func:`json_equal`."""
    return json.dumps(_normalize(x), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


Path = tuple[str | int, ...]


def leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Flatten a JSON value into ``{path: leaf}``.

    A leaf is a scalar (string, number, boolean, null) or an empty object or array; arrays
    contribute their items by position.
    """
    out: dict[Path, Any] = {}
    _collect(value, prefix, out)
    return out


def _collect(value: Any, prefix: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _collect(v, (*prefix, str(k)), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _collect(v, (*prefix, i), out)
    else:
        out[prefix] = value
