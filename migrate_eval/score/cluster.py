"""Scoring on a Ray cluster (``--executor ray``): the embeddings semantic similarity needs,
computed by Ray actors in batches.

:class:`RayEmbedder` is an embedding function for
:func:`~migrate_eval.score.semantic.embedding_backend`: the driver's memory and disk
embedding caches are consulted first (:func:`~migrate_eval.score.semantic.embed_texts`), and
only the texts they miss are embedded by ``workers`` actors, each holding the model loaded once.

The driver plans the batches (:func:`migrate_eval.core.embeddings.plan`: which texts are
embedded together, in which order) exactly as one local call would, and each actor embeds a
run of those whole batches: a vector depends in its last float bits on the other texts of its
batch, so this is what makes a Ray run's ``results.json`` equal a local run's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from migrate_eval.core.executor import ensure_ray
from migrate_eval.score.judge import JudgeSession, Kind, judge_backend, judge_batch
from migrate_eval.score.registry import MetricContext
from migrate_eval.score.semantic import FloatMatrix, embedding_backend


class Embedder:
    """A Ray actor's state: the embedding model, loaded once."""

    def __init__(self) -> None:
        from migrate_eval.core import embeddings

        embeddings.encode(["warm up"])  # load now, not in the first batch
        self._encode_planned = embeddings.encode_planned

    def embed(self, texts: list[str], batches: list[list[int]]) -> FloatMatrix:
        """The vectors of ``texts``, embedded in the driver's ``batches``."""
        return np.asarray(self._encode_planned(texts, batches), dtype=np.float32)


def split_batches(batches: Sequence[Sequence[int]], parts: int) -> list[list[Sequence[int]]]:
    """Up to ``parts`` contiguous runs of ``batches``, as even as whole batches allow."""
    per = -(-len(batches) // max(1, parts))
    return [list(batches[i : i + per]) for i in range(0, len(batches), per)] if per else []


class _OnRay:
    """Work spread over ``workers`` Ray workers (default: one a CPU of the cluster)."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self._ray = ensure_ray(address)
        self.workers = workers or max(1, int(self._ray.cluster_resources().get("CPU", 1)))


class RayEmbedder(_OnRay):
    """An embedding function computed by ``workers`` Ray actors (default: the cluster's CPUs),
    started on first use (a run without free text loads no model); :meth:`close` ends them."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        super().__init__(address, workers)
        self.actors: list[Any] = []

    def __call__(self, texts: Sequence[str]) -> FloatMatrix:
        from migrate_eval.core.embeddings import DIMENSIONS, plan

        ray = self._ray
        if not self.actors:
            actor = ray.remote(num_cpus=1)(Embedder)
            self.actors.extend(actor.remote() for _ in range(self.workers))
        out: FloatMatrix = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        refs, rows = [], []
        for actor, run in zip(
            self.actors, split_batches(plan(texts), len(self.actors)), strict=False
        ):
            idx = [i for batch in run for i in batch]
            pos = {i: j for j, i in enumerate(idx)}
            refs.append(
                actor.embed.remote([texts[i] for i in idx], [[pos[i] for i in b] for b in run])
            )
            rows.append(idx)
        for idx, part in zip(rows, ray.get(refs), strict=True):
            out[idx] = np.asarray(part, dtype=np.float32)
        return out

    def close(self) -> None:
        """End the actors (they hold a CPU each)."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors.clear()


class RayJudge(_OnRay):
    """Judges the pairs of a judge metric in Ray tasks, ``workers`` of them (default: the
    cluster's CPUs), each with its share of the judge's ``concurrency``, ``rpm`` and ``tpm`` (so
    they hold for the cluster as a whole), through the shared response cache. The pairs
    of one exchange go to the same task: the logged answer's rubric request, the same for every
    candidate, is asked once."""

    def __call__(self, session: JudgeSession, kind: Kind, todo: dict[str, MetricContext]) -> None:
        ray = self._ray
        by_exchange: dict[str, dict[str, MetricContext]] = {}
        for key, ctx in todo.items():
            by_exchange.setdefault(ctx.exchange.id, {})[key] = ctx
        groups = list(by_exchange.values())
        parts = max(1, min(self.workers, session.spec.concurrency, len(groups)))
        chunks: list[dict[str, MetricContext]] = [{} for _ in range(parts)]
        for i, group in enumerate(groups):
            chunks[i * parts // len(groups)].update(group)
        limits = session.spec
        spec = limits.model_copy(  # each task a share: the judge's limits hold for the cluster
            update={
                "concurrency": max(1, limits.concurrency // parts),
                "rpm": limits.rpm / parts if limits.rpm else None,
                "tpm": limits.tpm / parts if limits.tpm else None,
            }
        )
        # waiting on the vendor, not computing: no CPU held (the embedding actors may hold all)
        task = ray.remote(num_cpus=0)(judge_batch)
        refs = [
            task.remote(spec, session.cache_path, session.offline, kind, chunk) for chunk in chunks
        ]
        for batch in ray.get(refs):
            batch.merge_into(session, kind)


@contextlib.contextmanager
def ray_scoring(address: str | None) -> Iterator[None]:
    """Within the block, what the embedding caches miss is embedded on the Ray cluster at
    ``address`` (``--executor ray``) and judge metrics' pairs are judged there; the actors end
    with the block."""
    embedder = RayEmbedder(address)
    try:
        with embedding_backend(embedder), judge_backend(RayJudge(address)):
            yield
    finally:
        embedder.close()
