"""A run too large to hold keeps its exchanges and answers on disk (core/store.py): the
records read back as written, and a whole run gives the same results either way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import migrate_eval
from migrate_eval.core import store
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.store import ById, ByPair, Spill, interleave, pick, record_ids
from migrate_eval.replay import engine
from migrate_eval.score import scoring
from tests.run_rows import comparable_results
from tests.servers import LoopbackServer, SubprocessServer
from tests.test_cli import _line, write_logs


def _exchange(i: int) -> Exchange:
    return Exchange(
        id=f"e{i}",
        source=Source(file="f", line=i, format="t"),
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"q {i}"}]},
        response=Response(text=f"answer {i}"),
    )


def test_spilled_records_read_back_as_written_by_index_slice_and_pass(tmp_path: Path) -> None:
    with Spill(tmp_path, batch=4) as spill:
        records = spill.new("exchanges", ids=True)
        written = [_exchange(i) for i in range(11)]
        records.extend(written)
        assert len(records) == 11
        assert list(records) == written  # two batches on disk, three records in the buffer
        assert records[5] == written[5] and records[-1] == written[10]
        assert records[3:9] == written[3:9]
        assert record_ids(records) == [e.id for e in written]  # kept, not read back
        assert pick(records, [9, 2, 2]) == {2: written[2], 9: written[9]}
        with pytest.raises(IndexError):
            records[11]
        with pytest.raises(TypeError):
            records[0] = written[1]
        path = records.path
        assert path.is_file() and path.parent == tmp_path
    assert not path.exists()  # removed with the run
    with pytest.raises(ValueError, match="closed"):
        records[0]


def test_sequences_of_the_same_exchanges_share_one_list_of_ids(tmp_path: Path) -> None:
    # a large run keeps its sample and its redacted copy on disk: a million ids are held once
    written = [_exchange(i) for i in range(7)]
    ids = [e.id for e in written]
    with Spill(tmp_path, batch=3) as spill:
        first = spill.new("exchanges", ids=ids)
        first.extend(written)
        second = spill.new("redacted", ids=record_ids(first))
        second.extend(written)
        assert record_ids(first) is ids and record_ids(second) is ids
        assert list(second) == written
        # a record that is not the one its ids name next is refused, not misfiled
        third = spill.new("other", ids=ids)
        third.append(written[0])
        with pytest.raises(ValueError, match="record 1 is not the one its ids name"):
            third.append(written[2])
        with pytest.raises(ValueError, match="record 1"):
            spill.new("short", ids=ids[:1]).extend(written[:2])


def test_spilled_records_are_read_by_several_threads_at_once(tmp_path: Path) -> None:
    with Spill(tmp_path, batch=3) as spill:
        records = spill.new("answers")
        records.extend(range(300))
        seen: list[list[int]] = []
        errors: list[BaseException] = []

        def read(step: int) -> None:
            try:
                seen.append([records[i] for i in range(0, 300, step)] + list(records))
            except BaseException as e:  # pragma: no cover - the failure reported below
                errors.append(e)

        threads = [threading.Thread(target=read, args=(step,)) for step in (1, 2, 7, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(seen) == 4
        for got in seen:
            assert got[-300:] == list(range(300))


def test_interleaved_answers_and_lookups(tmp_path: Path) -> None:
    with Spill(tmp_path, batch=2) as spill:
        columns = [spill.new("a"), spill.new("b")]
        for i in range(5):
            columns[0].append(ReplayResult(exchange_id=f"e{i}", candidate="a"))
            columns[1].append(ReplayResult(exchange_id=f"e{i}", candidate="b"))
        rows = interleave(columns)
        expected = [(f"e{i}", c) for i in range(5) for c in "ab"]
        assert [(r.exchange_id, r.candidate) for r in rows] == expected
        assert rows[3].exchange_id == "e1" and rows[3].candidate == "b"
        by_pair = ByPair(rows, ById([], [f"e{i}" for i in range(5)]), ["a", "b"])
        assert by_pair[("e4", "a")].candidate == "a" and ("e9", "a") not in by_pair
        assert by_pair.get(("e9", "a")) is None and len(by_pair) == 10
    lists = interleave([[1, 2], [3, 4]])
    assert lists == [1, 3, 2, 4] and isinstance(lists, list)
    exchanges = [_exchange(i) for i in range(3)]
    by_id = ById(exchanges, [e.id for e in exchanges])
    assert (
        by_id["e1"] is exchanges[1] and by_id.get("x") is None and list(by_id) == ["e0", "e1", "e2"]
    )


def test_a_bad_spill_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from migrate_eval.core.errors import ConfigError

    monkeypatch.setenv("MIGRATE_EVAL_SPILL_ABOVE", "many")
    with pytest.raises(ConfigError, match="MIGRATE_EVAL_SPILL_ABOVE"):
        store.spill_above()
    monkeypatch.setenv("MIGRATE_EVAL_SPILL_ABOVE", "0")
    assert store.spill_above() == 0


def _suite(tmp_path: Path, base_url: str, redact: bool) -> Path:
    rows = []
    for i in range(60):
        # every fifth request repeats an earlier one (the same logged request: sent once)
        n = i - 4 if i % 5 == 4 else i
        user = f"where is parcel {n}? mail me at a{n}@example.com"
        rows.append(_line(i, user, f"echo: where is the parcel {i} you sent?",
                          feature="qa" if i % 3 else "other"))  # fmt: skip
    write_logs(tmp_path / "logs.jsonl", rows)
    (tmp_path / "suite.yaml").write_text(
        f"""
