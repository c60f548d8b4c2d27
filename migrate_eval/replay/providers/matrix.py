"""The feature-support matrix: which Chat Completions feature each provider can replay.

Every provider class declares ``features``: a mapping from each name in :data:`FEATURES` to
a :data:`Support` level. ``yes`` means translated natively, ``emulated`` means reproduced by
another mechanism of the vendor (documented in the provider's module), ``no`` means a logged
request using it becomes an ``unsupported`` error row, or, for the soft fields (``sampling``,
``seed``, ``logprobs``: see :data:`~migrate_eval.core.request.SOFT_FIELDS`), is replayed
without them and counted unless the run is ``strict_params``; a feature a provider does not
declare shows as ``?``. ``migrate-eval providers`` prints the
matrix (``--json`` for machines).

Provider modules are imported without their vendor SDK (SDKs are imported on first use), so
the matrix is complete even when an extra is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Support = Literal["yes", "emulated", "no", "?"]

#: Feature name -> what it means, in matrix order.
FEATURES: dict[str, str] = {
    "system_prompt": "system/developer messages",
    "multi_turn": "multi-turn history",
    "tools": "function tools with JSON-schema parameters, tool calls and tool results",
    "tool_choice_required": "tool_choice 'required'",
    "tool_choice_named": "tool_choice naming one function",
    "parallel_tool_calls": "several tool calls in one answer",
    "json_mode": "response_format json_object",
    "json_schema": "response_format json_schema (structured output)",
    "stop": "stop sequences",
    "sampling": "temperature, top_p, presence/frequency penalties",
    "seed": "seed",
    "n": "n > 1 (several choices)",
    "logprobs": "logprobs / top_logprobs",
    "images": "image inputs (data URLs and remote URLs)",
    "streaming": "streamed answers (time to first token)",
}

#: What a plain Chat Completions endpoint supports (the logged requests' own protocol):
#: everything passes through as logged, and ``stream: true`` candidates stream.
CHAT_COMPLETIONS_FEATURES: dict[str, str] = dict.fromkeys(FEATURES, "yes")


def provider_features(name: str) -> dict[str, Support] | None:
    """The declared features of a provider, or None when it declares none (e.g. plugins)."""
    from migrate_eval.replay.providers.registry import provider_object

    obj = provider_object(name)
    declared = getattr(obj, "features", None)
    if not isinstance(declared, Mapping):
        return None
    out: dict[str, Support] = {}
    for feature in FEATURES:
        value = declared.get(feature, "?")
        out[feature] = value if value in ("yes", "emulated", "no") else "?"
    return out


def feature_matrix(providers: list[str] | None = None) -> dict[str, dict[str, Support] | None]:
    """``{provider: {feature: support}}`` for every registered provider (or those named)."""
    from migrate_eval.replay.providers.registry import available_providers

    names = providers if providers is not None else available_providers()
    return {name: provider_features(name) for name in names}


def matrix_json(providers: list[str] | None = None) -> dict[str, Any]:
    """The matrix as a JSON document: features (with meanings) and providers."""
    return {
        "features": dict(FEATURES),
        "levels": {
            "yes": "translated natively",
            "emulated": "reproduced by another mechanism of the vendor",
            "no": "requests using it become 'unsupported' error rows",
            "?": "not declared by the provider",
        },
        "providers": feature_matrix(providers),
    }


def render_table(providers: list[str] | None = None) -> str:
    """The matrix as a plain-text table: one row per feature, one column per provider."""
    matrix = feature_matrix(providers)
    names = list(matrix)
    header = ["feature", *names]
    rows = [
        [feature, *[(matrix[n] or {}).get(feature, "?") for n in names]] for feature in FEATURES
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    if any(cell == "?" for r in rows for cell in r[1:]):
        out.append("? = not declared by the provider")
    return "\n".join(out)
