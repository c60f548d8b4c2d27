"""Overhead of the llama-cpp candidate: tokens/s through the replay engine vs llama-cpp-python bare.

    python benchmarks/bench_llama_cpp.py [--n 40] [--max-tokens 128] [--rounds 5] [--threads 1]
                                         [--json]

On the tiny random GGUF model of the tests (:mod:`tests.providers.tiny_gguf`, written to a
temporary folder), in one process, alternately, each going first in every other round (``--rounds`` times
each, the best kept: on a shared machine other
processes only ever slow a run down; the median of the per-round ratios is printed too):

* **bare**: ``llama_cpp.Llama(...)`` loaded, then ``create_chat_completion`` for each of
  ``--n`` distinct chat requests, one after the other, with the sampling the provider uses
  (greedy; llama.cpp's own top-k/min-p/repeat penalty off), in one worker thread like the
  provider's (from the main thread, OpenMP's spin-waiting makes bare calls several times
  slower on a busy machine: see :func:`_bare`);
* **candidate**: the same requests as logged exchanges replayed by
  :func:`migrate_eval.replay.engine.replay` against ``llama-cpp:tiny.gguf`` (a fresh response
  cache each round: every answer is generated), model load included as in the bare run.

Greedy decoding on the same weights gives both runs the same tokens, so tokens/s compare like
for like. The tiny model decodes in microseconds per token, which makes the engine's per-request
cost (event loop, thread hop, request copy, cache write) as visible as it can be: on a real model
the ratio is closer to 1. Prints both rates and ``overhead = bare tokens/s / candidate tokens/s``
(target <= 1.10). Exits 0 whether or not the target is met; the JSON line's ``pass`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from migrate_eval.core.records import Exchange, Source  # noqa: E402
from migrate_eval.core.suite import CandidateSpec  # noqa: E402
from migrate_eval.replay.cache import ResponseCache  # noqa: E402
from migrate_eval.replay.engine import replay  # noqa: E402
from tests.providers.tiny_gguf import build_tiny_gguf  # noqa: E402

# llama.cpp's OpenMP threads otherwise spin between tokens, and threads left spinning by one
# side slow the other down on a busy machine (measured: 4-10x): both sides without spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

TARGET_RATIO = 1.10
N_CTX = 2048


def make_requests(n: int, max_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a support assistant. Answer briefly."},
                {"role": "user", "content": f"Where is my order {i}? It was due on day {i % 28}."},
            ],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        for i in range(n)
    ]


def bare(model: Path, requests: list[dict[str, Any]], threads: int) -> tuple[int, float]:
    """Completion tokens and seconds for llama-cpp-python called directly, in one worker
    thread as the provider calls it (see :func:`_bare`)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_bare, model, requests, threads).result()


def _bare(model: Path, requests: list[dict[str, Any]], threads: int) -> tuple[int, float]:
    # In a worker thread, not the main one: with llama.cpp's OpenMP build, threads spawned from
    # the main thread spin-wait between tokens (GOMP's default wait policy), which made the
    # main-thread loop 4-10x slower than the same loop in a worker thread on a busy 2-core
    # machine (OMP_WAIT_POLICY=passive removes the gap). Both sides in a worker thread
    # compare the engine's own cost, nothing else.
    import llama_cpp

    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(model), n_ctx=N_CTX, n_gpu_layers=0, n_threads=threads, verbose=False
    )
    llm.chat_format = "chat_template.default"
    tokens = 0
    for request in requests:
        out: Any = llm.create_chat_completion(
            messages=request["messages"],
            temperature=0.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            typical_p=1.0,
            repeat_penalty=1.0,
            max_tokens=request["max_tokens"],
        )
        tokens += int(out["usage"]["completion_tokens"])
    elapsed = time.perf_counter() - start
    llm.close()
    return tokens, elapsed


def candidate(
    model: Path, requests: list[dict[str, Any]], threads: int, cache_path: Path
) -> tuple[int, float]:
    """Completion tokens and seconds for the same requests replayed by migrate-eval."""
    exchanges = [
        Exchange(id=f"ex{i}", source=Source(file="bench", line=i + 1, format="bench"), request=r)
        for i, r in enumerate(requests)
    ]
    spec = CandidateSpec(
        name="tiny",
        provider="llama-cpp",
        model=str(model),
        params={"n_ctx": N_CTX, "n_gpu_layers": 0, "threads": threads},
        concurrency=4,
    )
    start = time.perf_counter()
    with ResponseCache(cache_path) as cache:
        results = replay(exchanges, [spec], cache=cache)
    elapsed = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"candidate errors: {failed[:3]}")
    tokens = sum(
        r.response.usage.completion_tokens or 0
        for r in results
        if r.response is not None and r.response.usage is not None
    )
    return tokens, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="requests per run")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each, the best kept")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp CPU threads")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)

    requests = make_requests(args.n, args.max_tokens)
    with tempfile.TemporaryDirectory(prefix="bench-llama-cpp-") as tmp:
        folder = Path(tmp)
        model = build_tiny_gguf(folder / "tiny.gguf")
        bare_rates: list[float] = []
        cand_rates: list[float] = []
        token_counts: set[tuple[int, int]] = set()
        for round_ in range(args.rounds):
            cache = folder / f"c{round_}.sqlite"
            if round_ % 2:  # the order alternates: what runs first pays for a cold start
                c_tokens, c_s = candidate(model, requests, args.threads, cache)
                b_tokens, b_s = bare(model, requests, args.threads)
            else:
                b_tokens, b_s = bare(model, requests, args.threads)
                c_tokens, c_s = candidate(model, requests, args.threads, cache)
            bare_rates.append(b_tokens / b_s)
            cand_rates.append(c_tokens / c_s)
            token_counts.add((b_tokens, c_tokens))
            if not args.json:
                print(
                    f"round {round_ + 1}: bare {b_tokens} tokens in {b_s:.3f} s "
                    f"({b_tokens / b_s:,.0f} tok/s); candidate {c_tokens} tokens in {c_s:.3f} s "
                    f"({c_tokens / c_s:,.0f} tok/s)"
                )
    # best of the rounds: on a shared machine the other processes only ever slow a run down
    bare_tps = max(bare_rates)
    cand_tps = max(cand_rates)
    ratio = bare_tps / cand_tps
    paired = statistics.median(b / c for b, c in zip(bare_rates, cand_rates, strict=True))
    same_tokens = all(b == c for b, c in token_counts)
    result = {
        "bench": "llama_cpp",
        "n": args.n,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "threads": args.threads,
        "bare_tokens_per_s": round(bare_tps, 1),
        "candidate_tokens_per_s": round(cand_tps, 1),
        "overhead_ratio": round(ratio, 3),
        "paired_median_ratio": round(paired, 3),
        "same_tokens": same_tokens,
        "target": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
    }
    if not args.json:
        print(
            f"overhead: {ratio:.3f}x (best rounds: bare {bare_tps:,.0f} tok/s, candidate "
            f"{cand_tps:,.0f} tok/s; target <= {TARGET_RATIO}); median of the per-round "
            f"ratios {paired:.3f}x{'' if same_tokens else ' [token counts differ]'}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
