"""``ingest_to_dataset`` on ``chat-jsonl``: the fast path (no pydantic objects for the common
line) and the two-process split of large files give exactly the dataset, the summary and the
issues that reading every line with the full reader gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

import migrate_eval.ingest.reader as reader_mod
from migrate_eval.core.errors import BadLineError
from migrate_eval.ingest import _builder, ingest_to_dataset, iter_exchanges, read_logs
from migrate_eval.ingest._rows import ROW_COLUMNS, exchange_row


@pytest.fixture(autouse=True, params=["compiled", "python"])
def builder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the compiled builder and with the Python one (see
    migrate_eval/ingest/_builder.py); the worker process of a split read inherits the choice."""
    if request.param == "compiled":
        if _builder._fastrows is None:
            pytest.skip("the C extension is not built (no C compiler)")
        monkeypatch.delenv("MIGRATE_EVAL_PURE_PYTHON", raising=False)
    else:
        monkeypatch.setenv("MIGRATE_EVAL_PURE_PYTHON", "1")
    assert _builder.compiled() == (request.param == "compiled")
    return str(request.param)


def _completion(text: Any = "ok", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    message.update(extra.pop("message", {}))
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_730_000_123,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        **extra,
    }


def _line(i: int, **changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": f"req-{i}",
        "timestamp": 1_730_000_000 + i,
        "latency_ms": 250.5,
        "metadata": {"feature": "faq"},
        "request": {
            "model": "gpt-4o-mini",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"question {i}"},
            ],
        },
        "response": _completion(f"answer {i}"),
    }
    for key, value in changes.items():
        if value is None and key.startswith("-"):
            line.pop(key[1:], None)
        else:
            line[key] = value
    return line


def _variants() -> list[Any]:
    """Common lines, every variation the fast path must get exactly right, lines it hands to
    the full reader, and bad lines."""
    req = _line(0)["request"]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    return [
        _line(1),
        _line(2, **{"-id": None}),  # id from the response
        _line(3, **{"-id": None, "response": None}),  # id from file and line
        _line(4, id=7),  # an integer id
        _line(5, id="req-1"),  # a repeated id: renamed
        _line(6, id="req-1"),
        _line(7, request={**req, "model": None}),  # the default model fills it in
        _line(8, **{"-timestamp": None}),  # the response's created
        _line(9, timestamp=1_730_000_000.123456),
        _line(10, timestamp=1_730_000_000_123),  # milliseconds
        _line(11, timestamp="2024-10-27T03:33:20+02:00"),
        _line(12, **{"-timestamp": None, "created_at": "2024-10-27 03:33:20"}),
        _line(13, latency_ms=300),
        _line(14, **{"-latency_ms": None, "duration_ms": 12}),
        _line(15, request={**req, "metadata": {"team": "a", "feature": "x"}}),
        _line(16, tags="beta"),
        _line(17, tags={"k": "v"}, **{"-metadata": None}),
        _line(18, gold="yes"),
        _line(19, label={"answer": 4}),
        _line(20, response=None),
        _line(21, response=_completion(None, message={"tool_calls": [call]})),
        _line(22, response=_completion([{"type": "text", "text": "parts"}])),
        _line(23, response={**_completion(), "choices": _completion()["choices"] * 2}),
        _line(24, response={"error": {"code": "rate_limit", "message": "slow down"}}),
        _line(25, response={"status_code": 200, "body": _completion("wrapped")}),
        _line(26, response=_completion(), **{"-metadata": None}),
        _line(27, response={**_completion(), "usage": {"input_tokens": 3, "output_tokens": 4}}),
        _line(28, response={**_completion(), "usage": None}),
        _line(29, response=_completion(message={"refusal": "no"})),
        _line(30, request={"body": {"model": "m", "messages": req["messages"]}}),
        _line(31, request={"model": "gpt-4o", "input": "hello"}),
        _line(32, request={**req, "messages": req["messages"] + [{"role": "user"}]}),
        _line(33, response={**_completion(), "usage": {"prompt_tokens": 5.0}}),
        _line(34, request={**req, "tools": [{"type": "function", "function": {"name": "f"}}]}),
        _line(35, response=_completion(message={"function_call": {"name": "g"}})),
        # bad lines: each issue names file, line and field
        _line(40, request={**req, "messages": "hi"}),
        _line(41, request={**req, "messages": [{"role": "robot", "content": "x"}]}),
        _line(42, timestamp="yesterday"),
        _line(43, latency_ms="fast"),
        _line(44, response={**_completion(), "choices": []}),
        _line(45, response={**_completion(), "usage": {"prompt_tokens": "many"}}),
        _line(46, metadata=["not", "an", "object"]),
        _line(47, request={**req, "model": 4}),
        _line(48, response=_completion(5)),
        _line(49, tags=5),
        [1, 2],
        "{not json",
        _line(50),
        # tool calls (after the bad lines, whose line numbers the test names)
        _line(51, response=_completion(None, message={"tool_calls": [call, {**call, "id": None}]})),
        _line(
            52,
            response=_completion(
                None,
                message={"tool_calls": [{"id": "n", "function": {"name": "g", "arguments": None}}]},
            ),
        ),
        _line(
            53,
            response=_completion(
                None, message={"tool_calls": [{"id": "m", "function": {"name": "g"}}]}
            ),
        ),
        _line(
            54,
            response=_completion(
                None,
                message={
                    "tool_calls": [
                        {
                            "id": "b",
                            "function": {
                                "name": "h",
                                "arguments": '{"n": 123456789012345678901234567890, "x": NaN}',
                            },
                        }
                    ]
                },
            ),
        ),
        _line(
            55,
            response=_completion(
                None,
                message={
                    "tool_calls": [
                        {"id": "p", "function": {"name": "h", "arguments": '{"cut": "sho'}}
                    ]
                },
            ),
        ),
        _line(
            56,
            response=_completion(
                None,
                message={
                    "tool_calls": [
                        {"id": "q", "function": {"name": "h", "arguments": {"as": "object"}}}
                    ]
                },
            ),
        ),
        _line(
            57,
            response=_completion(
                None,
                message={"tool_calls": [{"id": 5, "function": {"name": "h", "arguments": "{}"}}]},
            ),
        ),
    ]


