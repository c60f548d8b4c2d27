"""The compiled ``chat-jsonl`` fast path (``migrate_eval/ingest/_fastrows.c``) against the
Python one: every line the compiled scanner takes, ``orjson`` parses and
``chat_jsonl.fast_row`` reads to the same row; the lines it leaves alone go to the Python
reader; thousands of mutated real lines and generated lines never break that rule."""

from __future__ import annotations

import json
import random
import shutil
import sysconfig
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_eval.ingest import _builder, ingest_to_dataset
from migrate_eval.ingest._common import LineContext
from migrate_eval.ingest._rows import ROW_COLUMNS
from migrate_eval.ingest.formats import chat_jsonl
from tests.conftest import SHARED_DATA

_JSON = {ROW_COLUMNS.index(name) for name in ("request", "response", "metadata")}
_TS = ROW_COLUMNS.index("timestamp")

needs_extension = pytest.mark.skipif(
    _builder._fastrows is None, reason="the C extension is not built (no C compiler)"
)


def test_the_extension_is_built_where_a_c_compiler_is() -> None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) here: ingest runs its Python fast path")
    assert _builder._fastrows is not None, "pip install should have built _fastrows.c"


def _ctx() -> LineContext:
    ctx = LineContext("log.jsonl", "chat-jsonl")
    ctx.line = 1
    return ctx


def _canonical(row: tuple[Any, ...]) -> tuple[Any, ...]:
    out = list(row)
    for i in _JSON:
        if out[i] is not None:
            out[i] = orjson.dumps(orjson.loads(out[i])).decode()
    ts = out[_TS]
    if isinstance(ts, datetime):
        out[_TS] = _builder.timestamp_us(ts)
    return tuple(out)


def c_row(line: bytes) -> tuple[Any, ...] | None:
    """The row the compiled builder makes of ``line``, or None when it does not take it."""
    builder = _builder.CRowBuilder(_ctx(), set())
    if builder.add_lines([line], 0, 1) == 0:
        assert builder.rows == 0 and builder.lines == 0
        return None
    assert builder.rows == 1 and builder.lines == 1
    batch = builder.take()
    batch.validate(full=True)
    return _canonical(tuple(batch.column(name)[0].as_py() for name in ROW_COLUMNS))


def py_row(line: bytes) -> tuple[Any, ...] | None:
    """The row ``chat_jsonl.fast_row`` makes of ``line``, or None."""
    record = orjson.loads(line)
    if type(record) is not dict:
        return None
    row = chat_jsonl.fast_row(record, _ctx())
    return None if row is None else _canonical(row)


def check(line: bytes) -> bool:
    """The rule: a line the compiled builder takes is valid JSON that ``fast_row`` reads to
    the same row. Returns whether it was taken."""
    got = c_row(line)
    if got is None:
        return False
    try:
        expected = py_row(line)
    except ValueError as e:  # pragma: no cover - the failure this test exists for
        raise AssertionError(f"taken, but orjson rejects it ({e}): {line!r}") from None
    assert expected is not None, f"taken, but fast_row does not take it: {line!r}"
    assert got == expected, line
    return True


def _line(i: int = 1, **changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": f"req-{i}",
        "timestamp": 1_730_000_000 + i,
        "latency_ms": 250.5,
        "metadata": {"feature": "faq", "n": 3, "tags": ["a", "b"], "x": None},
        "request": {
            "model": "gpt-4o-mini",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f'question {i}: caf\u00e9 \U0001f600 "q" \\ /'},
            ],
        },
        "response": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_730_000_123,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Line 1\nLine 2\t\u2028",
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 3,
                "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
    }
    return _changed(line, changes)


_DROP = object()
_CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "lookup", "arguments": '{"sku": "NW-1", "qty": 2}'},
}


