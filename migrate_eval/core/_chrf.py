"""chrF of many (reference, prediction) pairs at once, equal to sacrebleu's to the last bit.

The ``chrf`` metric is sacrebleu's ``corpus_chrf([prediction], [[reference]])`` (as lm-eval's
``chrf`` aggregation calls it: character n-grams of orders 1-6, whitespace removed, no word
n-grams, beta 2, sacreBLEU < 2.0 effective-order smoothing). Called once per pair it cost about
half of a large run (issue 17). This module computes the same integer statistics (n-gram
counts and matches per order) with fewer Python-level steps (a hypothesis' n-gram total is its
length; matches are a C-level key intersection) and the same floating-point F-score formula in
the same order, so every value equals sacrebleu's exactly (tests/metrics/test_chrf_batch.py
compares them). Each distinct text is cut into n-grams once per batch (a reference is shared by
every candidate), and a large batch is spread over the machine's cores in worker processes.
Where the package was built with a C compiler, the integer statistics come from
``_chrfc.c`` (:data:`native`: the same integers, ~20x faster); the F-score stays here.

Only the standard library is imported here, and ``migrate_eval.core`` imports nothing: a worker
process (``python -m migrate_eval.core._chrf``, fed through a pipe) imports this module and no
more.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CHAR_ORDER = 6
BETA = 2
#: Pairs per worker task, and the least number of pairs worth starting worker processes for.
CHUNK = 2_000
PARALLEL_MIN = 8_000

_Grams = list[Counter[str]]

#: The statistics in C (``_chrfc.c``, built with the package where a C compiler is): the same
#: integers as :func:`_pair_stats` of the texts' n-grams, ~20x faster; None where not built.
native: Callable[[str, str], list[int]] | None
try:
    native = importlib.import_module("migrate_eval.core._chrfc").stats
except ImportError:  # no compiler at install time: the same values, in Python
    native = None


def _grams(text: str) -> tuple[int, _Grams]:
    """(length without whitespace, one Counter of character n-grams per order 1..6)."""
    s = "".join(text.split())
    n_chars = len(s)
    out: _Grams = [Counter(s)]
    getitem = s.__getitem__
    for n in range(2, CHAR_ORDER + 1):
        out.append(Counter(map(getitem, map(slice, range(n_chars - n + 1), range(n, n_chars + 1)))))
    return n_chars, out


def _f_score(stats: Sequence[int]) -> float:
    """sacrebleu's ``CHRF._compute_f_score`` (``eps_smoothing=False``), same operations."""
    eps = 1e-16
    score = 0.0
    effective_order = 0
    factor = BETA**2
    avg_prec, avg_rec = 0.0, 0.0
    for i in range(CHAR_ORDER):
        n_hyp, n_ref, n_match = stats[3 * i : 3 * i + 3]
        prec = n_match / n_hyp if n_hyp > 0 else eps
        rec = n_match / n_ref if n_ref > 0 else eps
        denom = factor * prec + rec
        score += ((1 + factor) * prec * rec / denom) if denom > 0 else eps
        if n_hyp > 0 and n_ref > 0:
            avg_prec += prec
            avg_rec += rec
            effective_order += 1
    if effective_order == 0:
        avg_prec = avg_rec = 0.0
    else:
        avg_prec /= effective_order
        avg_rec /= effective_order
    if avg_prec + avg_rec:
        score = (1 + factor) * avg_prec * avg_rec
        score /= (factor * avg_prec) + avg_rec
        return 100 * score
    return 0.0


def _pair_stats(hyp: tuple[int, _Grams], ref: tuple[int, _Grams]) -> list[int]:
    h_len, h_grams = hyp
    r_len, r_grams = ref
    stats: list[int] = []
    for n in range(1, CHAR_ORDER + 1):
        h, r = h_grams[n - 1], r_grams[n - 1]
        common = h.keys() & r.keys()
        match = sum(map(min, map(h.__getitem__, common), map(r.__getitem__, common)))
        n_ref = max(r_len - n + 1, 0)
        # sacrebleu: no hypothesis n-grams count where the reference has none of that order
        stats += [max(h_len - n + 1, 0) if n_ref else 0, n_ref, match]
    return stats