name: spill
logs: [logs.jsonl]
candidates:
  - {{name: c1, provider: openai-compatible, model: m1, base_url: "{base_url}"}}
  - {{name: c2, provider: openai-compatible, model: m2, base_url: "{base_url}"}}
thresholds: {{min_samples: 5}}
redaction: {{enabled: {str(redact).lower()}}}
tasks:
  - name: qa
    match: {{metadata: {{feature: qa}}}}
    output: free_text
    metrics: [chrf, token_f1]
  - name: other
    match: {{metadata: {{feature: other}}}}
    output: free_text
    metrics: [token_f1]
""",
        encoding="utf-8",
    )
    return tmp_path / "suite.yaml"


def _scores(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "scores.parquet").drop(columns=["latency_ms"])
    return frame.sort_values(["exchange_id", "candidate"]).reset_index(drop=True)


@pytest.mark.parametrize("redact", [False, True])
def test_a_run_on_disk_gives_the_results_of_a_run_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redact: bool
) -> None:
    # small batches, windows and chunks: every boundary is crossed
    monkeypatch.setattr(store, "BATCH", 7)
    monkeypatch.setattr(engine._Planner, "WINDOW", 8)
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 9)
    made: list[Any] = []
    real_new = Spill.new

    def new(self: Spill, name: str, *, ids: bool = False) -> Any:
        records = real_new(self, name, ids=ids)
        made.append(records)
        return records

    monkeypatch.setattr(Spill, "new", new)
    results, scores, sent, reports = {}, {}, {}, {}
    with LoopbackServer() as server:
        suite = _suite(tmp_path, server.base_url, redact)
        for label, above in (("memory", "1000"), ("disk", "0")):
            monkeypatch.setenv("MIGRATE_EVAL_SPILL_ABOVE", above)
            before = len(server.bodies)
            out = migrate_eval.run(
                suite, out=tmp_path / label, cache=tmp_path / f"{label}.sqlite", baseline=False
            )
            results[label] = comparable_results(out.run_dir)
            scores[label] = _scores(out.run_dir)
            bodies = server.bodies[before:]
            sent[label] = sorted((b["model"], b["messages"][-1]["content"]) for b in bodies)
            loaded = migrate_eval.load_run(out.run_dir)
            untimed = {"latency_ms": True, "response": {"latency_ms"}}
            reports[label] = (
                [e.model_dump() for e in loaded.exchanges],
                [r.model_dump(exclude=untimed) for r in loaded.responses],
            )
            if label == "memory":
                assert not made
    assert made and {"exchanges", "answers"} <= {r.path.name.split("-")[0] for r in made}
    assert all(not r.path.exists() for r in made)  # removed when the run ended
    assert results["disk"] == results["memory"]
    pd.testing.assert_frame_equal(scores["disk"], scores["memory"])
    assert reports["disk"] == reports["memory"]
    # each distinct request sent once a candidate (48 distinct of 60), either way
    assert sent["disk"] == sent["memory"] and len(sent["disk"]) == 2 * 48
    if redact:
        assert not any("@example.com" in text for _, text in sent["disk"])


def _peak_of_run(tmp_path: Path, base_url: str, n: int, label: str) -> int:
    """The traced peak (bytes) of a whole run of ``n`` exchanges, two candidates."""
    import gc
    import tracemalloc

    folder = tmp_path / label
    folder.mkdir()
    rows = [
        _line(i, f"where is parcel {i}? " + "it was due on monday, " * 8,
              f"parcel {i} left the depot yesterday and arrives tomorrow. " * 3)
        for i in range(n)
    ]  # fmt: skip
    write_logs(folder / "logs.jsonl", rows)
    (folder / "suite.yaml").write_text(
        f"""
name: spill-{label}
logs: [logs.jsonl]
candidates:
  - {{name: c1, provider: openai-compatible, model: m1, base_url: "{base_url}"}}
  - {{name: c2, provider: openai-compatible, model: m2, base_url: "{base_url}"}}
