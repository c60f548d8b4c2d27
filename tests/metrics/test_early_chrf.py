"""chrF computed while the replay waits (score/early.py): the same scores as the scoring stage
computes, whichever pairs were done early."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import migrate_eval
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import early, text
from tests.run_rows import comparable_results
from tests.servers import LoopbackServer
from tests.test_cli import _line, write_logs


def _task(metrics: list[str]) -> TaskInfo:
    return TaskInfo(
        name="t", output="free_text", metrics=metrics, min_parity=0.5, n=1, source="suite"
    )


def _exchange(i: int, answer: str) -> Exchange:
    return Exchange(
        id=f"e{i}",
        source=Source(file="f", line=i, format="t"),
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"q {i}"}]},
        response=Response(text=answer),
    )


def test_full_chunks_are_scored_in_workers_and_equal_the_scoring_stage() -> None:
    exchanges = [_exchange(i, f"the parcel {i} left the depot on monday") for i in range(7)]
    scorer = early.EarlyChrf(exchanges, [_task(["chrf"])], {e.id: "t" for e in exchanges},
                             chunk=3, minimum=0, workers=1)  # fmt: skip
    answers = [f"parcel {i} left on tuesday" for i in range(7)]
    for i, answer in enumerate(answers):
        scorer.add(
            i, ReplayResult(exchange_id=f"e{i}", candidate="c", response=Response(text=answer))
        )
    scorer.add(0, ReplayResult(exchange_id="e0", candidate="c", response=Response(text=answers[0])))
    scorer.add(1, ReplayResult(exchange_id="e1", candidate="c", error="boom", error_kind="server"))
    scorer.add(2, ReplayResult(exchange_id="unknown", candidate="c", response=Response(text="x")))
    values = scorer.finish()
    pairs = [(exchanges[i].response.text or "", answers[i]) for i in range(6)]  # 2 full chunks
    # the 7th waits for a chunk: left to scoring
    assert dict(values) == {hash(p): v for p, v in zip(pairs, text.chrf_scores(pairs), strict=True)}
    assert values.get(hash(("not", "scored"))) is None


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no process priorities here")
def test_workers_compute_at_a_lower_priority_than_the_run() -> None:
    """The replay's event loop (and a vendor on the same machine) take a core from the chrF
    workers when they wake up, instead of sharing it with them."""
    exchanges = [_exchange(i, f"answer {i}") for i in range(2)]
    scorer = early.EarlyChrf(exchanges, [_task(["chrf"])], {e.id: "t" for e in exchanges},
                             chunk=2, minimum=0, workers=1)  # fmt: skip
    try:
        for i in range(2):
            scorer.add(i, ReplayResult(exchange_id=f"e{i}", candidate="c",
                                       response=Response(text=f"reply {i}")))  # fmt: skip
        for future in scorer._futures:
            future.result()
        (worker,) = scorer._all_workers
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == min(19, mine + early.NICENESS)
    finally:
        scorer.close()


def test_idle_without_chrf_or_below_the_minimum() -> None:
    exchanges = [_exchange(i, "a") for i in range(5)]
    assignment = {e.id: "t" for e in exchanges}
    assert not early.EarlyChrf(exchanges, [_task(["token_f1"])], assignment, minimum=0).active
    assert not early.EarlyChrf(exchanges, [_task(["chrf"])], assignment, minimum=6).active
    assert early.EarlyChrf(exchanges, [_task(["chrf"])], assignment, minimum=5).active


def _suite(tmp_path: Path, base_url: str) -> Path:
    rows = [
        _line(i, f"where is parcel {i}?", f"echo: where is the parcel {i} you sent?")
        for i in range(40)
    ]
    write_logs(tmp_path / "logs.jsonl", rows)
    (tmp_path / "suite.yaml").write_text(
        f"""
name: early
logs: [logs.jsonl]
candidates: [{{name: c, provider: openai-compatible, model: m, base_url: "{base_url}"}}]
thresholds: {{min_samples: 5}}
tasks:
  - name: qa
    match: {{metadata: {{feature: qa}}}}
    output: free_text
    metrics: [chrf]
