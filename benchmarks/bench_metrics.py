"""Benchmark: ``score()`` versus a bare loop over the same underlying library calls.

Run: ``python benchmarks/bench_metrics.py [--pairs 100000] [--max-chars 400] [--candidates 1]``

The workload is ``--pairs`` exchange-candidate pairs split evenly across four tasks, one per
deterministic default metric:

* ``classification`` -> ``normalized_match`` (short labels, some cosmetic differences);
* ``structured`` -> ``json_match`` (nested JSON objects, some fields changed or reordered);
* ``tool_call`` -> ``tool_call_match`` (one or two parallel calls, sometimes reordered/changed);
* ``free_text`` -> ``chrf`` (AlpacaEval answers: GPT-4 0613 as the reference, gpt-4o as the
  candidate, truncated to ``--max-chars`` characters, 0 = full length; synthetic sentences when
  the data is absent).

The bare loop does, per pair, the library work a hand-written script would do: Unicode NFKC +
casefold + strip for labels, ``json.loads`` and ``==`` for JSON, ``json.dumps(sort_keys=True)``
of the parsed arguments and a sorted comparison for tool calls, and ``sacrebleu.sentence_chrf``
for chrF. The ratio printed is ``score()`` time / bare loop time, per task and overall.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sacrebleu  # noqa: E402

from migrate_eval.core.records import (  # noqa: E402
    Exchange,
    OutputKind,
    ReplayResult,
    Response,
    Source,
    ToolCall,
)
from migrate_eval.core.results import TaskInfo  # noqa: E402
from migrate_eval.score import score  # noqa: E402

ALPACA = ROOT.parent / "shared" / "data" / "alpaca_eval"
KINDS: tuple[OutputKind, ...] = ("classification", "structured", "tool_call", "free_text")
METRIC = {
    "classification": "normalized_match",
    "structured": "json_match",
    "tool_call": "tool_call_match",
    "free_text": "chrf",
}
LABELS = ["positive", "negative", "neutral", "billing", "technical support", "refund request"]


def _texts(max_chars: int) -> list[tuple[str, str]]:
    ref_path, cand_path = ALPACA / "gpt4_0613.json", ALPACA / "gpt-4o-2024-05-13.json"
    if ref_path.exists() and cand_path.exists():
        refs = json.loads(ref_path.read_text(encoding="utf-8"))
        cands = json.loads(cand_path.read_text(encoding="utf-8"))
        pairs = [(r["output"], c["output"]) for r, c in zip(refs, cands, strict=True)]
    else:
        rng = random.Random(1)
        words = ["the", "model", "answer", "user", "data", "report", "shows", "returns", "quickly"]
        pairs = [
            (" ".join(rng.choices(words, k=80)), " ".join(rng.choices(words, k=80)))
            for _ in range(800)
        ]
    if max_chars:
        pairs = [(r[:max_chars], c[:max_chars]) for r, c in pairs]
    return pairs


def _pair(
    kind: str, i: int, rng: random.Random, texts: list[tuple[str, str]]
) -> tuple[Response, Response]:
    if kind == "classification":
        label = LABELS[i % len(LABELS)]
        cand = rng.choice(
            [label, label.title(), f"{label.upper()}.", f'"{label}"', LABELS[(i + 1) % len(LABELS)]]
        )
        return Response(text=label), Response(text=cand)
    if kind == "structured":
        obj: dict[str, Any] = {
            "id": i,
            "customer": {
                "name": f"Customer {i}",
                "tier": rng.choice(["gold", "silver"]),
                "since": 2015 + i % 9,
            },
            "items": [{"sku": f"S{i % 97}", "qty": 1 + i % 4}, {"sku": f"S{i % 89}", "qty": 2}],
            "priority": rng.choice(["low", "high"]),
        }
        cand = json.loads(json.dumps(obj))
        if i % 3 == 0:
            cand["priority"] = "medium"
        if i % 5 == 0:
            cand["items"][1]["qty"] = 2.0
        if i % 7 == 0:
            cand["note"] = "extra"
        return Response(text=json.dumps(obj)), Response(
            text=json.dumps(dict(reversed(list(cand.items()))))
        )
    if kind == "tool_call":
        calls = [
            ToolCall.from_raw(
                "get_weather", {"city": f"City{i % 50}", "unit": "c", "days": 1 + i % 3}
            )
        ]
        if i % 2:
            calls.append(ToolCall.from_raw("get_time", {"tz": "UTC"}))
        cand_calls = list(reversed(calls)) if i % 4 == 1 else list(calls)
        if i % 6 == 0:
            cand_calls[0] = ToolCall.from_raw(cand_calls[0].name, {"city": "Elsewhere"})
        return Response(tool_calls=calls), Response(tool_calls=cand_calls)
    ref, cand = texts[i % len(texts)]
    return Response(text=ref), Response(text=cand)


def build(
    n_pairs: int, n_candidates: int, max_chars: int
) -> dict[str, tuple[list[Exchange], list[ReplayResult]]]:
    rng = random.Random(0)
    texts = _texts(max_chars)
    per_kind = n_pairs // len(KINDS) // n_candidates
    out: dict[str, tuple[list[Exchange], list[ReplayResult]]] = {}
    for kind in KINDS:
        exchanges: list[Exchange] = []
        replays: list[ReplayResult] = []
        for i in range(per_kind):
            ref, cand = _pair(kind, i, rng, texts)
            ex = Exchange(
                id=f"{kind}-{i}",
                source=Source(file="bench.jsonl", line=i + 1, format="bench"),
                request={
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": f"request {i}"}],
                },
                response=ref,
            )
            exchanges.append(ex)
            for c in range(n_candidates):
                replays.append(
                    ReplayResult(
                        exchange_id=ex.id, candidate=f"cand{c}", response=cand, latency_ms=100.0
                    )
                )
        out[kind] = (exchanges, replays)
    return out


_WRAP = "\"'`“”‘’«»()[]{}<>*_"


def _label(s: str) -> str:
    return (
        " ".join(unicodedata.normalize("NFKC", s).casefold().split())
        .strip(_WRAP)
        .rstrip(".!?;:,")
        .strip()
    )


def bare(kind: str, exchanges: list[Exchange], replays: list[ReplayResult]) -> list[float]:
    by_id = {e.id: e for e in exchanges}
    out: list[float] = []
    for r in replays:
        ref = by_id[r.exchange_id].response
        cand = r.response
        assert ref is not None and cand is not None
        if kind == "classification":
            out.append(float(_label(ref.text or "") == _label(cand.text or "")))
        elif kind == "structured":
            out.append(float(json.loads(ref.text or "null") == json.loads(cand.text or "null")))
        elif kind == "tool_call":
            a = sorted(
                c.name + json.dumps(c.parsed_arguments, sort_keys=True) for c in ref.tool_calls
            )
            b = sorted(
                c.name + json.dumps(c.parsed_arguments, sort_keys=True) for c in cand.tool_calls
            )
            out.append(float(a == b))
        else:
            out.append(sacrebleu.sentence_chrf(cand.text or "", [ref.text or ""]).score / 100)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--pairs",
        type=int,
        default=100_000,
        help="exchange-candidate pairs in all (default 100000)",
    )
    ap.add_argument("--candidates", type=int, default=1, help="candidates per exchange (default 1)")
    ap.add_argument(
        "--max-chars",
        type=int,
        default=400,
        help="truncate free text to this many characters; 0 = full",
    )
    ap.add_argument(
        "--extra",
        type=int,
        default=0,
        help="also time bleu/ter/rouge_l on this many free-text pairs (default 0: skip)",
    )
    ap.add_argument(
        "--semantic",
        type=int,
        default=0,
        help="also time semantic similarity on this many texts (default 0: skip)",
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = build(args.pairs, args.candidates, args.max_chars)
    total_pairs = sum(len(r) for _, r in data.values())
    print(
        f"built {total_pairs:,} pairs ({args.candidates} candidate(s), free text <= "
        f"{args.max_chars or 'full'} chars) in {time.perf_counter() - t0:.1f}s"
    )
    # warm up: the lm-eval registry lookup and imports are one-off costs, not per-pair ones
    ex0, rp0 = data["free_text"]
    task0 = TaskInfo(
        name="free_text", output="free_text", metrics=["chrf"], min_parity=0.8, n=1, source="suite"
    )
    score(ex0[:1], [task0], {ex0[0].id: "free_text"}, rp0[:1])

    tot_score = tot_bare = 0.0
    print(f"{'task':<16}{'metric':<18}{'pairs':>9}{'score() s':>12}{'bare s':>10}{'ratio':>8}")
    for kind in KINDS:
        exchanges, replays = data[kind]
        task = TaskInfo(
            name=kind,
            output=kind,
            metrics=[METRIC[kind]],
            min_parity=0.8,
            n=len(exchanges),
            source="suite",
        )
        assignment = {e.id: kind for e in exchanges}
        # collect first, so that neither side pays for a full collection of the objects the
        # benchmark itself built (2 million of them at the default size)
        gc.collect()
        t = time.perf_counter()
        df = score(exchanges, [task], assignment, replays)
        ts = time.perf_counter() - t
        gc.collect()
        t = time.perf_counter()
        bare(kind, exchanges, replays)
        tb = time.perf_counter() - t
        assert len(df) == len(replays) and (df["status"] == "ok").all()
        tot_score += ts
        tot_bare += tb
        print(
            f"{kind:<16}{METRIC[kind]:<18}{len(replays):>9,}{ts:>12.2f}{tb:>10.2f}{ts / tb:>8.2f}"
        )
    print(
        f"{'all':<34}{total_pairs:>9,}{tot_score:>12.2f}{tot_bare:>10.2f}{tot_score / tot_bare:>8.2f}"
    )
    print(f"ratio score()/bare = {tot_score / tot_bare:.2f}")
    if args.extra:
        extra_free_text(data["free_text"], args.extra)
    if args.semantic:
        bench_semantic(args.semantic, args.max_chars)
    return 0


def extra_free_text(data: tuple[list[Exchange], list[ReplayResult]], n: int) -> None:
    """The other free-text metrics on ``n`` pairs, against bare calls of the same libraries."""
    from rouge_score import rouge_scorer

    exchanges, replays = data[0][:n], data[1][:n]
    pairs = [
        (e.response.text or "", r.response.text or "")
        for e, r in zip(exchanges, replays, strict=True)
        if e.response is not None and r.response is not None
    ]
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    bare_fns = {
        "bleu": lambda a, b: sacrebleu.corpus_bleu([b], [[a]]).score,
        "ter": lambda a, b: sacrebleu.corpus_ter([b], [[a]]).score,
        "rouge_l": lambda a, b: scorer.score(a, b)["rougeL"].fmeasure,
    }
    print(f"\n{'metric':<18}{'pairs':>9}{'score() s':>12}{'bare s':>10}{'ratio':>8}")
    for name, fn in bare_fns.items():
        task = TaskInfo(
            name="ft", output="free_text", metrics=[name], min_parity=0.8, n=1, source="suite"
        )
        score(exchanges[:1], [task], {exchanges[0].id: "ft"}, replays[:1])  # warm up
        t = time.perf_counter()
        score(exchanges, [task], {e.id: "ft" for e in exchanges}, replays)
        ts = time.perf_counter() - t
        t = time.perf_counter()
        for a, b in pairs:
            fn(a, b)
        tb = time.perf_counter() - t
        print(f"{name:<18}{len(pairs):>9,}{ts:>12.2f}{tb:>10.2f}{ts / tb:>8.2f}")


def bench_semantic(n: int, max_chars: int) -> None:
    """Texts per second of the shipped embedding model, at two text lengths.

    ``short``: the first 100 characters of each AlpacaEval answer; ``alpaca``: the answers cut
    to ``--max-chars`` (0 = full length; the model reads at most 256 word pieces of each). The
    texts are distinct, so no cache hides work. Columns: the bare ``SentenceTransformer.encode``
    baseline; :func:`migrate_eval.core.embeddings.embed` with an empty cache, then again (its
    in-memory cache); ``score()`` with the semantic metric and empty memory and disk caches, then
    from the disk cache alone (a new process re-scoring the run).
    """
    import os
    import tempfile

    from migrate_eval.core import embeddings
    from migrate_eval.score import semantic

    if not semantic.embedding_available():
        print("semantic: the 'embedding' extra is not installed; skipped")
        return
    full = [t for pair in _texts(0) for t in pair]
    model = embeddings._load()
    embeddings.embed(["warm up"])  # model load is a one-off cost
    task = TaskInfo(
        name="s",
        output="free_text",
        metrics=["semantic_similarity"],
        min_parity=0.8,
        n=1,
        source="suite",
    )
    print(
        f"\nsemantic similarity (texts/s, batch {embeddings.BATCH_SIZE}, "
        f"{torch_threads()} torch threads)\n"
        f"{'texts':<8}{'n':>6}{'chars':>7}{'encode':>9}{'embed cold':>12}{'embed warm':>12}"
        f"{'score() cold':>14}{'score() disk':>14}"
    )
    old_env = os.environ.get("MIGRATE_EVAL_EMBEDDING_CACHE")
    for label, cut in (("short", 100), ("alpaca", max_chars)):
        texts = list(dict.fromkeys(t[:cut] if cut else t for t in full if t.strip()))[:n]
        texts = texts[: len(texts) // 2 * 2]
        rates: list[float] = []
        t = time.perf_counter()
        model.encode(
            texts,
            batch_size=embeddings.BATCH_SIZE,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        rates.append(time.perf_counter() - t)
        embeddings._cache.clear()
        for _ in range(2):
            t = time.perf_counter()
            embeddings.embed(texts)
            rates.append(time.perf_counter() - t)
        exchanges = [
            Exchange(
                id=f"s{i}",
                source=Source(file="b", line=i + 1, format="bench"),
                request={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
                response=Response(text=texts[2 * i]),
            )
            for i in range(len(texts) // 2)
        ]
        replays = [
            ReplayResult(exchange_id=e.id, candidate="c", response=Response(text=texts[2 * i + 1]))
            for i, e in enumerate(exchanges)
        ]
        assignment = {e.id: "s" for e in exchanges}
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = os.path.join(tmp, "emb.sqlite")
            for _ in range(2):
                embeddings._cache.clear()
                semantic._MEMORY.clear()
                t = time.perf_counter()
                score(exchanges, [task], assignment, replays)
                rates.append(time.perf_counter() - t)
        chars = sum(map(len, texts)) / len(texts)
        print(
            f"{label:<8}{len(texts):>6}{chars:>7.0f}"
            + "".join(
                f"{len(texts) / s:>{w},.0f}"
                for s, w in zip(rates, (9, 12, 12, 14, 14), strict=True)
            )
        )
    if old_env is None:
        os.environ.pop("MIGRATE_EVAL_EMBEDDING_CACHE", None)
    else:
        os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = old_env


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":
    raise SystemExit(main())