def _write(path: Path, items: list[Any], copies: int = 1) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("\ufeff")  # a BOM before the first line
        for _ in range(copies):
            for item in items:
                fh.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
            fh.write("\n")  # blank lines count for line numbers, not as lines read
    return path


_JSON_COLUMNS = {
    i for i, name in enumerate(ROW_COLUMNS) if name in ("request", "response", "metadata")
}


def _canonical(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row with its JSON columns written by orjson (same values, same bytes; an integer
    stays an integer and a float a float)."""
    return tuple(
        orjson.dumps(orjson.loads(v)).decode() if i in _JSON_COLUMNS and v is not None else v
        for i, v in enumerate(row)
    )


def _check_same_as_full_reader(path: Path, tmp_path: Path, **kwargs: Any) -> None:
    expected = read_logs([path], default_model="dflt")
    ds, summary = ingest_to_dataset([path], tmp_path / "cache", default_model="dflt", **kwargs)
    assert summary == expected.summary()
    assert summary.lines_read == summary.exchanges + summary.skipped
    assert len(ds) == len(expected.exchanges)
    # column by column, the rows the full reader's exchanges give (the JSON columns hold the
    # same JSON values, written by orjson or taken from the line as it was logged)
    table = ds.data.table
    table.validate(full=True)
    for i, ex in enumerate(expected.exchanges):
        row = _canonical(exchange_row(ex))
        got = {name: table.column(name)[i].as_py() for name in table.column_names}
        assert got["task"] is None
        assert _canonical(tuple(got[name] for name in table.column_names[:-1])) == row, ex.source
    back = list(iter_exchanges(ds))
    assert [e.model_dump() for e in back] == [e.model_dump() for e in expected.exchanges]


def test_fast_path_matches_the_full_reader(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.jsonl", _variants())
    result = read_logs([path], default_model="dflt")
    issues = {issue.line: issue for issue in result.skipped}
    # the bad lines keep their precise issue
    assert str(issues[36]).startswith(f"{path}:36: field 'request.messages': wrong type")
    assert issues[37].field == "request.messages[0].role"
    assert issues[38].field == "timestamp"
    assert issues[39].field == "latency_ms"
    assert issues[40].field == "response.choices"
    assert issues[41].field.startswith("response.usage")
    assert issues[42].field == "metadata"
    assert issues[43].field == "request.model"
    assert issues[44].field == "response.choices[0].message.content"
    assert issues[45].field == "tags"
    assert issues[46].reason.startswith("not a JSON object")
    assert issues[47].reason.startswith("invalid JSON")
    assert issues[55].field == "response.choices[0].message.tool_calls[0].id"  # a number
    assert set(issues) == {*range(36, 48), 55}
    _check_same_as_full_reader(path, tmp_path)


def test_two_process_split_matches_the_full_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ids repeat across the two halves, lines without ids take their line number
    path = _write(tmp_path / "big.jsonl", _variants(), copies=6)
    monkeypatch.setattr(reader_mod, "PARALLEL_MIN_BYTES", 0)
    calls: list[int] = []
    real = reader_mod.LogStream._read_chat_split

    def spy(self: Any, p: Path, fmt: Any, split: int) -> Any:
        calls.append(split)
        return real(self, p, fmt, split)

    monkeypatch.setattr(reader_mod.LogStream, "_read_chat_split", spy)
    _check_same_as_full_reader(path, tmp_path, processes=2)
    assert calls and 0 < calls[0] < path.stat().st_size
    assert not list((tmp_path / "cache").glob("part-*"))  # the worker's file is removed


def test_a_failing_worker_process_is_replaced_by_reading_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "big.jsonl", _variants(), copies=3)
    monkeypatch.setattr(reader_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(reader_mod, "_WORKER_CODE", "import sys; sys.exit(3)")
    _check_same_as_full_reader(path, tmp_path, processes=2)


def test_strict_dataset_ingest_names_the_first_bad_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_mod, "PARALLEL_MIN_BYTES", 0)
    path = _write(tmp_path / "log.jsonl", [_line(1), _line(2, latency_ms="slow"), _line(3)])
    with pytest.raises(BadLineError) as info:
        ingest_to_dataset([path], tmp_path / "cache", strict=True, processes=2)
    assert info.value.issue.line == 2 and info.value.issue.field == "latency_ms"
    assert not list((tmp_path / "cache").glob("*.tmp*"))


def test_common_lines_take_the_fast_path() -> None:
    from migrate_eval.ingest._common import LineContext
    from migrate_eval.ingest.formats import chat_jsonl

    ctx = LineContext("log.jsonl", "chat-jsonl")
    ctx.line = 1
    common = [_line(1), _line(2, **{"-id": None}), _line(9, timestamp=1.5e9), _line(20)]
    common.append(_line(16, tags="beta", response=None))
    assert all(chat_jsonl.fast_row(line, ctx) is not None for line in common)
    # tool calls with their arguments as text take it; arguments as an object (a log that
    # parsed them) are left to the full reader
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert chat_jsonl.fast_row(_line(21, response=_completion(message={"tool_calls": [call]})), ctx)
    parsed = {**call, "function": {"name": "f", "arguments": {"a": 1}}}
    assert (
        chat_jsonl.fast_row(_line(22, response=_completion(message={"tool_calls": [parsed]})), ctx)
        is None
    )


@pytest.mark.parametrize("compress", ["plain", "gzip", "gzip-cut"])
def test_long_messages_and_compressed_files_match_the_full_reader(
    tmp_path: Path, compress: str
) -> None:
    import gzip

    big = "x" * (10 * 1024 * 1024)  # a 10 MB message: a record batch of its own
    items = [_line(i) for i in range(3000)]
    items[5] = _line(
        5, request={**_line(5)["request"], "messages": [{"role": "user", "content": big}]}
    )
    items[6] = _line(6, response=_completion(big))
    data = _write(tmp_path / "src.jsonl", [*items, *_variants()]).read_bytes()
    if compress == "plain":
        path = tmp_path / "log.jsonl"
        path.write_bytes(data)
    else:
        blob = gzip.compress(data)
        path = tmp_path / "log.jsonl.gz"
        path.write_bytes(blob if compress == "gzip" else blob[: len(blob) * 3 // 4])
    _check_same_as_full_reader(path, tmp_path)
    if compress == "gzip-cut":
        ds, summary = ingest_to_dataset([path], tmp_path / "again")
        assert summary.skipped_by_reason.get("truncated file") == 1
        assert 0 < len(ds) < 3000


def test_a_failed_write_stops_ingest_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa

    path = _write(tmp_path / "log.jsonl", [_line(i) for i in range(5000)])
    real_new_stream = pa.ipc.new_stream
    written: list[int] = []

    class FullDisk:
        def __init__(self, sink: Any, schema: Any) -> None:
            self._inner = real_new_stream(sink, schema)

        def write_batch(self, batch: Any) -> None:
            if written:
                raise OSError(28, "No space left on device")
            written.append(batch.num_rows)
            self._inner.write_batch(batch)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._inner.close()

    monkeypatch.setattr(pa.ipc, "new_stream", FullDisk)
    with pytest.raises(OSError, match="No space left"):
        ingest_to_dataset([path], tmp_path / "cache", batch_rows=100)
    assert written == [100]  # the first batch went through, the second failed
    assert not list((tmp_path / "cache").iterdir())  # no partial file is left


def test_the_documented_columns_are_the_schema() -> None:
    from migrate_eval.ingest.dataset import COLUMNS, schema

    assert list(COLUMNS) == schema().names


def test_a_row_holding_what_orjson_cannot_write_round_trips() -> None:
    # an integer beyond 64 bits (only a reader that parsed JSON with the standard library
    # makes one) is written by the standard library instead of failing the row, and reads
    # back as a float
    from migrate_eval.core.records import Exchange, Source
    from migrate_eval.ingest._rows import ROW_COLUMNS, exchange_row
    from migrate_eval.ingest.dataset import exchange_from_row

    big = 123456789012345678901234567890
    ex = Exchange(
        id="e",
        source=Source(file="f", line=1, format="t"),
        request={"model": "m", "seed": big, "messages": [{"role": "user", "content": "x"}]},
        metadata={"n": big},
    )
    row = exchange_row(ex)
    back = exchange_from_row({**dict(zip(ROW_COLUMNS, row, strict=True)), "timestamp": None})
    assert back.request["seed"] == float(big) and back.metadata == {"n": float(big)}
    assert back.request["messages"] == ex.request["messages"] and back.id == "e"
