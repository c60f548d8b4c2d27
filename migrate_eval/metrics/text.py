"""Text metrics: exact and normalised agreement, gold-label agreement, length ratio, chrF.

The text of an answer is its ``text``; when a model refused through the ``refusal`` field and
produced no text, the refusal message stands in for it; an answer with neither is ``""``.
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from functools import cache

from migrate_eval.metrics.registry import MetricContext, register_metric
from migrate_eval.records import Response

# Characters that wrap a label: quotes, brackets and Markdown emphasis. They are stripped from
# both ends. Sentence punctuation is stripped from the end only, so that "-1" stays "-1".
_WRAPPERS = "\"'`“”‘’«»„‚‹›「」『』()[]{}<>*_"
_TRAILING = ".!?;:,…。！？"


def answer_text(response: Response) -> str:
    """The text an answer shows a user (see the module docstring)."""
    if response.text is not None:
        return response.text
    return response.refusal or ""


def normalize_label(text: str) -> str:
    """Normalise a short answer for label comparison.

    Unicode NFKC, case folding, whitespace runs collapsed to one space, then quotes, brackets and
    Markdown emphasis stripped from both ends and sentence punctuation (a trailing period...) from
    the end, repeatedly: ``' **"Positive."** '`` becomes ``positive``.
    """
    s = unicodedata.normalize("NFKC", text).casefold()
    s = " ".join(s.split())
    while True:
        stripped = s.strip(_WRAPPERS).rstrip(_TRAILING).strip()
        if stripped == s:
            return s
        s = stripped


@register_metric(
    "exact_match",
    description="1 if the candidate's text is identical to the logged text, else 0.",
)
def exact_match(ctx: MetricContext) -> float | None:
    return 1.0 if answer_text(ctx.candidate) == answer_text(ctx.reference) else 0.0


@register_metric(
    "normalized_match",
    kinds=("classification",),
    description="1 if the texts agree after case, Unicode, whitespace and punctuation normalisation (labels).",
)
def normalized_match(ctx: MetricContext) -> float | None:
    same = normalize_label(answer_text(ctx.candidate)) == normalize_label(
        answer_text(ctx.reference)
    )
    return 1.0 if same else 0.0


@register_metric(
    "gold_match",
    kinds=("classification",),
    description="1 if the candidate's text matches the exchange's gold label (normalised); n/a without one.",
)
def gold_match(ctx: MetricContext) -> float | None:
    gold = ctx.exchange.gold
    if gold is None:
        return None
    return 1.0 if normalize_label(answer_text(ctx.candidate)) == normalize_label(gold) else 0.0


@register_metric(
    "length_ratio",
    kinds=("free_text",),
    description="Shorter over longer answer length in characters (1 = same length; both empty = 1).",
)
def length_ratio(ctx: MetricContext) -> float | None:
    a, b = len(answer_text(ctx.candidate)), len(answer_text(ctx.reference))
    if a == b:
        return 1.0
    return min(a, b) / max(a, b)


#: Modules whose import-time warnings are silenced while lm-eval's registry is imported.
_LM_EVAL_IMPORT_MODULES = (
    r"(lm_eval|sacrebleu|evaluate|datasets|transformers|torch|pkg_resources)(\.|$)"
)

ChrfAggregation = Callable[[Sequence[tuple[str, str]]], float]


@cache
def lm_eval_chrf() -> ChrfAggregation:
    """lm-eval's registered ``chrf`` aggregation (looked up once, then reused).

    It takes ``[(reference, prediction), ...]`` and returns sacrebleu's corpus chrF (0-100).
    """
    with warnings.catch_warnings():
        # lm-eval and its dependencies may warn about optional backends at import time; that
        # is not about the chrF we use, so keep those import-time warnings out of the run.
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=_LM_EVAL_IMPORT_MODULES)
        from lm_eval.api.registry import get_aggregation

        fn = get_aggregation("chrf")
    if fn is None:  # pragma: no cover - depends on the installed lm-eval
        raise RuntimeError("lm-eval has no 'chrf' aggregation registered")
    chrf_fn: ChrfAggregation = fn
    return chrf_fn


def chrf_score(reference: str, prediction: str) -> float:
    """Sentence-level chrF of one pair in [0, 1], through lm-eval's registry (both empty: 1)."""
    if not reference and not prediction:
        return 1.0
    value = float(lm_eval_chrf()([(reference, prediction)])) / 100.0
    if math.isnan(value):  # pragma: no cover - sacrebleu returns 0 for degenerate input
        return 0.0
    return min(1.0, max(0.0, value))


@register_metric(
    "chrf",
    kinds=("free_text",),
    description="Character n-gram F-score (chrF, sacrebleu via lm-eval's metric registry), 0-1.",
)
def chrf(ctx: MetricContext) -> float | None:
    return chrf_score(answer_text(ctx.reference), answer_text(ctx.candidate))