""",
        encoding="utf-8",
    )
    return tmp_path / "suite.yaml"


def test_a_run_scores_chrf_during_the_replay_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored: list[int] = []
    real = text.chrf_scores

    def counting(pairs: Any) -> list[float]:
        scored.append(len(pairs))
        return real(pairs)

    monkeypatch.setattr(text, "chrf_scores", counting)
    results = {}
    with LoopbackServer() as server:
        suite = _suite(tmp_path, server.base_url)
        for label, minimum in (("after", 10**9), ("during", 0)):
            monkeypatch.setattr(early, "MINIMUM", minimum)
            monkeypatch.setattr(early, "CHUNK", 8)
            scored.clear()
            out = migrate_eval.run(
                suite, out=tmp_path / label, cache=tmp_path / f"{label}.sqlite", baseline=False
            )
            results[label] = comparable_results(out.run_dir)
            # the candidate's 40 pairs, and the chance level's 40 (logged vs unrelated logged)
            if label == "after":
                assert sorted(scored) == [40, 40]  # all of it in the scoring stage
            else:
                assert sorted(scored) == [0, 40]  # 40 computed during the replay, none after
    assert results["during"] == results["after"]


def test_a_worker_serves_chunk_after_chunk_until_closed() -> None:
    from migrate_eval.core._chrf import ChrfWorker, chrf_many

    worker = ChrfWorker()
    try:
        first = [("the parcel left", "the parcel arrived"), ("", "")]
        second = [("refund my order", "refund the order")] * 3
        assert worker.score(first) == chrf_many(first)
        assert worker.score(second) == chrf_many(second)  # the same process, no new start
        assert worker.proc.poll() is None
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_a_failed_worker_leaves_its_pairs_to_the_scoring_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from migrate_eval.core import _chrf

    def gone(self: Any, part: Any) -> list[float]:
        raise OSError("chrF worker gone")

    monkeypatch.setattr(_chrf.ChrfWorker, "score", gone)
    exchanges = [_exchange(i, f"answer {i}") for i in range(4)]
    scorer = early.EarlyChrf(exchanges, [_task(["chrf"])], {e.id: "t" for e in exchanges},
                             chunk=2, minimum=0, workers=1)  # fmt: skip
    for i in range(4):
        scorer.add(i, ReplayResult(exchange_id=f"e{i}", candidate="c", response=Response(text="x")))
    assert scorer.finish() == {}  # nothing known early: scoring computes every pair


class _HeldWorker:
    """A chrF worker that computes only once the test lets it (or fails once ended)."""

    def __init__(self, release: threading.Event, started: list[int]) -> None:
        self.release = release
        self.started = started
        self.killed = False
        self.proc = self  # finish() ends a worker with proc.kill()
        self.pid = id(self)  # (no such process: its priority is not set)

    def score(self, part: list[tuple[str, str]]) -> list[float]:
        from migrate_eval.core._chrf import chrf_many

        self.started.append(len(part))
        if not self.release.wait(30) or self.killed:
            raise EOFError("chrF worker ended mid-answer")
        return chrf_many(part)

    def kill(self) -> None:
        self.killed = True
        self.release.set()

    def close(self) -> None:
        pass


def _held_scorer(
    monkeypatch: pytest.MonkeyPatch, chunk: int, n: int
) -> tuple[early.EarlyChrf, threading.Event, list[int], list[_HeldWorker]]:
    release, started, made = threading.Event(), [], []

    def make() -> _HeldWorker:
        made.append(_HeldWorker(release, started))
        return made[-1]

    from migrate_eval.core import _chrf

    monkeypatch.setattr(_chrf, "ChrfWorker", make)
    lowered: list[int] = []
    monkeypatch.setattr(early, "_lower_priority", lowered.append)
    exchanges = [_exchange(i, f"the parcel {i} left the depot") for i in range(n)]
    scorer = early.EarlyChrf(exchanges, [_task(["chrf"])], {e.id: "t" for e in exchanges},
                             chunk=chunk, minimum=0, workers=1)  # fmt: skip
    for i in range(n):
        scorer.add(i, ReplayResult(exchange_id=f"e{i}", candidate="c",
                                   response=Response(text=f"parcel {i} left")))  # fmt: skip
    for _ in range(3000):  # the first chunk reached its worker
        if started:
            break
        threading.Event().wait(0.01)
    scorer.lowered = lowered  # type: ignore[attr-defined]
    return scorer, release, started, made


def test_when_the_replay_ends_large_chunks_go_to_workers_at_the_run_s_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A niced worker on a busy machine may take long: when the replay ends, the one still
    computing a large chunk is ended and the chunk computed again, with the chunks not started
    yet, by a new worker at the run's priority. Every pair is known early all the same."""
    chunk = early.WAIT_FOR_AT_MOST + 1
    monkeypatch.setattr(early, "IDLE_CHUNK", chunk)  # full chunks only
    scorer, _, started, made = _held_scorer(monkeypatch, chunk, 2 * chunk)
    assert started == [chunk]  # the second chunk waits for the only worker
    values = scorer.finish()
    assert len(values) == 2 * chunk
    assert [w.killed for w in made] == [True, False]
    assert started == [chunk, chunk, chunk]  # the first chunk again, then the second
    assert scorer.lowered == [made[0].pid]  # only the worker of the replay was niced


def test_when_the_replay_ends_a_small_chunk_running_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer, release, started, made = _held_scorer(monkeypatch, 2, 2)
    assert started == [2]

    def finish_then_release() -> None:
        for _ in range(3000):
            if scorer._ending:
                break
            threading.Event().wait(0.01)
        release.set()

    helper = threading.Thread(target=finish_then_release)
    helper.start()
    values = scorer.finish()
    helper.join()
    pairs = [(f"the parcel {i} left the depot", f"parcel {i} left") for i in range(2)]
    assert dict(values) == {hash(p): v for p, v in zip(pairs, text.chrf_scores(pairs), strict=True)}
    assert [w.killed for w in made] == [False]


def test_workers_behind_leave_pairs_to_scoring_instead_of_holding_their_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replay answered from the cache (or a busy machine) goes faster than chrF: past
    QUEUED chunks a worker, further pairs are the scoring stage's, not texts held in a queue
    (a million answers' texts were held until the workers caught up)."""
    chunk = 5
    monkeypatch.setattr(early, "IDLE_CHUNK", chunk)  # full chunks only
    scorer, release, started, _ = _held_scorer(monkeypatch, chunk, 40 * chunk)
    try:
        assert started == [chunk]  # the worker holds the first chunk
        assert len(scorer._futures) == early.QUEUED  # 4 chunks queued or running, not 40
        assert scorer._pending == []
    finally:
        release.set()
    values = scorer.finish()
    assert len(values) == early.QUEUED * chunk  # the rest is computed by the scoring stage
