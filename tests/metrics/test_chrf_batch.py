"""The batched chrF kernel equals lm-eval's registered ``chrf`` (sacrebleu) to the last bit, one
pair at a time, in batches and in worker processes; the metric scores through its batch hook."""

from __future__ import annotations

import os
import random
import shutil
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core import _chrf
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import score
from migrate_eval.score.text import chrf_score, chrf_scores, lm_eval_chrf

_ALPHABET = "ab cdé\tfg\nhi  ,.!?日本-Ωx"


def _pairs(n: int, seed: int = 7) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    out = [("", ""), ("", "abc"), ("abc", ""), ("a", "a"), ("   ", "x"), ("ab", "abcdefgh")]
    while len(out) < n:
        a = "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(0, 40)))
        b = a[: rnd.randint(0, len(a))] + "".join(rnd.choice(_ALPHABET) for _ in range(5))
        out.append((a, b) if rnd.random() < 0.5 else (b, a))
    return out


def test_chrf_kernel_equals_sacrebleu_exactly() -> None:
    pairs = _pairs(600)
    fn = lm_eval_chrf()
    assert _chrf.chrf_many(pairs) == [float(fn([pair])) for pair in pairs]


def test_the_c_statistics_are_built_where_a_c_compiler_is() -> None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) here: chrF is computed in Python")
    assert _chrf.native is not None, "pip install should have built _chrfc.c"


@pytest.mark.skipif(_chrf.native is None, reason="the C extension is not built (no C compiler)")
def test_the_c_statistics_equal_the_counters_on_any_text() -> None:
    # code points of every width (Latin-1, BMP, astral), repeated n-grams, texts shorter than
    # an order, empty texts: the same 18 integers as intersecting the n-gram Counters
    rnd = random.Random(11)
    alphabet = "ab cdé\tfg\nhi  ,.!?日本-Ωx\U0001f600\u00a0\u2003aaaa"
    texts = ["", "a", "aa", "aaaaaaaaaa", "ab" * 40, "日本日本日本", "\U0001f600" * 7]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300))) for _ in range(400)]
    native = _chrf.native
    assert native is not None
    for k in range(3000):
        a = rnd.choice(texts)
        b = a[: rnd.randint(0, len(a))] + rnd.choice(texts)[:20] if k % 3 else rnd.choice(texts)
        h, r = "".join(b.split()), "".join(a.split())
        assert native(h, r) == _chrf._pair_stats(_chrf._grams(b), _chrf._grams(a)), (a, b)
    pairs = _pairs(600)
    assert _chrf.chrf_many(pairs) == _chrf._chrf_many_python(pairs)


def test_chrf_is_computed_in_python_without_the_extension(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pairs = _pairs(300, seed=5)
    fn = lm_eval_chrf()
    monkeypatch.setattr(_chrf, "native", None)
    assert _chrf.chrf_many(pairs) == [float(fn([pair])) for pair in pairs]


def test_chrf_score_and_batch_agree() -> None:
    pairs = _pairs(200, seed=3)
    assert chrf_scores(pairs) == [chrf_score(r, p) for r, p in pairs]
    assert chrf_score("", "") == 1.0


def test_chrf_batch_in_worker_processes_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chrf, "CHUNK", 50)
    pairs = _pairs(230, seed=5)
    assert _chrf.chrf_batch(pairs, workers=2) == _chrf.chrf_many(pairs)


def test_workers_only_for_large_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _chrf.workers_for(10) == 1
    assert _chrf.workers_for(_chrf.PARALLEL_MIN - 1) == 1
    assert _chrf.workers_for(10 * _chrf.PARALLEL_MIN) >= 1
    monkeypatch.setenv(_chrf.WORKERS_ENV, "1")
    assert _chrf.workers_for(10 * _chrf.PARALLEL_MIN) == 1


def test_no_worker_processes_means_the_same_values_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(_chrf, "CHUNK", 50)
    pairs = _pairs(120, seed=9)
    assert _chrf.chrf_batch(pairs, workers=2) == _chrf.chrf_many(pairs)


_UNGUARDED = """
import json, sys
from migrate_eval.core import _chrf
print("script started", file=sys.stderr)  # a multiprocessing child would run this again
_chrf.CHUNK = 50
pairs = json.loads(sys.argv[1])
print(json.dumps([_chrf.chrf_batch(pairs, workers=2), _chrf.chrf_many(pairs)]))
"""


def test_worker_processes_never_rerun_a_users_unguarded_script(tmp_path: Path) -> None:
    """A user's script calling the run without ``if __name__ == "__main__"``: a multiprocessing
    pool's children import it again (it started the whole run over and lost every chrF value
    of a large batch); the workers run only this module."""
    import json
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text(_UNGUARDED, encoding="utf-8")
    pairs = _pairs(160, seed=11)
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(pairs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    in_workers, here = json.loads(done.stdout)
    assert in_workers == here and len(here) == len(pairs)
    assert done.stderr.count("script started") == 1


def _exchange(i: int, text: str) -> Exchange:
    return Exchange(
        id=f"e{i}",
        source=Source(file="t", line=i + 1, format="t"),
        request={"model": "m", "messages": [{"role": "user", "content": "q"}]},
        response=Response(text=text),
    )


def _scored_rows(
    pairs: list[tuple[str, str]],
) -> tuple[list[Exchange], list[ReplayResult], TaskInfo]:
    """An exchange (logged answer: the pair's first) and an answer (its second) a pair."""
    exchanges = [_exchange(i, ref) for i, (ref, _) in enumerate(pairs)]
    replays = [
        ReplayResult(exchange_id=f"e{i}", candidate="c", response=Response(text=hyp))
        for i, (_, hyp) in enumerate(pairs)
    ]
    task = TaskInfo(
        name="t", output="free_text", metrics=["chrf"], min_parity=0.5, n=len(pairs), source="suite"
    )
    return exchanges, replays, task


def test_chrf_metric_scores_through_its_batch_hook() -> None:
    pairs = _pairs(40, seed=11)
    pairs += pairs[6:9]  # the same pair on several rows: each row gets its value
    exchanges, replays, task = _scored_rows(pairs)
    df = score(exchanges, [task], {ex.id: "t" for ex in exchanges}, replays)
    want = [chrf_score(r, p) for r, p in pairs]
    assert df["chrf"].tolist() == want


def test_a_pair_on_many_rows_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # real traffic repeats answers: the same (logged, candidate) pair on many rows was
    # computed again, one pair at a time, on every row after the first (at a million rows of
    # repeated answers, the scoring stage took longer than the replay)
    from migrate_eval.score import text

    pairs = _pairs(6) * 20
    exchanges, replays, task = _scored_rows(pairs)
    computed: list[int] = []
    real = _chrf.chrf_many

    def counted(batch: Any) -> list[float]:
        computed.append(len(batch))
        return real(batch)

    monkeypatch.setattr(_chrf, "chrf_many", counted)
    monkeypatch.setattr(text, "_CHRF_BATCH", {})
    df = score(exchanges, [task], {ex.id: "t" for ex in exchanges}, replays)
    assert sum(computed) == len(set(pairs)) == 6  # the distinct pairs, once each
    monkeypatch.setattr(_chrf, "chrf_many", real)
    assert df["chrf"].tolist() == [chrf_score(r, p) for r, p in pairs]
