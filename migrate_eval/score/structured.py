"""Structured-output metrics: JSON validity, validity against the request's schema, field parity.

Answers are parsed with :func:`~migrate_eval.score._json.parse_json_answer`, which accepts an
answer that is exactly one ```` ```json ```` fenced block (documented leniency).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from migrate_eval.core.request import ChatRequest
from migrate_eval.score._json import canonical_key, json_equal, leaves
from migrate_eval.score.registry import MetricContext, register_metric

_VALIDATORS: OrderedDict[str, Any] = OrderedDict()
_VALIDATOR_CACHE_SIZE = 256


def request_schema(request: ChatRequest) -> dict[str, Any] | bool | None:
    """The JSON schema of a request's ``response_format`` (``json_schema.schema``), if any."""
    fmt = request.output_format
    return fmt.schema if fmt.kind == "json_schema" else None


def schema_validator(schema: dict[str, Any] | bool) -> Any:
    """A Draft 2020-12 validator for ``schema``, checked once and cached (LRU, by content).

    Raises ``jsonschema.SchemaError`` when the schema itself is invalid.
    """
    key = canonical_key(schema)
    validator = _VALIDATORS.get(key)
    if validator is None:
        import jsonschema  # ~50 ms: imported by the first schema, not by the metric registry

        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        _VALIDATORS[key] = validator
        if len(_VALIDATORS) > _VALIDATOR_CACHE_SIZE:
            _VALIDATORS.popitem(last=False)
    else:
        _VALIDATORS.move_to_end(key)
    return validator


@register_metric(
    "json_valid",
    kinds=("structured",),
    description="1 if the candidate's text is JSON (a ```json fenced block is accepted), else 0.",
)
def json_valid(ctx: MetricContext) -> float | None:
    return 1.0 if ctx.candidate_json[0] else 0.0


@register_metric(
    "json_schema_valid",
    kinds=("structured",),
    description="1 if the candidate's JSON is valid against the request's response_format schema "
    "(Draft 2020-12); n/a without a schema.",
)
def json_schema_valid(ctx: MetricContext) -> float | None:
    schema = request_schema(ctx.exchange.request)
    if schema is None:
        return None
    ok, value = ctx.candidate_json
    if not ok:
        return 0.0
    return 1.0 if schema_validator(schema).is_valid(value) else 0.0


def json_field_parity(reference: Any, candidate: Any) -> float:
    """Share of leaf fields on which two JSON values agree.

    Both values are flattened into leaf paths (:func:`~migrate_eval.score._json.leaves`;
    arrays by position). The score is the number of paths present in both with JSON-equal
    values, divided by the number of distinct paths in either. So a missing or wrong field
    costs one, and so does every extra leaf the candidate adds (an extra key, an extra array
    item): a reference with 4 fields answered with those 4 plus 1 extra scores 4/5.
    """
    if json_equal(reference, candidate):
        return 1.0
    ref, cand = leaves(reference), leaves(candidate)
    matched = sum(1 for p, v in ref.items() if p in cand and json_equal(v, cand[p]))
    union = len(ref) + sum(1 for p in cand if p not in ref)
    return matched / union if union else 1.0


@register_metric(
    "json_match",
    kinds=("structured",),
    description="Share of leaf fields equal to the logged JSON answer (key order irrelevant, 1 == 1.0; "
    "extra candidate fields count against; arrays the schema marks as sets compare as sets); 0 if "
    "the candidate is not JSON, n/a if the reference is not.",
)
def json_match(ctx: MetricContext) -> float | None:
    ref_ok, ref = ctx.reference_json
    if not ref_ok:
        return None
    cand_ok, cand = ctx.candidate_json
    if not cand_ok:
        return 0.0
    schema = request_schema(ctx.exchange.request)
    if schema is not None and _has_set(schema):
        return field_parity(ref, cand, schema=schema)
    return json_field_parity(ref, cand)


