from __future__ import annotations

import numpy as np
import pytest

from migrate_eval.core import embeddings
from migrate_eval.core.errors import MissingExtraError


@pytest.mark.slow
def test_embed_is_normalised_batched_and_cached() -> None:
    if not embeddings.available():
        pytest.skip("the embedding extra is not installed")
    texts = ["refund my broken tent", "give me my money back for the tent", "write a haiku"]
    v = embeddings.embed([*texts, texts[0]], batch_size=2)
    assert v.shape == (4, embeddings.DIMENSIONS) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0], v[3])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # meaning, not words
    assert embeddings.embed([]).shape == (0, embeddings.DIMENSIONS)


def test_missing_extra_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "_model", None)
    monkeypatch.setattr(embeddings.importlib.util, "find_spec", lambda name: None)
    assert not embeddings.available()
    with pytest.raises(MissingExtraError, match=r"migrate-eval\[embedding\]"):
        embeddings.embed(["x"])


# -- long texts: the model reads 256 tokens, the tokenizer is never given megabytes ----------


def test_a_long_text_reaches_the_model_cut_to_max_chars(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    class Model:
        def encode(self, texts: list[str], **kw: object) -> np.ndarray:
            seen.extend(len(t) for t in texts)
            return np.ones((len(texts), embeddings.DIMENSIONS), dtype=np.float32)

    monkeypatch.setattr(embeddings, "_load", lambda: Model())
    big = "where is my order " * 600_000  # 10.8 MB: the tokenizer took minutes and >100x it
    embeddings.encode([big, "short"])
    assert sorted(seen) == [5, embeddings.MAX_CHARS]


def test_long_texts_are_embedded_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[int], int]] = []

    class Model:
        def encode(self, texts: list[str], batch_size: int, **kw: object) -> np.ndarray:
            calls.append(([len(t) for t in texts], batch_size))
            return np.array([[len(t)] * embeddings.DIMENSIONS for t in texts], dtype=np.float32)

    monkeypatch.setattr(embeddings, "_load", lambda: Model())
    texts = [f"short {i}" for i in range(40)]
    texts[7] = "x" * 5000  # padded to 256 tokens, it made a batch of 32 take 200 MB more
    texts[20] = "y" * 3000
    v = embeddings.encode(texts, batch_size=32)
    # each planned batch is one call: short texts up to 32 together, long ones up to 4 and
    # never beside short ones
    assert sorted(n for lengths, _ in calls for n in lengths) == sorted(len(t) for t in texts)
    assert [sorted(lengths) for lengths, _ in calls if max(lengths) > 100] == [[3000, 5000]]
    assert [len(lengths) for lengths, _ in calls if max(lengths) <= 100] == [32, 6]
    assert all(size == len(lengths) for lengths, size in calls)
    assert [row[0] for row in v] == [len(t) for t in texts]  # rows in the order given


@pytest.mark.slow
def test_cutting_a_long_text_leaves_its_vector_as_it_was() -> None:
    if not embeddings.available():
        pytest.skip("the embedding extra is not installed")
    words = "the parcel left the depot on monday and should arrive before the weekend "
    long = words * (2 * embeddings.MAX_CHARS // len(words))
    v = embeddings.encode([long, long[:4000]])  # 4,000 characters hold the first 256 tokens
    assert float(v[0] @ v[1]) > 0.9999
