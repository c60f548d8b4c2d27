"""Text metrics: exact/normalised/gold agreement, length ratio, chrF through lm-eval's registry."""

from __future__ import annotations

from typing import Any

import pytest
import sacrebleu

from migrate_eval.core.records import Exchange, OutputKind, Response, Source, ToolCall
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import MetricContext, get_metric
from migrate_eval.score.text import chrf_score, lm_eval_chrf, normalize_label


def _ctx(
    reference: Response | str | None,
    candidate: Response | str | None,
    *,
    kind: OutputKind = "free_text",
    gold: str | None = None,
    request: dict[str, Any] | None = None,
) -> MetricContext:
    ref = reference if isinstance(reference, Response) else Response(text=reference)
    cand = candidate if isinstance(candidate, Response) else Response(text=candidate)
    ex = Exchange(
        id="x1",
        source=Source(file="log.jsonl", line=1, format="test"),
        request=request or {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        response=ref,
        gold=gold,
    )
    task = TaskInfo(name="t", output=kind, metrics=[], min_parity=0.8, n=1, source="suite")
    return MetricContext(exchange=ex, reference=ref, candidate=cand, task=task)


def _m(name: str, ctx: MetricContext) -> float | None:
    return get_metric(name).func(ctx)


def test_exact_match_is_strict() -> None:
    assert _m("exact_match", _ctx("Paris", "Paris")) == 1.0
    assert _m("exact_match", _ctx("Paris", "Paris.")) == 0.0
    assert _m("exact_match", _ctx("Paris", "paris")) == 0.0


@pytest.mark.parametrize(
    ("reference", "candidate"),
    [
        ("Positive", "positive"),
        ("Positive", "  POSITIVE.  "),
        ("positive", '"Positive"'),
        ("positive", "**Positive**"),
        ("positive", "'positive'!"),
        ("Billing question", "billing\n\t question"),
        ("ｃａｔ", "cat"),  # full-width letters: NFKC
        ("Straße", "STRASSE"),  # casefold, not lower()
        ("café", "cafe\u0301"),  # composed vs combining accent: NFKC
        ("«oui»", "Oui."),
        ("", ""),
    ],
)
def test_normalized_match_accepts_cosmetic_differences(reference: str, candidate: str) -> None:
    assert _m("normalized_match", _ctx(reference, candidate, kind="classification")) == 1.0


@pytest.mark.parametrize(
    ("reference", "candidate"),
    [
        ("positive", "negative"),
        ("-1", "1"),  # a leading minus is part of the label
        ("positive", "positive sentiment"),
        ("positive", ""),
        ("C", "C++"),
    ],
)
def test_normalized_match_rejects_different_labels(reference: str, candidate: str) -> None:
    assert _m("normalized_match", _ctx(reference, candidate, kind="classification")) == 0.0


def test_normalize_label_examples() -> None:
    assert normalize_label(' **"Positive."** ') == "positive"
    assert normalize_label("Hello   World.") == "hello world"
    assert normalize_label("e.g.") == "e.g"


def test_refusal_stands_in_for_missing_text() -> None:
    ref = Response(refusal="I can't help with that.")
    assert _m("exact_match", _ctx(ref, Response(refusal="I can't help with that."))) == 1.0
    assert _m("normalized_match", _ctx(ref, "Sure! Here it is")) == 0.0


def test_gold_match_uses_the_gold_label_and_is_na_without_one() -> None:
    assert _m("gold_match", _ctx("spam", "Ham.", gold="ham", kind="classification")) == 1.0
    assert _m("gold_match", _ctx("ham", "spam", gold="ham", kind="classification")) == 0.0
    assert _m("gold_match", _ctx("ham", "ham", kind="classification")) is None


def test_length_ratio() -> None:
    assert _m("length_ratio", _ctx("abcd", "ab")) == 0.5
    assert _m("length_ratio", _ctx("ab", "abcd")) == 0.5
    assert _m("length_ratio", _ctx("", "")) == 1.0
    assert _m("length_ratio", _ctx("abc", "")) == 0.0


def test_chrf_goes_through_lm_eval_registry_and_equals_sacrebleu_sentence_chrf() -> None:
    from lm_eval.api.registry import get_aggregation

    assert lm_eval_chrf() is get_aggregation("chrf")
    assert lm_eval_chrf() is lm_eval_chrf()  # looked up once
    ref = "The quick brown fox jumps over the lazy dog."
    hyp = "A quick brown fox jumped over a lazy dog!"
    expected = sacrebleu.sentence_chrf(hyp, [ref]).score / 100
    value = _m("chrf", _ctx(ref, hyp))
    assert value == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0


def test_chrf_edge_cases() -> None:
    assert _m("chrf", _ctx("identical text", "identical text")) == pytest.approx(1.0)
    assert _m("chrf", _ctx("", "")) == 1.0
    assert _m("chrf", _ctx(None, None)) == 1.0
    assert _m("chrf", _ctx("some reference", "")) == 0.0
    assert _m("chrf", _ctx("", "some answer")) == 0.0
    # unicode text is compared by characters
    uni = chrf_score("Grüße aus Köln, schönes Wetter heute", "Grüsse aus Köln, schönes Wetter")
    assert 0.0 < uni < 1.0
    assert chrf_score("日本語のテキストです", "日本語のテキストです") == pytest.approx(1.0)


def test_chrf_of_a_tool_call_answer_against_text_is_zero() -> None:
    cand = Response(tool_calls=[ToolCall.from_raw("lookup", '{"q": 1}')])
    assert _m("chrf", _ctx("The weather is sunny.", cand)) == 0.0