tasks:
  - name: qa
    match: {{metadata: {{feature: qa}}}}
    output: free_text
    metrics: [chrf, token_f1]
""",
        encoding="utf-8",
    )
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        migrate_eval.run(
            folder / "suite.yaml", out=folder / "run", cache=folder / "c.sqlite", baseline=False,
            history=False,
        )  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    return peak


def test_a_run_on_disk_holds_no_exchange_or_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bytes, not time: the peak of a run grows with its exchanges by what it keeps of each
    # (ids, a row of scores a candidate), not by the exchanges and answers themselves
    monkeypatch.setattr(store, "BATCH", 32)
    monkeypatch.setattr(engine._Planner, "WINDOW", 64)
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 64)
    # what is bounded by design, bounded lower: the run folder's write batches, the report's
    # exchange browser (at most this many exchanges on the page)
    from migrate_eval.core import run_folder
    from migrate_eval.report import explorer

    monkeypatch.setattr(run_folder, "BATCH_ROWS", 64)
    monkeypatch.setattr(explorer, "MAX_BROWSER_EXCHANGES", 100)
    monkeypatch.setattr(explorer, "MIN_BROWSER_PER_TASK", 10)
    from migrate_eval.score import early

    monkeypatch.setattr(early, "MINIMUM", 0)  # chrF during the replay: keeps no text either
    monkeypatch.setattr(early, "CHUNK", 50)
    growth = {}
    with SubprocessServer() as server:  # its own process: what it keeps is not counted
        _peak_of_run(tmp_path, server.base_url, 100, "warm")  # imports, caches of the process
        for mode, above in (("memory", "100000"), ("disk", "0")):
            monkeypatch.setenv("MIGRATE_EVAL_SPILL_ABOVE", above)
            small = _peak_of_run(tmp_path, server.base_url, 300, f"{mode}-small")
            large = _peak_of_run(tmp_path, server.base_url, 1500, f"{mode}-large")
            growth[mode] = (large - small) / 1200
    assert growth["memory"] > 4000, growth  # the records themselves: several KB an exchange
    # on disk: its ids, its rows of scores and the run's bookkeeping (about 1.3 KB here)
    assert growth["disk"] < 2000, growth


def test_records_pickle_as_their_values_and_come_back_equal() -> None:
    import copy
    import pickle

    from migrate_eval.core.records import ToolCall, Usage

    ex = _exchange(3)
    answer = ReplayResult(
        exchange_id="e3",
        candidate="c",
        response=Response(
            text="a",
            tool_calls=[ToolCall.from_raw("track", '{"n": 1}')],
            usage=Usage(total_tokens=3),
        ),
        dropped=["seed"],
    )
    for record in (ex, answer):
        back = pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == record and back.model_dump_json() == record.model_dump_json()
        assert back.model_fields_set is record.model_fields_set  # the class's one shared set
        assert copy.deepcopy(record) == record
    back = pickle.loads(pickle.dumps(answer))
    assert back.response is not None and back.response.tool_calls[0].parsed_arguments == {"n": 1}


def test_scored_chunks_are_joined_without_holding_them_twice() -> None:
    # a large run scores 5,000 exchanges at a time; joining the chunks' frames must give
    # pd.concat's frame without holding the chunks and the whole at once (at 1M exchanges
    # and two candidates the scores are hundreds of MB)
    import tracemalloc

    import numpy as np

    def chunk(k: int, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "exchange_id": [f"x{k}-{i}" for i in range(n)],
                "status": pd.Series(["ok", "error"] * (n // 2), dtype="str"),
                "parity": np.linspace(0, 1, n) + k,
                "chrf": np.full(n, np.nan),
                "tokens": pd.array(range(n), dtype="Int64"),
                "cached": np.zeros(n, dtype=bool),
            }
        )

    expected = pd.concat([chunk(k, 20_000) for k in range(6)], ignore_index=True)
    tracemalloc.start()  # before the chunks are made: their memory going counts too
    try:
        frames = [chunk(k, 20_000) for k in range(6)]
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        joined = scoring._joined(frames)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pd.testing.assert_frame_equal(joined, expected)
    assert frames == []
    # pd.concat holds the chunks and the whole at its peak (about twice what the chunks hold);
    # a column at a time holds the chunks and one column of the whole
    assert peak < 1.5 * held
    # chunks whose columns differ are joined as pd.concat joins them
    odd = [chunk(0, 4), chunk(1, 4).drop(columns=["chrf"])]
    pd.testing.assert_frame_equal(scoring._joined(list(odd)), pd.concat(odd, ignore_index=True))