def chrf_many(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """sacrebleu's sentence chrF (0-100) of each ``(reference, prediction)`` pair, in order."""
    if native is None:
        return _chrf_many_python(pairs)
    # each text without its whitespace, as _grams cuts it: the C statistics of the two
    return _scores(pairs, lambda text: "".join(text.split()), native, keep=65_536)


def _chrf_many_python(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """:func:`chrf_many` without the C statistics (each text's n-gram Counters, large: only
    the recent texts' are kept)."""
    return _scores(pairs, _grams, _pair_stats, keep=4_096)


def _scores(
    pairs: Sequence[tuple[str, str]],
    prepare: Callable[[str], Any],
    stats: Callable[[Any, Any], Sequence[int]],
    *,
    keep: int,
) -> list[float]:
    """The F-score of ``stats(prepare(prediction), prepare(reference))`` of each pair, each
    text prepared once while at most ``keep`` prepared texts are held."""
    cache: dict[str, Any] = {}
    out: list[float] = []
    for ref, hyp in pairs:
        r = cache.get(ref)
        if r is None:
            r = cache[ref] = prepare(ref)
        h = cache.get(hyp)
        if h is None:
            h = cache[hyp] = prepare(hyp)
        out.append(_f_score(stats(h, r)))
        if len(cache) > keep:
            cache.clear()
    return out


#: Environment variable capping the worker processes (``1``: never start any).
WORKERS_ENV = "MIGRATE_EVAL_SCORE_WORKERS"


def workers_for(n_pairs: int) -> int:
    """Worker processes worth starting for ``n_pairs`` pairs (1: score in this process): one
    per usable core, at most one per :data:`CHUNK` pairs, none below :data:`PARALLEL_MIN`."""
    if n_pairs < PARALLEL_MIN:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, min(cpus or 1, n_pairs // CHUNK))
    cap = os.environ.get(WORKERS_ENV, "").strip()
    return min(n, max(1, int(cap))) if cap.isdigit() else n


def chrf_batch(pairs: Sequence[tuple[str, str]], *, workers: int | None = None) -> list[float]:
    """:func:`chrf_many`, in worker processes when the batch is large enough to pay for them
    (``workers``: None chooses by :func:`workers_for`; 1 never starts any).

    The workers are plain ``python -m migrate_eval.core._chrf`` processes fed through a pipe,
    not a :mod:`multiprocessing` pool: a pool's fresh interpreters import the caller's main
    script again, which in a user's script without an ``if __name__ == "__main__"`` guard
    starts the whole run over (and lost every chrF value of a large batch). Anything going
    wrong with a worker gives the same values computed in this process.
    """
    n = workers_for(len(pairs)) if workers is None else workers
    if n <= 1 or len(pairs) <= CHUNK:
        return chrf_many(pairs)
    share = -(-len(pairs) // n)  # contiguous parts, one a worker: the order is kept
    parts = [list(pairs[i : i + share]) for i in range(0, len(pairs), share)]
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(parts)) as threads:  # one thread feeds and reads each worker
            results = list(threads.map(chrf_in_worker, parts))
    except (OSError, ValueError, EOFError, pickle.UnpicklingError):
        return chrf_many(pairs)
    out: list[float] = []
    for part, scores in zip(parts, results, strict=True):
        if len(scores) != len(part):
            return chrf_many(pairs)
        out += scores
    return out


def _worker_env() -> dict[str, str]:
    """The environment of a worker: this migrate_eval first on its path."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this migrate_eval
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
    }


def chrf_in_worker(part: list[tuple[str, str]]) -> list[float]:
    """``chrf_many(part)`` in a fresh worker process (:class:`ChrfWorker`), ended after it."""
    worker = ChrfWorker()
    try:
        return worker.score(part)
    finally:
        worker.close()


class ChrfWorker:
    """A ``python -m migrate_eval.core._chrf`` process that scores one chunk after
    another over its pipes (each a length and a pickle), started once: small chunks cost no
    process start each, and the texts' n-grams stay cached between them. One caller at a time."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "migrate_eval.core._chrf"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_worker_env(),
        )

    def score(self, part: list[tuple[str, str]]) -> list[float]:
        """``chrf_many(part)`` in the worker; :class:`OSError` when it is gone."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        data = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            stdin.write(len(data).to_bytes(8, "little") + data)
            stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise OSError(f"chrF worker gone: {e}") from None
        size = int.from_bytes(_read_exactly(stdout, 8), "little")
        scores = pickle.loads(_read_exactly(stdout, size))
        if not isinstance(scores, list) or len(scores) != len(part):
            raise ValueError("chrF worker answered no list of the chunk's length")
        return [float(x) for x in scores]

    def close(self) -> None:
        """End the worker (its stdin closed: it exits; killed if it does not)."""
        import subprocess

        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a worker stuck in a chunk
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _read_exactly(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("chrF worker ended mid-answer")
    return bytes(data)


def _worker_main() -> None:
    """Score chunk after chunk of pairs (each a length and a pickle on stdin; the pickled list
    of scores, after its length, on stdout) until stdin closes."""
    import sys

    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    while len(head := stdin.read(8)) == 8:
        part = pickle.loads(_read_exactly(stdin, int.from_bytes(head, "little")))
        data = pickle.dumps(chrf_many(part), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little") + data)
        out.flush()


if __name__ == "__main__":
    _worker_main()
