"""Text metrics: exact and normalised agreement, gold-label agreement, length ratio, chrF.

The text of an answer is its ``text``; when a model refused through the ``refusal`` field and
produced no text, the refusal message stands in for it; an answer with neither is ``""``.
"""

from __future__ import annotations

import contextlib
import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from functools import cache, lru_cache

from migrate_eval.core.records import Response
from migrate_eval.score._lcs import lcs_length
from migrate_eval.score.registry import MetricContext, register_metric

# Characters that wrap a label: quotes, brackets and Markdown emphasis. They are stripped from
# both ends. Sentence punctuation is stripped from the end only, so that "-1" stays "-1".
_WRAPPERS = "\"'`“”‘’«»„‚‹›「」『』()[]{}<>*_"
_TRAILING = ".!?;:,…。！？"


def answer_text(response: Response) -> str:
    """The text an answer shows a user (see the module docstring)."""
    if response.text is not None:
        return response.text
    return response.refusal or ""


@lru_cache(maxsize=65_536)
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


def chrf_unit(reference: str, prediction: str, value: float) -> float:
    if not reference and not prediction:
        return 1.0
    value /= 100.0
    if math.isnan(value):  # pragma: no cover - sacrebleu returns 0 for degenerate input
        return 0.0
    return min(1.0, max(0.0, value))


def chrf_score(reference: str, prediction: str) -> float:
    """Sentence-level chrF of one pair in [0, 1] (both empty: 1): sacrebleu's chrF, as lm-eval's
    registered ``chrf`` aggregation computes it, to the last bit (:mod:`~migrate_eval.core._chrf`
    computes it without the per-call overhead)."""
    from migrate_eval.core._chrf import chrf_many

    return chrf_unit(reference, prediction, chrf_many([(reference, prediction)])[0])


def chrf_scores(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """:func:`chrf_score` of many ``(reference, prediction)`` pairs, in batches (over the
    machine's cores when there are enough pairs to pay for worker processes)."""
    from migrate_eval.core._chrf import chrf_batch

    values = chrf_batch(pairs)
    return [chrf_unit(r, p, v) for (r, p), v in zip(pairs, values, strict=True)]


# The batch hook's results for the rows being scored: (reference, prediction) -> chrF.
_CHRF_BATCH: dict[tuple[str, str], float] = {}
# Values computed before scoring (during the replay: score/early.py), by hash of the pair.
_CHRF_KNOWN: ContextVar[Mapping[int, float] | None] = ContextVar(
    "migrate_eval_chrf_known", default=None
)


@contextlib.contextmanager
def known_chrf(values: Mapping[int, float]) -> Iterator[None]:
    """Within the block, the chrF batch hook takes these values, by
    ``hash((reference, prediction))``, as computed (:class:`~migrate_eval.score.early.EarlyChrf`)
    and computes only the others (a hash collision costs at most a value computed again)."""
    token = _CHRF_KNOWN.set(values)
    try:
        yield
    finally:
        _CHRF_KNOWN.reset(token)


def _prepare_chrf(contexts: Sequence[MetricContext]) -> None:
    _CHRF_BATCH.clear()
    pairs = list(
        dict.fromkeys((answer_text(c.reference), answer_text(c.candidate)) for c in contexts)
    )
    known = _CHRF_KNOWN.get() or {}
    todo = []
    for pair in pairs:
        value = known.get(hash(pair))
        if value is None:
            todo.append(pair)
        else:
            _CHRF_BATCH[pair] = value
    _CHRF_BATCH.update(zip(todo, chrf_scores(todo), strict=True))


@register_metric(
    "chrf",
    kinds=("free_text",),
    description="Character n-gram F-score (chrF, equal to sacrebleu's and lm-eval's), 0-1.",
    prepare=_prepare_chrf,
)
def chrf(ctx: MetricContext) -> float | None:
    pair = (answer_text(ctx.reference), answer_text(ctx.candidate))
    # read, not taken out: a pair that repeats (the same logged answer and the same reply,
    # common in real traffic) is computed once, not once a row; the table holds one scoring
    # pass's distinct pairs, until the next pass's hook clears it
    value = _CHRF_BATCH.get(pair)
    return chrf_score(*pair) if value is None else value


# --- BLEU, TER and ROUGE-L -------------------------------------------------------------------

TextAggregation = Callable[[Sequence[tuple[str, str]]], float]


@cache
def lm_eval_aggregation(name: str) -> TextAggregation:
    """An lm-eval registered text aggregation (``bleu``, ``ter``, ``chrf``), looked up once."""
    if name == "chrf":
        return lm_eval_chrf()
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=_LM_EVAL_IMPORT_MODULES)
        from lm_eval.api.registry import get_aggregation

        fn = get_aggregation(name)
    if fn is None:  # pragma: no cover - depends on the installed lm-eval
        raise RuntimeError(f"lm-eval has no {name!r} aggregation registered")
    agg: TextAggregation = fn
    return agg


