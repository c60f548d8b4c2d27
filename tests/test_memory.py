"""Memory per exchange (issue 17): what a run holds for each exchange it replays is its own text
and a bounded overhead, measured in bytes allocated (tracemalloc), not in time.

A run reads the exchanges to replay back from its own Arrow work files
(:func:`~migrate_eval.ingest.dataset.iter_file_exchanges`): they were validated when the logs
were read, so they are built without validating again, and the strings that repeat across
exchanges (system prompts, model names, roles, file names, metadata values) are held once.
Every record shares one set of field names instead of holding its own.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.records import Exchange, ReplayResult, Response
from migrate_eval.ingest import read_logs
from migrate_eval.ingest.dataset import iter_file_exchanges, write_arrow
from migrate_eval.ingest.reader import stream_logs
from migrate_eval.plan.traffic import read_traffic

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "suites" / "demo" / "logs" / "traffic.jsonl"

#: A long system prompt, the same in every request (as in real traffic: one per feature).
SYSTEM = "You are the support assistant of Northwind Outfitters. " * 70  # about 3.9 KB


def _line(i: int) -> dict[str, Any]:
    """A chat-jsonl line: the shared system prompt, a question and an answer of their own;
    every third one a tool call, every fifth one a gold label, latencies as ints or floats."""
    request: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Where is my order #{i:06d}? It was due on Monday."},
        ],
    }
    message: dict[str, Any] = {
        "role": "assistant",
        "content": f"Order #{i:06d} left our warehouse yesterday and arrives tomorrow. " * 3,
    }
    if i % 3 == 0:
        request["tools"] = [{"type": "function", "function": {"name": "track", "parameters": {}}}]
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": "track", "arguments": json.dumps({"order": i})},
            }
        ]
    line: dict[str, Any] = {
        "id": f"ex-{i}",
        "timestamp": 1_790_000_000 + i,
        "latency_ms": 250 + i if i % 2 else 250.5 + i,
        "metadata": {"feature": f"feature-{i % 4}", "tier": "pro"},
        "request": request,
        "response": {
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 900,
                "completion_tokens": 40,
                "total_tokens": 940,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        },
    }
    if i % 5 == 0:
        line["gold"] = "shipped"
    return line


def _log(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "traffic.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(_line(i)) + "\n")
    return path


def _work_file(log: Path, tmp_path: Path) -> Path:
    """``log`` written to an Arrow work file, as a run writes it."""
    target = tmp_path / "work" / "traffic.arrow"
    write_arrow(stream_logs([log]), target)
    return target


def _read_back(target: Path) -> list[Exchange]:
    """The exchanges of a work file, as a run holds them."""
    return [ex for _, ex in iter_file_exchanges(target)]


def _held(build: Callable[[], list[Any]]) -> tuple[list[Any], int]:
    """What ``build`` returns and the bytes it still holds (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return built, held


def _own_text(ex: Exchange) -> int:
    """The bytes of what is an exchange's own: its id, question and answers (the system prompt,
    model and feature names are shared by every exchange)."""
    assert ex.response is not None
    own = [ex.id, ex.request.messages[-1]["content"], ex.response.text or ""]
    own += [c.arguments for c in ex.response.tool_calls]
    return sum(len(s.encode()) + 49 for s in own)  # a str object's header: 49 bytes


def test_an_exchange_read_back_costs_its_own_text_and_a_bounded_overhead(tmp_path: Path) -> None:
    n = 400
    target = _work_file(_log(tmp_path, n), tmp_path)
    _read_back(target)  # once before measuring: what it imports is not held per exchange
    exchanges, held = _held(lambda: _read_back(target))
    assert len(exchanges) == n
    own = sum(_own_text(ex) for ex in exchanges) / n
    per_exchange = held / n
    # every exchange validated again, with a copy of the 3.9 KB system prompt and a set of
    # field names per record, held about 10 KB here; now its own text and 2.7 KB
    assert per_exchange < own + 4_000, (per_exchange, own)
    system = [ex.request.messages[0]["content"] for ex in exchanges]
    assert all(s is system[0] for s in system)  # one system prompt, not one per exchange


def test_a_replayed_answer_costs_its_text_and_a_bounded_overhead() -> None:
    n = 1_000
    bodies = [
        {
            "model": "candidate-model",
            "choices": [
                {
                    "message": {"role": "assistant", "content": f"answer {i:05d} " * 8},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940},
        }
        for i in range(n)
    ]
    ids = [f"ex-{i}" for i in range(n)]

    def build() -> list[ReplayResult]:
        return [
            ReplayResult(
                exchange_id=ids[i],
                candidate="c",
                response=Response.from_chat_completion(body, latency_ms=12.5),
                attempts=1,
                status=200,
                latency_ms=12.5,
            )
            for i, body in enumerate(bodies)
        ]

    results, held = _held(build)
    text = sum(len((r.response.text or "").encode()) + 49 for r in results if r.response) / n
    # with a set of field names of its own in each of its three records (result, response,
    # usage) an answer held 3.3 KB besides its text; now 1.1 KB
    assert held / n < text + 1_500, (held / n, text)


def test_exchanges_read_back_without_validation_equal_the_validated_ones(tmp_path: Path) -> None:
    """What the run holds is exactly what reading the logs gives: same values, same types,
    same JSON (tool calls, gold labels, int and float latencies, timestamps, metadata)."""
    log = _log(tmp_path, 30)
    for path in (log, DEMO):
        read = read_logs([path]).exchanges
        back = _read_back(_work_file(path, tmp_path / path.stem))
        assert [e.id for e in back] == [e.id for e in read]
        for a, b in zip(read, back, strict=True):
            assert b == a
            assert b.model_dump_json() == a.model_dump_json()
            assert b.request == a.request and type(b.request) is type(a.request)
            if a.response is not None:
                assert b.response is not None
                assert type(b.response.latency_ms) is type(a.response.latency_ms)
                assert b.response.tool_calls == a.response.tool_calls


def test_records_share_one_set_of_field_names_that_assignment_leaves_alone() -> None:
    a = Response(text="a")
    b = Response(text="b", model="m", finish_reason="stop")
    assert a.model_fields_set is b.model_fields_set
    a.text = "changed"  # as pydantic does: the name is added to the set, where it already is
    assert b.model_fields_set == set(Response.model_fields)
    assert b.text == "b" and a.model_copy(update={"text": "c"}).text == "c"


def test_a_trusted_record_takes_its_defaults_as_validation_does_without_asking_pydantic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # records read back from the run's own files are built without validation (trusted); a
    # field left out takes its default, made without FieldInfo.get_default, which inspects a
    # factory's signature at every call (~0.1 ms a record)
    from pydantic.fields import FieldInfo

    from migrate_eval.core import records

    monkeypatch.setattr(records, "_DEFAULTS", {})

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("FieldInfo.get_default called")

    monkeypatch.setattr(FieldInfo, "get_default", refused)
    source = records.trusted(records.Source, file="f", line=1, format="chat-jsonl")
    a = records.trusted(Response, text="a")
    b = records.trusted(Response, text="b", finish_reason="stop")
    ex = records.trusted(Exchange, id="e1", source=source, request={"messages": []})
    monkeypatch.undo()
    assert a == Response(text="a") and b == Response(text="b", finish_reason="stop")
    assert a.tool_calls == [] and a.tool_calls is not b.tool_calls  # a list each
    assert ex == Exchange(id="e1", source=source, request={"messages": []})
    assert (
        ex.metadata == {}
        and ex.model_dump_json() == Exchange.model_validate(ex.model_dump()).model_dump_json()
    )


def test_the_traffic_pass_holds_a_few_hundred_bytes_per_logged_exchange(tmp_path: Path) -> None:
    """What a run keeps of every logged exchange while it reads the logs (ids, request keys,
    timestamps, where each is): not an object per value."""
    n = 3_000
    log = _log(tmp_path, n)
    read_traffic([("auto", None, [log])], tmp_path / "warm")  # imports, caches: not per exchange
    traffic, held = _held(lambda: [read_traffic([("auto", None, [log])], tmp_path / "work")])
    assert len(traffic[0].order) == n
    # a (file, row) tuple in a dict by id and an (id, key, timestamp) tuple each held 440
    # bytes an exchange here; arrays hold 240
    assert held / n < 330, held / n
    pairs = traffic[0].duplicate_pairs(traffic[0].plan.assignment.values())
    assert pairs == {}  # every request differs
    assert sorted(traffic[0].load(["ex-7", "ex-2999", "nope"])) == ["ex-2999", "ex-7"]


def _blob_data(n: int) -> dict[str, Any]:
    """The exchange browser's data (report.html) for ``n`` exchanges: hostile markup, line
    separators, control characters and an emoji (4 bytes a character for the whole text)."""
    return {
        "ids": [f"ex-{i}" for i in range(n)],
        "user": [f'question {i}: </script><b> & \u2028 \u001f "q" \\ é 😀' for i in range(n)],
        "parity": [[0.125 if i % 3 else None for i in range(n)], [1.0] * n],
        "status": [[i % 4 for i in range(n)]],
    }


def test_the_report_s_exchange_data_is_written_without_copies_of_it() -> None:
    """The exchange browser's JSON is the largest string a run makes (report.html): written
    with ``json.dumps`` (one string per token until joined) and escaped with ``str.replace``
    (a copy each) it peaked at 2.7 times its size, now 1.7."""
    from migrate_eval.report.explorer import _blob_text, embed_json

    data = _blob_data(20_000)
    expected = embed_json(
        json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    )
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        text = _blob_text(data)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert text == expected  # the same text, byte for byte
    assert peak < 2.2 * sys.getsizeof(text), peak / sys.getsizeof(text)
    # what orjson refuses takes the json.dumps path, with the same result
    odd = {"user": ["lone \ud800 surrogate <"], "n": [2**70]}
    assert _blob_text(odd) == embed_json(json.dumps(odd, ensure_ascii=False, separators=(",", ":")))


_FREED = """
import json, os
import numpy as np

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def fragment():
    # 100 blocks of 1 MiB, every tenth kept: nine holes of 9 MiB, the heap's top still in use
    blocks = [np.ones(1 << 20, np.uint8) for _ in range(100)]
    kept = blocks[9::10]
    del blocks
    return kept

big = np.ones(24 << 20, np.uint8)
del big  # a mapped block freed: glibc now takes blocks up to 24 MiB from the heap
start = rss()
kept = fragment()
freed = rss()
from migrate_eval.core.memory import return_freed_memory
done = return_freed_memory()
trimmed = rss()
kept2 = fragment()  # the next stage's blocks fill the holes again
again = rss()
return_freed_memory()
after = rss()
print(json.dumps({"done": done, "start": start, "freed": freed, "trimmed": trimmed,
                  "again": again, "after": after}))
"""


def test_memory_freed_in_the_middle_of_the_heap_goes_back_to_the_system() -> None:
    # a large run frees blocks of a few MiB at every stage; glibc kept them (in holes of its
    # heap) counted in the run's resident memory: ~120 MiB at the peak of 1M x 2 exchanges
    import os
    import subprocess

    if not sys.platform.startswith("linux"):
        pytest.skip("resident memory read from /proc (Linux)")
    out = subprocess.run(
        [sys.executable, "-c", _FREED],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},  # glibc's own
    )
    m = json.loads(out.stdout)
    if not m["done"]:
        pytest.skip("not glibc's allocator: nothing to give back")
    mib = 1 << 20
    assert m["freed"] - m["start"] > 80 * mib  # the holes stayed resident (the problem)
    assert m["freed"] - m["trimmed"] > 60 * mib  # given back
    assert m["again"] - m["trimmed"] > 60 * mib  # the next stage's holes, resident
    assert m["again"] - m["after"] > 60 * mib  # given back at the end of that stage
