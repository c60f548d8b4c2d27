"""The run's first stage reads the whole logged traffic once, through Arrow files, and gives
exactly what the in-memory path (read every exchange, then discover, profile, sample) gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.prices import LoggedTraffic, logged_cost
from migrate_eval.core.request import request_key
from migrate_eval.core.suite import TaskMatch, TaskSpec
from migrate_eval.ingest import read_logs
from migrate_eval.ingest.dataset import iter_file_exchanges, write_arrow
from migrate_eval.ingest.reader import stream_logs
from migrate_eval.plan.profile import profile
from migrate_eval.plan.sampling import request_fingerprint, sample_ids, sample_plan
from migrate_eval.plan.tasks import assign_tasks
from migrate_eval.plan.traffic import duplicate_pairs, read_traffic

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "suites" / "demo" / "logs" / "traffic.jsonl"


def _logs(tmp_path: Path) -> Path:
    """chat-jsonl with repeats, errors, a request without an answer and bad lines."""
    path = tmp_path / "extra.jsonl"
    rows = []
    for i in range(150):
        line: dict[str, Any] = {
            "id": f"x{i}",
            "timestamp": 1_790_000_000 + 600 * i,
            "request": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"is item {i % 12} in stock?"}],
                "metadata": {"feature": "stock"} if i % 3 else None,
            },
        }
        if i % 17 == 0:
            line["response"] = {"error": {"code": "server_error", "message": "boom"}}
        elif i % 19 != 0:
            line["response"] = {
                "choices": [
                    {"message": {"role": "assistant", "content": "yes" if i % 4 else "no"}}
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 1},
            }
        rows.append(json.dumps(line))
    rows[40] = '{"request": {"model": "m", "messages": "hi"}}'
    rows.insert(70, "{not json")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _groups(tmp_path: Path) -> list[tuple[str, Any, list[Path]]]:
    return [("auto", None, [DEMO]), ("chat-jsonl", None, [_logs(tmp_path)])]


@pytest.mark.parametrize("dedupe", [False, True])
def test_the_streamed_traffic_is_what_reading_everything_gives(
    tmp_path: Path, dedupe: bool
) -> None:
    specs = [TaskSpec(name="stock", match=TaskMatch(metadata={"feature": "stock"}))]
    groups = _groups(tmp_path)
    traffic = read_traffic(groups, tmp_path / "work", specs=specs, dedupe=dedupe)

    reads = [read_logs(paths, format=fmt) for fmt, _, paths in groups]
    every = [ex for r in reads for ex in r.exchanges]
    scorable = [e for e in every if e.response is not None and e.error is None]
    plan = assign_tasks(scorable, specs)
    assert traffic.plan.tasks == plan.tasks and traffic.plan.assignment == plan.assignment
    assert traffic.order == [e.id for e in scorable]
    assert traffic.summary.exchanges == len(every) == traffic.exchanges
    assert traffic.summary.lines_read == sum(r.lines_read for r in reads)
    assert traffic.skipped == [i for r in reads for i in r.skipped]
    assert traffic.summary.skipped == 2 and traffic.summary.files == [
        str(DEMO),
        *map(str, groups[1][2]),
    ]
    assert traffic.profile == profile(every, plan, traffic.summary)

    logged = LoggedTraffic()
    for e in scorable:
        logged.add(plan.assignment[e.id], e.timestamp, logged_cost(e))
    assert traffic.logged == logged

    names = [t.name for t in plan.tasks]
    expected_pairs = duplicate_pairs(
        (e.id, request_key(e), e.timestamp, plan.assignment[e.id]) for e in scorable
    )
    assert traffic.duplicate_pairs(names) == expected_pairs and expected_pairs

    # sampling ids with the streamed fingerprints picks what sampling the exchanges picks
    kept, new_plan, summary = sample_ids(
        traffic.order,
        traffic.plan,
        fingerprints=traffic.fingerprints,
        limit=7,
        seed=3,
        dedupe=dedupe,
    )
    kept_ex, plan_ex, summary_ex = sample_plan(scorable, plan, limit=7, seed=3, dedupe=dedupe)
    assert kept == [e.id for e in kept_ex] and new_plan == plan_ex and summary == summary_ex
    if dedupe:
        assert traffic.fingerprints is not None
        same = [
            (traffic.fingerprints[a.id] == traffic.fingerprints[b.id])
            == (request_fingerprint(a) == request_fingerprint(b))
            for a in scorable[:60]
            for b in scorable[:60]
        ]
        assert all(same)

    # the exchanges come back from the Arrow files as they were read
    by_id = {e.id: e for e in scorable}
    loaded = traffic.load([*kept, "no-such-id"])
    assert sorted(loaded) == sorted(kept)
    assert all(loaded[i].model_dump() == by_id[i].model_dump() for i in kept)


def test_rows_of_an_arrow_file_are_read_back_a_batch_at_a_time(tmp_path: Path) -> None:
    target = tmp_path / "x.arrow"
    stream = stream_logs([DEMO])
    from migrate_eval.ingest.dataset import BATCH_ROWS

    write_arrow(stream, target, batch_rows=50)  # several record batches
    assert BATCH_ROWS > 50
    every = list(iter_file_exchanges(target))
    assert [row for row, _ in every] == list(range(310))
    assert [e.id for _, e in every] == [e.id for e in read_logs([DEMO]).exchanges]
    wanted = [0, 49, 50, 51, 149, 309]
    picked = list(iter_file_exchanges(target, wanted))
    assert [row for row, _ in picked] == wanted
    assert [e.id for _, e in picked] == [every[r][1].id for r in wanted]
    assert list(iter_file_exchanges(target, [])) == []


def test_a_run_reads_its_logs_through_the_stream_and_leaves_no_work_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migrate_eval
    import migrate_eval.ingest as ingest_pkg
    import migrate_eval.ingest.reader as reader_mod

    def no_list(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a run must stream its logs, not read them into a list")

    monkeypatch.setattr(ingest_pkg, "read_logs", no_list)
    monkeypatch.setattr(reader_mod, "read_logs", no_list)
    cache = tmp_path / "cache" / "replay.sqlite"
    outcome = migrate_eval.run(out=tmp_path / "run", cache=cache)
    assert outcome.results.ingest.exchanges == 310
    assert [p.name for p in cache.parent.iterdir() if p.name.startswith("ingest-")] == []


def test_ids_are_unique_across_log_groups(tmp_path: Path) -> None:
    # two groups (different formats) whose logs use the same ids
    chat = tmp_path / "chat.jsonl"
    tune = tmp_path / "tune.jsonl"
    lines = []
    for i in range(3):
        lines.append(
            {
                "id": f"r{i}",
                "request": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
                "response": {"choices": [{"message": {"role": "assistant", "content": "a"}}]},
            }
        )
    chat.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    tune.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    traffic = read_traffic(
        [("chat-jsonl", None, [chat]), ("auto", None, [tune])], tmp_path / "work"
    )
    assert traffic.order == ["r0", "r1", "r2", "r0-2", "r1-2", "r2-2"]
    assert len(traffic.plan.assignment) == 6
    loaded = traffic.load(traffic.order)
    assert {ex.source.file for ex in loaded.values()} == {str(chat), str(tune)}


def test_init_streams_and_writes_the_suite_the_in_memory_path_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import migrate_eval.ingest as ingest_pkg
    import migrate_eval.ingest.reader as reader_mod
    from migrate_eval.api import init as init_suite
    from migrate_eval.plan.suite_writer import suite_yaml

    logs = _logs(tmp_path)
    scorable = [
        e for e in read_logs([DEMO, logs]).exchanges if e.response is not None and e.error is None
    ]
    target = tmp_path / "s" / "suite.yaml"
    target.parent.mkdir()
    expected = suite_yaml(
        scorable,
        name="t",
        logs=[os.path.relpath(p, target.parent.resolve()) for p in (DEMO, logs)],
    )

    def no_list(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("init must stream its logs, not read them into a list")

    monkeypatch.setattr(ingest_pkg, "read_logs", no_list)
    monkeypatch.setattr(reader_mod, "read_logs", no_list)
    out = init_suite([DEMO, logs], out=target, name="t")
    assert out.read_text(encoding="utf-8") == expected
    assert "stock" in expected and "copies in these logs" in expected


def test_a_full_disk_while_copying_the_logs_is_an_infrastructure_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import migrate_eval.ingest.dataset as dataset_mod
    from migrate_eval.cli import main

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset_mod, "write_arrow", full)
    cache = tmp_path / "cache" / "replay.sqlite"
    res = CliRunner().invoke(
        main, ["run", "-q", "--out", str(tmp_path / "run"), "--cache", str(cache)]
    )
    assert res.exit_code == 3, res.output
    assert "No space left on device" in res.output and "--cache elsewhere" in res.output
    assert "internal error" not in res.output
    assert [p.name for p in cache.parent.iterdir()] == []  # the work folder is gone

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    res = CliRunner().invoke(main, ["profile", "--json", str(DEMO)])  # profile needs no folder
    assert res.exit_code == 0
    res = CliRunner().invoke(
        main, ["run", "-q", "--out", str(tmp_path / "r2"), "--cache", str(blocked / "c.sqlite")]
    )
    # found by the output check before anything is read or sent: a usage error
    assert res.exit_code == 2 and "is a file, not a folder" in res.output, res.output


def test_work_folders_of_killed_runs_are_removed_by_the_next(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from migrate_eval.plan.traffic import work_folder

    # a log large enough that the run is still copying it when it is killed
    big = tmp_path / "big.jsonl"
    line = json.loads(DEMO.read_text(encoding="utf-8").splitlines()[0])
    with big.open("w", encoding="utf-8") as fh:
        for i in range(60_000):
            fh.write(json.dumps({**line, "id": f"k{i}"}) + "\n")
    cache = tmp_path / "cache"
    code = (
        "import sys, migrate_eval\n"
        "migrate_eval.run(logs=[sys.argv[1]], candidates=['x=openai-compatible:m@http://127.0.0.1:9/v1'],"
        " offline=True, out=sys.argv[2], cache=sys.argv[3])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(big), str(tmp_path / "run"), str(cache / "c.sqlite")],
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(cache.glob(f"ingest-{proc.pid}-*")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = list(cache.glob(f"ingest-{proc.pid}-*"))
    assert left, "the run was killed while it copied the logs"
    (cache / "ingest-not-a-pid").mkdir()
    mine = cache / f"ingest-{os.getpid()}-live"
    mine.mkdir()
    with work_folder(cache, "ingest-") as work:
        assert work.name.startswith(f"ingest-{os.getpid()}-")
    assert not any(p.exists() for p in left)  # the killed run's copy of the logs is gone
    assert mine.exists() and (cache / "ingest-not-a-pid").exists()  # a live run's is kept


def test_tool_arguments_json_cannot_hold_come_back_as_they_were_read(tmp_path: Path) -> None:
    # a logged tool call whose arguments hold an integer beyond 64 bits and NaN (the standard
    # library parses both; writing them to an Arrow column crashed the run)
    log = tmp_path / "odd.jsonl"
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"n": 123456789012345678901234567890, "x": NaN}'},
    }
    line = {
        "id": "a",
        "request": {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        "response": {
            "choices": [
                {
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
    }
    log.write_text(json.dumps(line) + "\n", encoding="utf-8")
    traffic = read_traffic([("auto", None, [log])], tmp_path / "work")
    [expected] = read_logs([log]).exchanges
    got = traffic.load(["a"])["a"]
    assert got.model_dump() == expected.model_dump()
    assert (
        got.response is not None
        and got.response.tool_calls[0].parsed_arguments["n"] == 123456789012345678901234567890
    )


# -- the pass over real logs: what per-exchange pydantic Exchanges give -----------------------


def _mt_bench_log(tmp_path: Path) -> Path:
    """MT-bench's GPT-4 answers as chat-jsonl: one or two turns, the category as a feature tag
    (on most; a system prompt or nothing on the others), usage, a timestamp (none on some), a
    bookkeeping field (``user``) on some requests, and copies of some lines under other ids
    (duplicate requests for the noise floor)."""
    from tests.ingest.helpers import mt_bench_turns, write_jsonl

    lines = []
    for i, turn in enumerate(mt_bench_turns()):
        messages = turn["messages"]
        if i % 4 == 0 and i % 16:  # no tag: a task by the system prompt's template
            system = f"You answer {turn['category']} questions. Today is 2024-01-{i % 28 + 1:02d}."
            messages = [{"role": "system", "content": system}, *messages]
        request: dict[str, Any] = {"model": "gpt-4", "messages": messages}
        if i % 5 == 0:
            request["user"] = f"user-{i % 3}"
        line: dict[str, Any] = {
            "id": turn["id"],
            "request": request,
            "response": {
                "model": "gpt-4-0613",
                "choices": [
                    {
                        "message": {"role": "assistant", "content": turn["answer"]},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 50 + i, "completion_tokens": 20 + i % 7},
            },
            "metadata": {"feature": turn["category"]} if i % 4 else {},
        }
        if i % 9:
            line["timestamp"] = 1_700_000_000 - 40_000 * i  # some days, before and after
        lines.append(line)
        if i % 6 == 0:
            lines.append({**line, "id": f"{turn['id']}-again", "timestamp": 1_700_100_000 + i})
    return write_jsonl(tmp_path / "mt-bench.jsonl", lines)


def _cassette_log(tmp_path: Path) -> Path:
    """The OpenAI cassettes' chat completions as request/response pairs (tool calls,
    streamed answers, failed calls), tagged by test name but for a few (fewer than task
    discovery clusters by meaning: no embedding model is loaded)."""
    from tests.ingest.helpers import cassette_pairs, write_jsonl

    pairs = cassette_pairs("*chat_completion*.yaml")
    for i, pair in enumerate(pairs):
        if i % 8:
            pair["metadata"] = {"feature": pair["id"].split("#")[0].removeprefix("test_")[:24]}
    return write_jsonl(tmp_path / "cassettes.jsonl", pairs)


def _cookbook(*names: str) -> Any:
    def paths(tmp_path: Path) -> list[Path]:
        from tests.ingest.helpers import data_file

        return [data_file("openai-cookbook", name) for name in names]

    return paths


REAL_LOGS = {
    "mt-bench chat-jsonl": lambda tmp_path: [_mt_bench_log(tmp_path)],
    "cassette pairs": lambda tmp_path: [_cassette_log(tmp_path)],
    "fine-tuning": _cookbook("toy_chat_fine_tuning.jsonl", "uploaded_output.jsonl"),
    "Responses API batch input": _cookbook("nightly_support_qa_batch.jsonl"),
}


@pytest.mark.parametrize("name", sorted(REAL_LOGS))
def test_the_pass_gives_on_real_logs_what_each_exchange_gives(tmp_path: Path, name: str) -> None:
    """The pass decodes each Arrow row once into a light record, not an ``Exchange``: what it
    gathers is what the same consumers gather from the exchanges the readers give."""
    from migrate_eval.core.request import request_digest
    from migrate_eval.ingest.dataset import BATCH_ROWS
    from migrate_eval.plan.profile import TrafficTally
    from migrate_eval.plan.tasks import TaskDiscovery

    paths = REAL_LOGS[name](tmp_path)
    specs = [TaskSpec(name="writing", match=TaskMatch(metadata={"feature": "writing"}))]
    traffic = read_traffic([("auto", None, paths)], tmp_path / "work", specs=specs, dedupe=True)

    read = read_logs(paths)
    assert read.exchanges and len(read.exchanges) < BATCH_ROWS * 4
    tally = TrafficTally()
    discovery = TaskDiscovery(specs)
    scorable = []
    for ex in read.exchanges:
        tally.add(ex)
        if ex.response is not None and ex.error is None:
            discovery.add(ex)
            scorable.append(ex)
    plan = discovery.plan()
    assert traffic.summary == read.summary()
    assert traffic.skipped == read.skipped
    assert (traffic.plan.tasks, traffic.plan.assignment, traffic.plan.rules) == (
        plan.tasks,
        plan.assignment,
        plan.rules,
    )
    assert traffic.profile == tally.profile(plan, read.summary())
    assert traffic.order == [e.id for e in scorable]
    assert traffic.fingerprints == {e.id: request_digest(e) for e in scorable}
    logged = LoggedTraffic()
    for e in scorable:
        logged.add(plan.assignment[e.id], e.timestamp, logged_cost(e))
    assert traffic.logged == logged
    names = [t.name for t in plan.tasks]
    assert traffic.duplicate_pairs(names) == duplicate_pairs(
        (e.id, request_key(e), e.timestamp, plan.assignment[e.id]) for e in scorable
    )
    loaded = traffic.load(traffic.order)
    assert [loaded[e.id].model_dump() for e in scorable] == [e.model_dump() for e in scorable]


def test_the_mt_bench_log_exercises_what_the_pass_shortens(tmp_path: Path) -> None:
    # requests with and without a bookkeeping field (the request key is the digest only
    # without one), duplicates, undated exchanges, a suite task and tags
    traffic = read_traffic(
        [("auto", None, [_mt_bench_log(tmp_path)])],
        tmp_path / "work",
        specs=[TaskSpec(name="writing", match=TaskMatch(metadata={"feature": "writing"}))],
    )
    assert traffic.profile.duplicates.duplicates >= 20 and traffic.profile.undated > 0
    sources = {t.source for t in traffic.plan.tasks}
    assert sources == {"suite", "metadata", "system_prompt", "fallback"}
    assert sum(len(p) for p in traffic.duplicate_pairs(traffic.plan.assignment.values()).values())


def test_timestamps_come_back_as_arrow_gives_them() -> None:
    from datetime import UTC

    import pyarrow as pa

    from migrate_eval.ingest._rows import timestamps

    for tz in ("UTC", None):
        kind = pa.timestamp("us", tz=tz)
        for values in (
            [None, 0, -1, 1_700_000_000_123_456, None, -86_400_000_001, 253_402_300_799_999_999],
            [None, None],
            [],
        ):
            column = pa.array(values, kind)
            got = timestamps(column)
            assert got == column.to_pylist()
            # in UTC as the log readers give them
            assert {t.tzinfo for t in got if t is not None} <= {UTC if tz else None}
            other = column.cast(pa.timestamp("ms", tz=tz), safe=False)  # read by Arrow
            assert timestamps(other) == other.to_pylist()


def test_reading_the_arrow_copy_does_not_import_pandas(tmp_path: Path) -> None:
    # pyarrow imports pandas (~0.3 s) to make a time-zone-aware datetime (and for its compute
    # functions, which Traffic.load's take uses); the pass does not
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; "
        "from migrate_eval.plan.traffic import read_traffic; "
        "before = 'pandas' in sys.modules; "
        f"t = read_traffic([('auto', None, [{str(DEMO)!r}])], Path({str(tmp_path)!r})); "
        "assert t.logged.spans and t.profile.first; "
        "assert before or 'pandas' not in sys.modules, 'the read imported pandas'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