def _clip(value: float) -> float:
    if math.isnan(value):  # pragma: no cover - sacrebleu returns numbers for any input
        return 0.0
    return min(1.0, max(0.0, value))


def bleu_score(reference: str, prediction: str) -> float:
    """Sentence BLEU in [0, 1] through lm-eval's registry (sacrebleu; identical texts: 1).

    Note: sacrebleu's BLEU of texts shorter than four words is 0 unless they are identical;
    BLEU is meant for translation-like answers, chrF is the better default for short texts.
    """
    if reference == prediction:
        return 1.0
    return _clip(float(lm_eval_aggregation("bleu")([(reference, prediction)])) / 100.0)


def ter_score(reference: str, prediction: str) -> float:
    """``1 - TER`` clipped to [0, 1] (TER = edits per reference word, sacrebleu via lm-eval)."""
    if reference == prediction:
        return 1.0
    if not reference.strip():
        return 0.0
    return _clip(1.0 - float(lm_eval_aggregation("ter")([(reference, prediction)])) / 100.0)


@cache
def _rouge_tokenize() -> Callable[[str], list[str]]:
    from rouge_score import tokenizers

    tokenize: Callable[[str], list[str]] = tokenizers.DefaultTokenizer(use_stemmer=False).tokenize
    return tokenize


def rouge_l_score(reference: str, prediction: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), as ``rouge-score`` computes it.

    ``rouge-score``'s tokenizer; the LCS length bit-parallel (:mod:`._lcs`, same value, about
    50 times faster than its Python table on answers of a few hundred words).
    """
    if reference == prediction:
        return 1.0
    tokenize = _rouge_tokenize()
    ref, pred = tokenize(reference), tokenize(prediction)
    if not ref or not pred:
        return 0.0
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return _clip(2 * precision * recall / (precision + recall))


@register_metric(
    "bleu",
    kinds=("free_text",),
    description="Sentence BLEU (sacrebleu via lm-eval's metric registry), 0-1; identical texts 1.",
)
def bleu(ctx: MetricContext) -> float | None:
    return bleu_score(answer_text(ctx.reference), answer_text(ctx.candidate))


@register_metric(
    "ter",
    kinds=("free_text",),
    description="1 - translation edit rate (sacrebleu via lm-eval's registry), clipped to 0-1.",
)
def ter(ctx: MetricContext) -> float | None:
    return ter_score(answer_text(ctx.reference), answer_text(ctx.candidate))


@register_metric(
    "rouge_l",
    kinds=("free_text",),
    description="ROUGE-L F-measure (longest common word subsequence; rouge-score), 0-1.",
)
def rouge_l(ctx: MetricContext) -> float | None:
    return rouge_l_score(answer_text(ctx.reference), answer_text(ctx.candidate))


# --- refusals ---------------------------------------------------------------------------------

#: Phrases that open (within the first 200 characters) a refusal in plain text.
REFUSAL_PATTERNS = (
    r"\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:can(?:'|no)t|cannot|won't|am unable|'m unable)",
    r"\bI (?:can(?:'|no)t|cannot|won't|am unable to|'m unable to|am not able to) "
    r"(?:help|assist|comply|provide|do that|fulfil|fulfill|support|share|answer|engage)",
    r"\b(?:sorry|unfortunately),? (?:but )?I (?:can(?:'|no)t|cannot|won't|am unable)",
    r"\bI must (?:decline|refuse)\b",
    r"\bas an AI(?: language model)?,? I (?:can(?:'|no)t|cannot|don't|do not)",
    r"\bI'm not able to (?:help|assist|provide)",
)
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.IGNORECASE)


def is_refusal(response: Response) -> bool:
    """Whether an answer refuses: a ``refusal`` field, or a refusal phrase in its first 200 characters.

    An answer with tool calls is not a refusal. Curly apostrophes count as straight ones.
    """
    if response.refusal:
        return True
    if response.tool_calls or not response.text:
        return False
    head = response.text[:200].replace("’", "'")
    return _REFUSAL_RE.search(head) is not None


@register_metric(
    "refusal_match",
    description="1 if both answers refuse or neither does (refusal field or refusal phrase), else 0; "
    "1 - the task mean is the refusal mismatch rate.",
)
def refusal_match(ctx: MetricContext) -> float | None:
    return 1.0 if is_refusal(ctx.reference) == is_refusal(ctx.candidate) else 0.0