def _changed(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``record`` with keys set to new values, or removed where the value is ``_DROP``."""
    for key, value in changes.items():
        if value is _DROP:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def _response(**changes: Any) -> dict[str, Any]:
    resp = _line()["response"]
    msg = _changed(dict(resp["choices"][0]["message"]), changes.pop("message", {}))
    choice = {**resp["choices"][0], "message": msg}
    return _changed({**resp, "choices": [choice]}, changes)


def _dumps(record: Any, style: str = "compact") -> bytes:
    if style == "compact":
        return orjson.dumps(record) + b"\n"
    if style == "ascii":  # Python's json default: \uXXXX escapes, surrogate pairs for emoji
        return json.dumps(record).encode() + b"\n"
    if style == "spaced":
        return json.dumps(record, ensure_ascii=False, indent=None).encode() + b"\r\n"
    return json.dumps(record, ensure_ascii=False, separators=(" ,", " : ")).encode() + b"  \t\n"


def _usage(**changes: Any) -> dict[str, Any]:
    return _changed(dict(_line()["response"]["usage"]), changes)


TAKEN = [
    _line(),
    _line(id="req/\u00e9\U0001f600"),  # escaped in the ascii style
    _line(id=_DROP),  # the response's id
    _line(timestamp=_DROP),  # the response's created
    _line(timestamp=1_730_000_000.5),  # float seconds (rounded as fromtimestamp rounds)
    _line(timestamp=1_730_000_000.1234565),
    _line(timestamp=1_730_000_000_123),  # milliseconds
    _line(timestamp=1_730_000_000_123.5),
    _line(timestamp="2024-10-27T03:33:20+02:00"),  # ISO 8601
    _line(timestamp="2024-10-27 03:33:20"),  # naive: UTC
    _line(timestamp="2024-10-27T03:33:20Z"),
    _line(timestamp="2024-10-27T03:33:20.5-07:30"),
    _line(timestamp="2024-02-29T23:59:59.999999+00:00"),
    _line(timestamp="1969-07-20T20:17:40Z"),  # before the epoch
    _line(timestamp=None, created_at=1_700_000_000),
    _line(latency_ms=300),  # an integer latency is a float in the response
    _line(latency_ms=_DROP, duration_ms=12.25),
    _line(latency_ms=None, duration_ms=12),  # latency_ms wins even when null
    _line(metadata=_DROP),
    _line(metadata={}),
    _line(gold='yes "quoted"\n'),
    _line(label="positive"),
    _line(gold=None, label="negative"),
    _line(response=None),
    _line(response=_DROP, timestamp=_DROP),  # no time at all
    _line(response=_response(usage=None)),
    _line(response=_response(usage=_DROP)),
    _line(response=_response(usage={"input_tokens": 3, "output_tokens": 4})),
    _line(
        response=_response(
            usage=_usage(prompt_tokens_details={}, input_tokens_details={"cached_tokens": 2})
        )
    ),
    _line(response=_response(usage=_usage(prompt_tokens_details=None, input_tokens_details=None))),
    _line(
        response=_response(
            usage=_usage(
                completion_tokens_details={}, output_tokens_details={"reasoning_tokens": 9}
            )
        )
    ),
    _line(response=_response(usage=_usage(prompt_tokens=None, total_tokens=_DROP))),
    _line(response=_response(message={"content": None, "refusal": "I can't help with that."})),
    _line(response=_response(message={"tool_calls": []})),
    _line(
        response=_response(message={"content": None, "tool_calls": [_CALL, {**_CALL, "id": "c2"}]})
    ),
    _line(
        response=_response(
            message={
                "content": None,
                "tool_calls": [{"id": None, "type": "function", "function": {"name": "f"}}],
            }
        )
    ),
    _line(
        response=_response(
            message={
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": None}}],
            }
        )
    ),
    _line(
        response=_response(
            message={
                "content": None,
                "tool_calls": [
                    {
                        "id": "x",
                        "function": {
                            "name": "f\u00e9",
                            "arguments": '{"q": "caf\u00e9 \\"x\\"", "n": 1e400}',
                        },
                    }
                ],
            }
        )
    ),
    _line(
        response=_response(
            message={
                "content": None,
                "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": '{"cut": "sho'}}],
            }
        )
    ),
    _line(response=_response(message={"tool_calls": None, "function_call": None})),
    _line(response=_response(model=None)),
    _line(response=_response(model=_DROP, id=None)),
    _line(
        request={
            **_line()["request"],
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
            ],
        }
    ),
    _line(
        request={
            **_line()["request"],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        }
    ),
    _line(
        request={
            **_line()["request"],
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "42"},
            ],
        }
    ),
    _line(
        request={
            **_line()["request"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"type": "number", "minimum": -1.5e-3}},
                    },
                },
            },
        }
    ),
    _line(request={**_line()["request"], "metadata": None}),
    _line(extra={"deep": [[[[{"a": [1, 2.5, -0.0, 1e30, True, False, None]}]]]]}),
]

LEFT = [
    _line(tags="beta"),  # merged into the metadata by fast_row
    _line(request={**_line()["request"], "metadata": {"team": "a"}}),
    _line(request={**_line()["request"], "model": None}),  # the default model fills it in
    _line(request={k: v for k, v in _line()["request"].items() if k != "model"}),
    _line(timestamp="2024-10-27"),  # ISO 8601 forms datetime.fromisoformat reads alone
    _line(timestamp="20241027T033320"),
    _line(timestamp="2024-10-27T03:33:20.1234567"),
    _line(timestamp="2024-10-27T03:33:20+0200"),
    _line(timestamp=" 2024-10-27T03:33:20"),
    _line(timestamp="2024-10-27T24:00:00"),  # invalid: the full reader names it
    _line(timestamp="2024-02-30T00:00:00"),
    _line(timestamp="yesterday"),
    _line(timestamp=-5.5),
    _line(timestamp=1e11),
    _line(timestamp=10**15),  # milliseconds past year 9999
    _line(timestamp=True),
    _line(id=7),
    _line(id=""),
    _line(id=_DROP, custom_id="c-1"),
    _line(latency_ms="fast"),
    _line(
        response=_response(
            message={
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": {"as": "object"}},
                    }
                ]
            }
        )
    ),
    _line(
        response=_response(
            message={
                "tool_calls": [
                    {"id": 5, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]
            }
        )
    ),
    _line(
        response=_response(
            message={
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": 5, "arguments": "{}"}}
                ]
            }
        )
    ),
    _line(response=_response(message={"tool_calls": [{"id": "c", "type": "function"}]})),
    _line(response=_response(message={"tool_calls": ["not a call"]})),
    _line(response=_response(message={"tool_calls": {"not": "a list"}})),
    _line(response=_response(message={"tool_calls": [_CALL] * 65})),  # more than the scanner holds
    _line(response=_response(message={"function_call": {"name": "g", "arguments": "{}"}})),
    _line(response=_response(message={"content": [{"type": "text", "text": "parts"}]})),
    _line(response={**_response(), "choices": _response()["choices"] * 2}),
    _line(response={**_response(), "choices": []}),
    _line(response=_response(usage=_usage(prompt_tokens=5.0))),
    _line(response=_response(usage=_usage(prompt_tokens_details="x"))),
    _line(response=_response(usage="n/a")),
    _line(response="a text"),
    _line(metadata=["not", "an", "object"]),
    _line(gold={"answer": 4}),
    _line(request={**_line()["request"], "messages": []}),
    _line(request={**_line()["request"], "messages": [{"role": "robot", "content": "x"}]}),
    _line(request={**_line()["request"], "messages": [{"content": "no role"}]}),
    _line(request={**_line()["request"], "tools": {"not": "a list"}}),
    _line(request={"body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}),
]


@needs_extension
@pytest.mark.parametrize("style", ["compact", "ascii", "spaced", "odd"])
def test_common_lines_are_taken_and_give_fast_rows_row(style: str) -> None:
    for record in TAKEN:
        line = _dumps(record, style)
        assert check(line), f"not taken: {line!r}"


@needs_extension
@pytest.mark.parametrize("style", ["compact", "ascii"])
def test_other_lines_are_left_to_python(style: str) -> None:
    for record in LEFT:
        line = _dumps(record, style)
        assert c_row(line) is None, line


RAW_LEFT = [
    b"\xef\xbb\xbf" + orjson.dumps(_line()),  # a BOM: the Python reader strips it
    b'{"id": "a", "id": "b"' + orjson.dumps(_line())[1:],  # repeated keys: last one wins
    b'{"request": {"model": "x", "messages": [{"role": "user"}]}, ' + orjson.dumps(_line())[1:],
    orjson.dumps(_line()).replace(b'"role":"user"', b'"role":"user","role":"user"'),
    orjson.dumps(_line()).replace(b'"id":"req-1"', b'"\\u0069d":"req-1"'),  # an escaped key
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \\ud83d brief."),  # a lone surrogate
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \\ude00 brief."),
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \xed\xa0\x80 brief."),  # UTF-8 surrogate
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \xc0\xaf brief."),  # overlong
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \xf4\x90\x80\x80 brief."),  # > U+10FFFF
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \xe2\x82 brief."),  # cut short
    orjson.dumps(_line()).replace(b"Be brief.", b"Be\x01brief."),  # a raw control character
    orjson.dumps(_line()).replace(b"Be brief.", b"Be \\x brief."),  # a bad escape
    orjson.dumps(_line()).replace(b'"temperature":0.2', b'"temperature":02'),
    orjson.dumps(_line()).replace(b'"temperature":0.2', b'"temperature":.2'),
    orjson.dumps(_line()).replace(b'"temperature":0.2', b'"temperature":1e400'),
    orjson.dumps(_line()).replace(b'"temperature":0.2', b'"temperature":NaN'),
    orjson.dumps(_line()).replace(b'"temperature":0.2', b'"temperature":12345678901234567890'),
    orjson.dumps(_line()).replace(b'"temperature":0.2', b'"temperature":0.2,'),
    orjson.dumps(_line()).replace(b'"latency_ms":250.5', b'"latency_ms":-0'),
    orjson.dumps(_line()) + b" trailing",
    orjson.dumps(_line())[:-1],  # cut short
    orjson.dumps(_line()).replace(b'"extra"', b'"extra"', 1)[:200],
    b"[" + orjson.dumps(_line()) + b"]",
    b'{"request": ' + b'{"a": [' * 70 + b"]}" * 70 + b"}",  # deeper than the scanner goes
    b"{}",
    b"",
    b"null",
]


@needs_extension
def test_raw_lines_that_are_left_to_python() -> None:
    for line in RAW_LEFT:
        assert c_row(line) is None, line


@needs_extension
def test_escaped_ids_models_and_gold_are_decoded() -> None:
    record = _line(gold="a\u00e9\U0001f600\n")
    record["id"] = "id-\u00e9-\U0001f600-\t-/"
    record["request"]["model"] = "m\u00fcdel"
    row = c_row(json.dumps(record).encode())  # every non-ASCII character escaped
    assert row is not None
    assert row[0] == "id-\u00e9-\U0001f600-\t-/"
    assert row[5] == "m\u00fcdel"
    assert row[10] == "a\u00e9\U0001f600\n"
    assert check(json.dumps(record).encode())


@needs_extension
def test_repeated_ids_are_left_to_the_caller_which_renames_them() -> None:
    seen: set[str] = set()
    builder = _builder.CRowBuilder(_ctx(), seen)
    lines = [orjson.dumps(_line(1)), orjson.dumps(_line(2)), orjson.dumps(_line(1))]
    assert builder.add_lines(lines, 0, 1) == 2  # the third line repeats req-1
    assert seen == {"req-1", "req-2"}
    assert builder.add_lines(lines, 3, 1) == 3
    # without a set of seen ids (the worker process of a split read), ids are kept as read
    keep = _builder.CRowBuilder(_ctx(), None)
    assert keep.add_lines(lines, 0, 1) == 3


@needs_extension
def test_batches_hold_nulls_rows_from_python_and_line_numbers() -> None:
    builder = _builder.CRowBuilder(_ctx(), set())
    lines = [
        orjson.dumps(_line(1, response=None, metadata=_DROP)) + b"\n",
        b"   \n",  # blank: counted for line numbers only
        orjson.dumps(_line(2, gold="g", timestamp=_DROP)) + b"\n",
    ]
    assert builder.add_lines(lines, 0, 10) == 3
    when = datetime.fromisoformat("2024-10-27T03:33:20+02:00")
    builder.add_row(
        ("py-1", "log.jsonl", 14, "chat-jsonl", when, None, "{}", None, "boom", b"{}", None)
    )
    batch = builder.take()
    batch.validate(full=True)
    rows = batch.to_pylist()
    assert [r["line"] for r in rows] == [10, 12, 14]
    assert [r["response"] is None for r in rows] == [True, False, True]
    assert rows[0]["metadata"] == "{}" and rows[0]["gold"] is None
    assert rows[1]["gold"] == "g"
    assert rows[1]["timestamp"] == datetime.fromtimestamp(1_730_000_123, tz=when.tzinfo).astimezone(
        rows[1]["timestamp"].tzinfo
    )
    assert rows[2]["timestamp"] == when and rows[2]["error"] == "boom" and rows[2]["task"] is None
    assert builder.rows == 0 and builder.lines == 2  # take() starts a new batch
    assert builder.take().num_rows == 0


@needs_extension
def test_a_full_batch_stops_add_lines() -> None:
    builder = _builder.CRowBuilder(_ctx(), None, max_rows=3, max_bytes=1 << 30)
    lines = [orjson.dumps(_line(i)) for i in range(10)]
    assert builder.add_lines(lines, 0, 1) == 3 and builder.full()
    assert builder.take().num_rows == 3
    small = _builder.CRowBuilder(_ctx(), None, max_rows=100, max_bytes=1000)
    assert small.add_lines(lines, 0, 1) == 2  # about 1,000 bytes of text


@needs_extension
def test_a_file_of_common_lines_never_leaves_the_compiled_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIGRATE_EVAL_PURE_PYTHON", raising=False)
    calls: list[Any] = []
    real = _builder.CRowBuilder.add_row

    def spy(self: Any, row: Any) -> None:
        calls.append(row)
        real(self, row)

    monkeypatch.setattr(_builder.CRowBuilder, "add_row", spy)
    # lines like the benchmark's (benchmarks/bench_ingest.py), as Python's json writes them
    path = tmp_path / "log.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(5000):
            fh.write(json.dumps(_line(i, metadata={"feature": f"f{i % 7}", "tier": "pro"})) + "\n")
    ds, summary = ingest_to_dataset([path], tmp_path / "cache")
    assert len(ds) == summary.exchanges == 5000 and not calls


# -------------------------------------------------------------------- fuzzing


def _seed_lines() -> list[bytes]:
    """Realistic lines: the cases above in every style, and real answers from AlpacaEval
    (when the shared data is there)."""
    lines = [_dumps(r, s) for r in TAKEN + LEFT for s in ("compact", "ascii", "spaced")]
    alpaca = SHARED_DATA / "alpaca_eval" / "gpt4_0613.json"
    if alpaca.exists():
        for i, r in enumerate(json.loads(alpaca.read_text(encoding="utf-8"))[:60]):
            record = _line(i, response=_response(message={"content": r["output"]}))
            record["request"]["messages"][1]["content"] = r["instruction"]
            lines.append(_dumps(record, ("compact", "ascii", "spaced")[i % 3]))
    return lines


_PALETTE = [
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b" ",
    b"\t",
    b"\n",
    b"\r",
    b"0",
    b"1",
    b"-",
    b"+",
    b".",
    b"e",
    b"E",
    b"t",
    b"n",
    b"u",
    b"null",
    b"true",
    b"\\u",
    b"\\ud83d",
    b"\\ude00",
    b"\\u00e9",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\xc3\xa9",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf0\x9f\x98\x80",
    b"\xff",
    b"\xe2\x80\xa8",
    b'""',
    b"{}",
    b"[]",
    b'"id"',
    b'"role"',
]


def _mutate(rnd: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rnd.randint(1, 3)):
        pos = rnd.randrange(len(data) + 1)
        op = rnd.random()
        if op < 0.35 and data:  # replace a byte
            data[min(pos, len(data) - 1) : min(pos, len(data) - 1) + 1] = rnd.choice(_PALETTE)
        elif op < 0.65:  # insert
            data[pos:pos] = rnd.choice(_PALETTE)
        elif op < 0.85 and data:  # delete a few bytes
            del data[pos : pos + rnd.randint(1, 4)]
        else:  # repeat a slice (repeated keys, doubled values)
            end = min(len(data), pos + rnd.randint(1, 40))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@needs_extension
def test_mutated_lines_never_break_the_rule() -> None:
    rnd = random.Random(20261203)
    seeds = _seed_lines()
    taken = 0
    for _ in range(20_000):
        taken += check(_mutate(rnd, rnd.choice(seeds)))
    # the mutations must leave plenty of lines that are still taken, or this tests little
    assert taken > 1_500, taken  # 1,926 from the built-in lines alone (no shared data)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


_text = st.text(max_size=30)


@st.composite
def _iso_times(draw: st.DrawFn) -> str:
    """ISO 8601 times in the forms logs write, and some that are not quite."""
    when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    text = when.isoformat(sep=draw(st.sampled_from(["T", " "])))
    if draw(st.booleans()):
        text = text.split(".")[0] + draw(st.sampled_from(["", ".5", ".123", ".1234567"]))
    suffix = draw(st.sampled_from(["", "Z", "+02:00", "-07:30", "+0200", "+23:59", "+24:00"]))
    return text + suffix


_timestamps = st.one_of(
    st.integers(min_value=1, max_value=10**11 - 1),
    st.integers(min_value=-5, max_value=10**16),
    st.floats(min_value=-10.0, max_value=1e13, allow_nan=False),
    _iso_times(),
    st.text(max_size=25),
)
_ints = st.integers(min_value=0, max_value=10**9)


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    """A common line (as the compiled path takes it), then up to three of its fields
    replaced by any JSON value or removed."""
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]),
            "content": st.one_of(
                _text,
                st.none(),
                st.lists(
                    st.fixed_dictionaries({"type": st.just("text"), "text": _text}), max_size=2
                ),
            ),
        },
        optional={"tool_calls": st.lists(_values, max_size=2), "name": _text},
    )
    details = st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["cached_tokens", "reasoning_tokens", "audio_tokens"]),
            _ints,
            max_size=2,
        ),
    )
    usage = st.fixed_dictionaries(
        {},
        optional={
            k: st.one_of(_ints, st.none())
            for k in (
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "input_tokens",
                "output_tokens",
            )
        }
        | {
            k: details
            for k in (
                "prompt_tokens_details",
                "input_tokens_details",
                "completion_tokens_details",
                "output_tokens_details",
            )
        },
    )
    arguments = st.one_of(
        _values.map(json.dumps),
        _text,
        st.none(),
        st.just(""),
        st.just("  "),
        st.just('{"cut": "sho'),
    )
    call = st.fixed_dictionaries(
        {"function": st.fixed_dictionaries({"name": _text}, optional={"arguments": arguments})},
        optional={"id": st.one_of(_text, st.none()), "type": st.just("function")},
    )
    answer = st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.one_of(_text, st.none())},
        optional={"refusal": st.one_of(st.none(), _text), "tool_calls": st.lists(call, max_size=3)},
    )
    choice = st.fixed_dictionaries(
        {"message": answer, "finish_reason": st.sampled_from(["stop", "length", None])},
        optional={"index": st.just(0)},
    )
    response = st.fixed_dictionaries(
        {"choices": st.lists(choice, min_size=1, max_size=1)},
        optional={
            "id": _text,
            "model": st.one_of(_text, st.none()),
            "created": st.integers(min_value=1, max_value=10**11 - 1),
            "usage": st.one_of(usage, st.none()),
        },
    )
    request = st.fixed_dictionaries(
        {"model": _text, "messages": st.lists(message, min_size=1, max_size=3)},
        optional={
            "tools": st.lists(_values, max_size=2),
            "temperature": st.floats(min_value=0, max_value=2),
            "seed": _ints,
            "stop": st.lists(_text, max_size=2),
        },
    )
    record: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {"request": request, "id": st.text(min_size=1, max_size=12)},
            optional={
                "response": st.one_of(response, st.none()),
                "timestamp": _timestamps,
                "latency_ms": st.one_of(
                    st.floats(min_value=0, max_value=1e6),
                    st.integers(min_value=0, max_value=10**12),
                ),
                "metadata": st.dictionaries(_text, _values, max_size=3),
                "gold": _text,
            },
        )
    )
    # then up to three fields changed: any JSON value, or gone
    paths = [
        ("id",),
        ("custom_id",),
        ("request_id",),
        ("timestamp",),
        ("created_at",),
        ("latency_ms",),
        ("duration_ms",),
        ("metadata",),
        ("tags",),
        ("gold",),
        ("label",),
        ("request",),
        ("response",),
        ("request", "model"),
        ("request", "messages"),
        ("request", "tools"),
        ("request", "metadata"),
        ("request", "messages", 0),
        ("request", "messages", 0, "role"),
        ("request", "messages", 0, "content"),
        ("request", "messages", 0, "tool_calls"),
        ("response", "choices"),
        ("response", "id"),
        ("response", "model"),
        ("response", "created"),
        ("response", "usage"),
        ("response", "choices", 0, "message"),
        ("response", "choices", 0, "finish_reason"),
        ("response", "choices", 0, "message", "content"),
        ("response", "choices", 0, "message", "refusal"),
        ("response", "choices", 0, "message", "tool_calls"),
        ("response", "choices", 0, "message", "function_call"),
        ("response", "usage", "prompt_tokens"),
        ("response", "choices", 0, "message", "tool_calls", 0),
        ("response", "choices", 0, "message", "tool_calls", 0, "id"),
        ("response", "choices", 0, "message", "tool_calls", 0, "function"),
        ("response", "choices", 0, "message", "tool_calls", 0, "function", "name"),
        ("response", "choices", 0, "message", "tool_calls", 0, "function", "arguments"),
        ("response", "usage", "prompt_tokens_details"),
        ("response", "usage", "input_tokens_details"),
        ("response", "usage", "completion_tokens_details"),
    ]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(st.sampled_from(paths))
        target: Any = record
        for key in path[:-1]:
            if isinstance(target, dict) and isinstance(key, str):
                target = target.get(key)
            elif isinstance(target, list) and isinstance(key, int) and len(target) > key:
                target = target[key]
            else:
                target = None
        if isinstance(target, dict):
            if draw(st.booleans()):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(_values)
        elif isinstance(target, list) and isinstance(path[-1], int) and target:
            target[0] = draw(_values)
    return record


@needs_extension
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=_records(), style=st.sampled_from(["compact", "ascii", "spaced", "odd"]))
def test_generated_lines_never_break_the_rule(record: dict[str, Any], style: str) -> None:
    try:
        line = _dumps(record, style)
    except (TypeError, ValueError):  # orjson refuses an integer beyond 64 bits: not a log line
        return
    check(line)


def test_the_python_builder_gives_the_rows_fast_row_gives() -> None:
    builder = _builder.RowBuilder(_ctx(), set())
    lines = [_dumps(_line(i)) for i in range(3)] + [b"\n", _dumps(_line(9, tags="x"))]
    lines += [_dumps(_line(1)), _dumps(_line(10, request="x"))]
    # fast_row takes the tags, not a repeated id (the caller renames it)
    assert builder.add_lines(lines, 0, 1) == 5
    assert builder.add_lines(lines, 6, 1) == 6  # nor a request that is not an object
    rows = builder.take().to_pylist()
    assert [r["line"] for r in rows] == [1, 2, 3, 5]
    assert [r["id"] for r in rows] == ["req-0", "req-1", "req-2", "req-9"]
    assert orjson.loads(rows[-1]["metadata"])["tags"] == ["x"]
    expected = py_row(lines[4])
    assert _canonical(tuple(rows[-1][k] for k in ROW_COLUMNS)[:1] + expected[1:]) == expected
    assert _canonical(tuple(rows[-1][k] for k in ROW_COLUMNS)) == (*expected[:2], 5, *expected[3:])
