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