def _has_set(schema: Any) -> bool:
    if isinstance(schema, dict):
        return is_set_schema(schema) or any(_has_set(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_set(v) for v in schema)
    return False


# --- schema-aware, tolerant field parity -------------------------------------------------------

#: Relative tolerance of numbers in ``json_match_normalized`` (and absolute, near zero).
NUMERIC_REL_TOL = 1e-6
NUMERIC_ABS_TOL = 1e-9
#: Schema annotation that makes an array compare as a set: ``"x-migrate-eval": "set"``.
SET_ANNOTATION = "x-migrate-eval"

_SET = "{set}"


def is_set_schema(schema: Any) -> bool:
    """An array schema whose order does not matter: ``uniqueItems: true`` or ``x-migrate-eval: set``."""
    return isinstance(schema, dict) and (
        schema.get("uniqueItems") is True or schema.get(SET_ANNOTATION) == "set"
    )


def _sub_schema(schema: Any, key: str | int) -> Any:
    if not isinstance(schema, dict):
        return None
    if isinstance(key, str):
        props = schema.get("properties")
        if isinstance(props, dict) and key in props:
            return props[key]
        extra = schema.get("additionalProperties")
        return extra if isinstance(extra, dict) else None
    items = schema.get("items")
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and key < len(prefix):
        return prefix[key]
    return items if isinstance(items, dict) else None


def _norm_string(s: str) -> str:
    from migrate_eval.score.text import normalize_label

    return normalize_label(s)


def _norm_leaf(value: Any, normalize: bool) -> Any:
    if normalize and isinstance(value, str):
        return _norm_string(value)
    return value


def schema_leaves(
    value: Any, schema: Any, *, normalize: bool = False, prefix: tuple[Any, ...] = ()
) -> dict[tuple[Any, ...], Any]:
    """Like :func:`~migrate_eval.score._json.leaves`, but arrays the schema marks as sets
    (:func:`is_set_schema`) contribute one leaf per distinct item, keyed by the item's canonical
    JSON (after string normalisation when ``normalize``), so their order does not matter."""
    out: dict[tuple[Any, ...], Any] = {}

    def walk(v: Any, s: Any, p: tuple[Any, ...]) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(x, _sub_schema(s, str(k)), (*p, str(k)))
        elif isinstance(v, list) and v and is_set_schema(s):
            for x in v:
                item = _normalized_value(x) if normalize else x
                out[(*p, _SET, canonical_key(item))] = True
        elif isinstance(v, list) and v:
            for i, x in enumerate(v):
                walk(x, _sub_schema(s, i), (*p, i))
        else:
            out[p] = _norm_leaf(v, normalize)

    walk(value, schema, prefix)
    return out


def _normalized_value(x: Any) -> Any:
    if isinstance(x, str):
        return _norm_string(x)
    if isinstance(x, dict):
        return {k: _normalized_value(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_normalized_value(v) for v in x]
    return x


def _leaf_equal(a: Any, b: Any, tolerant: bool) -> bool:
    if (
        tolerant
        and isinstance(a, int | float)
        and isinstance(b, int | float)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=NUMERIC_REL_TOL, abs_tol=NUMERIC_ABS_TOL)
    return json_equal(a, b)


def field_parity(
    reference: Any,
    candidate: Any,
    *,
    schema: Any = None,
    normalize_strings: bool = False,
    numeric_tolerance: bool = False,
) -> float:
    """Share of leaf fields on which two JSON values agree, with options.

    Same counting as :func:`json_field_parity` (matched paths over the union of paths), plus:
    arrays the ``schema`` marks as sets compare as sets; ``normalize_strings`` compares strings
    after NFKC, case folding, whitespace collapse and trimming quotes/trailing punctuation;
    ``numeric_tolerance`` compares numbers with ``NUMERIC_REL_TOL`` relative tolerance.
    """
    ref = schema_leaves(reference, schema, normalize=normalize_strings)
    cand = schema_leaves(candidate, schema, normalize=normalize_strings)
    if not ref and not cand:
        return 1.0
    matched = sum(
        1 for p, v in ref.items() if p in cand and _leaf_equal(v, cand[p], numeric_tolerance)
    )
    union = len(ref) + sum(1 for p in cand if p not in ref)
    return matched / union if union else 1.0


def key_paths(value: Any, prefix: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    """Every object key path in a JSON value (array positions included in the path)."""
    out: set[tuple[Any, ...]] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add((*prefix, str(k)))
            out |= key_paths(v, (*prefix, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out |= key_paths(v, (*prefix, i))
    return out


@register_metric(
    "json_match_normalized",
    kinds=("structured",),
    description="Like json_match, with strings compared after normalisation, numbers with a 1e-6 "
    "relative tolerance and arrays the schema marks as sets compared as sets.",
)
def json_match_normalized(ctx: MetricContext) -> float | None:
    ref_ok, ref = ctx.reference_json
    if not ref_ok:
        return None
    cand_ok, cand = ctx.candidate_json
    if not cand_ok:
        return 0.0
    return field_parity(
        ref,
        cand,
        schema=request_schema(ctx.exchange.request),
        normalize_strings=True,
        numeric_tolerance=True,
    )


@register_metric(
    "json_key_coverage",
    kinds=("structured",),
    description="Share of the logged answer's object keys (at every level) the candidate's JSON "
    "also has, values ignored; n/a when the logged answer has no keys.",
)
def json_key_coverage(ctx: MetricContext) -> float | None:
    ref_ok, ref = ctx.reference_json
    if not ref_ok:
        return None
    keys = key_paths(ref)
    if not keys:
        return None
    cand_ok, cand = ctx.candidate_json
    if not cand_ok:
        return 0.0
    return len(keys & key_paths(cand)) / len(keys)
