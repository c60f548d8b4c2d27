"""Scoring on a Ray cluster (``--executor ray``): the embeddings semantic similarity needs,
computed by Ray actors in batches.

:func:`ray_embedder` returns an embedding function for
:func:`~migrate_eval.score.semantic.embedding_backend`: the driver's memory and disk
embedding caches are consulted first (:func:`~migrate_eval.score.semantic.embed_texts`), and
only the texts they miss are split across ``workers`` actors, each holding the model loaded once.
Each actor gets a run of whole batches (a multiple of the model's batch size).

Opt-in: ``with embedding_backend(ray_embedder()): score(...)``. A run with ``--executor ray``
does not use it yet: the model batches the texts it is given by length, so texts split across
actors land in other batches than in one local call, and their vectors differ from the local
ones by up to about 1e-7 (float rounding with other padding), which would make the run's
``results.json`` differ from a local run's in the last digits. Measured by ``nox -s bench_ray``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from migrate_eval.core.executor import ensure_ray
from migrate_eval.score.semantic import EmbedFn, FloatMatrix


class Embedder:
    """A Ray actor's state: the embedding model, loaded once."""

    def __init__(self) -> None:
        from migrate_eval.core import embeddings

        embeddings.encode(["warm up"])  # load now, not in the first batch
        self._encode = embeddings.encode

    def embed(self, texts: list[str]) -> FloatMatrix:
        return np.asarray(self._encode(texts), dtype=np.float32)


def split_batches(n: int, parts: int, batch: int) -> list[tuple[int, int]]:
    """``(start, end)`` of up to ``parts`` runs of whole batches covering ``range(n)``."""
    batches = -(-n // batch)
    per = -(-batches // max(1, parts))
    out = []
    for start in range(0, n, per * batch):
        out.append((start, min(n, start + per * batch)))
    return out


def ray_embedder(address: str | None = None, workers: int | None = None) -> EmbedFn:
    """An embedding function computed by ``workers`` Ray actors (default: the cluster's CPUs)."""
    from migrate_eval.core.embeddings import BATCH_SIZE

    ray = ensure_ray(address)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors: list[Any] = []

    def embed(texts: Sequence[str]) -> FloatMatrix:
        if not actors:  # started on first use: a run without free text loads no model
            actor = ray.remote(num_cpus=1)(Embedder)
            actors.extend(actor.remote() for _ in range(n))
        spans = split_batches(len(texts), len(actors), BATCH_SIZE)
        refs = [
            actor.embed.remote(list(texts[a:b]))
            for actor, (a, b) in zip(actors, spans, strict=False)
        ]
        parts = [np.asarray(p, dtype=np.float32) for p in ray.get(refs)]
        out: FloatMatrix = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        return out

    return embed
