"""Word overlap of free-text answers: ``token_f1``.

The F1 of the two answers' bags of words (SQuAD-style): texts are Unicode-normalised (NFKC),
case-folded and split into runs of word characters (``\\w+``); precision is the share of the
candidate's words (with multiplicity) found in the logged answer, recall the share of the logged
answer's words found in the candidate. Identical texts score 1, one empty text 0.

Half of the default free-text parity (with ``semantic_similarity``): on real answers it ranks
models like the human-validated leaderboards far better than chrF (docs/free-text-parity.md),
and it needs nothing beyond the standard library.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator

from migrate_eval.score.registry import MetricContext, register_metric
from migrate_eval.score.text import answer_text

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s")
#: Texts longer than this are counted a piece at a time (cut at white space): the list of a
#: 10 MB answer's words alone took 10 times its size.
_PIECE = 256 * 1024


def _pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of about :data:`_PIECE` characters, each cut just before a white-space
    character (no word is split; normalisation never joins across white space)."""
    start = 0
    while len(text) - start > _PIECE:
        cut = _SPACE.search(text, start + _PIECE)
        if cut is None:
            break
        yield text[start : cut.start()]
        start = cut.start()
    yield text[start:] if start else text


def _words(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for piece in _pieces(text):
        counts.update(_WORD.findall(unicodedata.normalize("NFKC", piece).casefold()))
    return counts


def token_f1_score(reference: str, candidate: str) -> float:
    """Bag-of-words F1 of two texts in [0, 1] (module docstring)."""
    if reference == candidate:
        return 1.0
    ref, cand = _words(reference), _words(candidate)
    if not ref and not cand:
        return 1.0  # both without a word (e.g. only punctuation): nothing to disagree on
    common = sum((ref & cand).values())
    if common == 0:
        return 0.0
    precision = common / sum(cand.values())
    recall = common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


@register_metric(
    "token_f1",
    kinds=("free_text",),
    description="F1 of the answers' bags of words (case-folded, NFKC), 0-1.",
)
def token_f1(ctx: MetricContext) -> float | None:
    return token_f1_score(answer_text(ctx.reference), answer_text(ctx.candidate))
