"""The bit-parallel LCS behind ``rouge_l`` gives rouge-score's values."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from migrate_eval.score._lcs import lcs_length
from migrate_eval.score.text import rouge_l_score

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alpaca_eval"


def _table_lcs(a: list[int], b: list[int]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b):
            prev_diag, row[j + 1] = row[j + 1], prev_diag + 1 if x == y else max(row[j + 1], row[j])
    return row[-1]


def test_lcs_length_equals_the_dynamic_programme() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        a = [rng.randrange(4) for _ in range(rng.randrange(0, 40))]
        b = [rng.randrange(4) for _ in range(rng.randrange(0, 40))]
        assert lcs_length(a, b) == _table_lcs(a, b) == lcs_length(b, a)


def test_rouge_l_equals_rouge_score_on_real_answers() -> None:
    files = ("gpt4_1106_preview.json", "gemma-2b-it.json")
    if not all((DATA / f).exists() for f in files):
        pytest.skip("real data not available: ../shared/data/alpaca_eval")
    ref, cand = (json.loads((DATA / f).read_text(encoding="utf-8"))[:40] for f in files)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for r, c in zip(ref, cand, strict=True):
        expected = scorer.score(r["output"], c["output"])["rougeL"].fmeasure
        assert rouge_l_score(r["output"], c["output"]) == pytest.approx(expected, abs=1e-12)
    assert rouge_l_score("!!", "??") == 0.0 and rouge_l_score("same", "same") == 1.0
