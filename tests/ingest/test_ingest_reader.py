"""read_logs: paths, detection, streaming, bad lines, strict mode, counting, ids."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import BadLineError, LogFormatError
from migrate_eval.ingest import IngestResult, _jsonl, read_logs, reader, stream_logs
from tests.ingest.helpers import completion, write_jsonl


def _pair(i: int, text: str = "hello") -> dict[str, Any]:
    return {
        "id": f"req-{i}",
        "request": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"question {i}"}],
        },
        "response": completion(text),
    }


def _line(record: Any) -> bytes:
    return json.dumps(record).encode() + b"\n"


def _check_invariant(result: IngestResult) -> None:
    assert result.lines_read == len(result.exchanges) + len(result.skipped)
    summary = result.summary()
    assert summary.lines_read == summary.exchanges + summary.skipped
    assert sum(summary.skipped_by_reason.values()) == summary.skipped


@pytest.fixture(params=["orjson", "json"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the fast parser (when installed) and with the standard library one."""
    if request.param == "json":
        monkeypatch.setattr(_jsonl, "loads", _jsonl._json_loads)
        monkeypatch.setattr(reader, "loads", _jsonl._json_loads)
    elif _jsonl.JSON_BACKEND != "orjson":
        pytest.skip("orjson is not installed")
    return str(request.param)


def test_bad_lines_are_skipped_and_reading_goes_on(tmp_path: Path, json_backend: str) -> None:
    path = tmp_path / "mixed.jsonl"
    bad_bytes = b'{"id": "x", "request": {"messages": [{"role": "user", "content": "caf\xe9"}]}}\n'
    path.write_bytes(
        _line(_pair(1))
        + b"\n   \n"  # blank lines are not lines read, but they count in line numbers
        + b'{"id": "req-2", "request": {"model": "m", "messages": [}\n'
        + _line({**_pair(3), "request": {"model": "m", "messages": "hi there"}})
        + bad_bytes
        + b"[1, 2, 3]\n"
        + _line(_pair(7))
        + b'{"id": "req-8", "request": {"model": "m", "mess'  # truncated, no final newline
    )
    result = read_logs([path])
    _check_invariant(result)
    assert result.lines_read == 7
    assert [ex.id for ex in result.exchanges] == ["req-1", "req-7"]
    assert [ex.source.line for ex in result.exchanges] == [1, 8]
    issues = [(i.line, i.field, i.reason.split(":")[0]) for i in result.skipped]
    assert issues == [
        (4, "", "invalid JSON"),
        (5, "request.messages", "wrong type"),
        (6, "", "not valid UTF-8"),
        (7, "", "not a JSON object"),
        (9, "", "invalid JSON"),
    ]
    assert "byte 0xe9" in result.skipped[2].reason
    assert "truncated" in result.skipped[4].reason
    assert result.summary().skipped_by_reason == {
        "invalid JSON": 2,
        "wrong type": 1,
        "not valid UTF-8": 1,
        "not a JSON object": 1,
    }
    assert result.summary().examples == [str(i) for i in result.skipped]
    assert result.summary().examples[0].startswith(f"{path}:4: invalid JSON")


def test_strict_mode_raises_on_the_first_bad_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "log.jsonl",
        [_pair(1), {**_pair(2), "request": {"model": "m", "messages": "hi"}}, _pair(3)],
    )
    with pytest.raises(BadLineError) as raised:
        read_logs([path], strict=True)
    assert (
        str(raised.value)
        == f"{path}:2: field 'request.messages': wrong type: expected an array of messages, got string"
    )
    assert (raised.value.issue.line, raised.value.issue.field) == (2, "request.messages")
    assert raised.value.exit_code == 2

    path.write_bytes(_line(_pair(1)) + b"{not json\n")
    with pytest.raises(BadLineError, match=r"log\.jsonl:2: invalid JSON"):
        read_logs([path], strict=True)


def test_a_10_mb_message(tmp_path: Path) -> None:
    big = "lorem ipsum dolor sit amet " * 400_000  # 10.8 MB
    path = write_jsonl(tmp_path / "big.jsonl", [_pair(1, text=big), _pair(2)])
    result = read_logs([path])
    assert len(result.exchanges) == 2 and result.skipped == []
    assert result.exchanges[0].response is not None
    assert result.exchanges[0].response.text == big


def test_gzip_is_read_transparently(tmp_path: Path) -> None:
    lines = b"".join(_line(_pair(i)) for i in range(50))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "b.log").write_bytes(
        gzip.compress(lines.replace(b"req-", b"other-"))
    )  # no .gz suffix
    result = read_logs([tmp_path / "a.jsonl.gz", tmp_path / "b.log"])
    assert len(result.exchanges) == 100 and result.skipped == []
    assert result.exchanges[49].source.line == 50


def test_a_gzip_file_cut_short_keeps_what_was_read(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(_line(_pair(i)) for i in range(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    result = read_logs([path])
    _check_invariant(result)
    assert 0 < len(result.exchanges) < 2000
    # Every whole line before the cut is read; the cut is reported once, on the next line.
    (issue,) = result.skipped
    assert issue.line == len(result.exchanges) + 1
    assert issue.reason == "truncated file: the compressed stream ends early"
    with pytest.raises(BadLineError, match="truncated file"):
        read_logs([path], strict=True)


def test_a_corrupt_gzip_file_is_a_format_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"".join(_line(_pair(i)) for i in range(3000))))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    path = tmp_path / "corrupt.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(LogFormatError, match=r"corrupt\.jsonl\.gz: cannot read the file"):
        read_logs([path])


def test_directories_and_globs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_jsonl(logs / "2025-01-02.jsonl", [_pair(3), _pair(4)])
    write_jsonl(logs / "2025-01-01.jsonl", [_pair(1), _pair(2)])
    write_jsonl(logs / "eu" / "2025-01-01.json", [_pair(5)])
    (logs / "eu" / "2025-01-03.jsonl.gz").write_bytes(gzip.compress(_line(_pair(6))))
    (logs / "notes.txt").write_text("not a log")
    (logs / "empty.jsonl").write_text("\n\n")

    result = read_logs([logs])
    assert [ex.id for ex in result.exchanges] == [
        "req-1",
        "req-2",
        "req-3",
        "req-4",
        "req-5",
        "req-6",
    ]
    assert [Path(f).relative_to(logs).as_posix() for f in result.files] == [
        "2025-01-01.jsonl",
        "2025-01-02.jsonl",
        "empty.jsonl",
        "eu/2025-01-01.json",
        "eu/2025-01-03.jsonl.gz",
    ]
    assert result.lines_read == 6

    globbed = read_logs([str(logs / "2025-*.jsonl"), str(logs / "**" / "*.gz")])
    assert [ex.id for ex in globbed.exchanges] == ["req-1", "req-2", "req-3", "req-4", "req-6"]
    # A file named twice is read once.
    assert len(read_logs([logs / "2025-01-01.jsonl", str(logs / "2025-01-01.*")]).exchanges) == 2


def test_paths_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"nope\.jsonl: no such file or directory"):
        read_logs([tmp_path / "nope.jsonl"])
    with pytest.raises(LogFormatError, match=r"no file matches this pattern"):
        read_logs([str(tmp_path / "*.jsonl")])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(LogFormatError, match=r"empty_dir: no log files"):
        read_logs([tmp_path / "empty_dir"])


def test_unknown_formats_name_the_file(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [_pair(1)])
    other = write_jsonl(tmp_path / "traces.jsonl", [{"span_id": "1", "name": "llm"}])
    with pytest.raises(LogFormatError) as raised:
        read_logs([good, other])
    message = str(raised.value)
    assert message.startswith(f"{other}: unknown log format")
    assert "name, span_id" in message and "chat-jsonl" in message
    assert raised.value.exit_code == 2

    array = tmp_path / "outputs.json"
    array.write_text(json.dumps([{"instruction": "a", "output": "b"}], indent=2))
    with pytest.raises(
        LogFormatError, match=r"outputs\.json: unknown log format: it is a JSON array"
    ):
        read_logs([array])
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps({"trace": 1, "spans": []}, indent=2))
    with pytest.raises(LogFormatError, match="one JSON document spread over several lines"):
        read_logs([pretty])
    # a pretty-printed record, or an array of records, is read as a JSON document
    pretty.write_text(json.dumps(_pair(1), indent=2))
    assert read_logs([pretty]).formats == {"chat-jsonl": 1}
    array.write_text(json.dumps([_pair(1), _pair(2)], indent=2))
    assert [ex.source.line for ex in read_logs([array]).exchanges] == [1, 2]
    binary = tmp_path / "data.jsonl"
    binary.write_bytes(b"\x00\x01\x02 not text\n")
    with pytest.raises(
        LogFormatError, match="none of its first 1 non-blank lines is a JSON object"
    ):
        read_logs([binary])

    with pytest.raises(
        LogFormatError,
        match="unknown log format 'nope'; known formats: auto, openai-batch, openai-stored-completions, openai-preference",
    ):
        read_logs([good], format="nope")


def test_forcing_a_format(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "ft.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}],
    )
    result = read_logs([path], format="chat-jsonl")
    _check_invariant(result)
    assert result.exchanges == []
    assert result.skipped[0].field == "request" and result.skipped[0].reason.startswith(
        "missing field"
    )
    assert len(read_logs([path], format="finetune-chat").exchanges) == 1


def test_detection_looks_past_unparseable_first_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"garbage\n" + b'"a string"\n' + _line(_pair(3)))
    result = read_logs([path])
    assert [ex.id for ex in result.exchanges] == ["req-3"]
    assert [i.line for i in result.skipped] == [1, 2]

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + _line(_pair(1)) + _line(_pair(2)))
    assert [ex.id for ex in read_logs([bom]).exchanges] == ["req-1", "req-2"]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    result = read_logs([path])
    assert (result.exchanges, result.skipped, result.lines_read, result.files) == (
        [],
        [],
        0,
        [str(path)],
    )


def test_ids_are_unique_within_a_run_and_stable_across_runs(tmp_path: Path) -> None:
    no_ids = [{k: v for k, v in _pair(i).items() if k != "id"} for i in range(3)]
    for r in no_ids:
        r["response"] = {k: v for k, v in r["response"].items() if k != "id"}
    a = write_jsonl(tmp_path / "a.jsonl", [_pair(1), _pair(1), _pair(1), *no_ids])
    b = write_jsonl(tmp_path / "b.jsonl", [_pair(1)])
    first = read_logs([a, b])
    ids = [ex.id for ex in first.exchanges]
    assert ids[:3] == ["req-1", "req-1-2", "req-1-3"]
    assert ids[6] == "req-1-4"
    assert len(set(ids)) == len(ids) == 7
    assert [ex.id for ex in read_logs([a, b]).exchanges] == ids
    # Without a logged id, the id depends on the file name and line, not on the folder.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "a.jsonl").write_bytes(a.read_bytes())
    assert [ex.id for ex in read_logs([moved / "a.jsonl"]).exchanges][3:] == ids[3:6]


def test_a_single_path_string_is_one_path(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", [_pair(1)])
    assert (
        len(read_logs(str(path)).exchanges) == 1
    )  # a str is a Sequence: not read as paths "l", "o", "g"...


def test_stream_logs_yields_the_same_exchanges(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(_line(_pair(i)) for i in range(10)) + b"{oops\n")
    stream = stream_logs([path])
    streamed = list(stream)
    result = read_logs([path])
    assert [e.id for e in streamed] == [e.id for e in result.exchanges]
    assert (stream.lines_read, stream.exchanges_read, len(stream.skipped)) == (11, 10, 1)
    assert stream.summary() == result.summary()
    with pytest.raises(RuntimeError, match="only once"):
        list(stream)


def test_repeated_system_prompts_are_held_once(tmp_path: Path) -> None:
    prompt = "You are the support assistant of ACME. " * 200
    lines = [
        {
            "request": {
                "model": "m",
                "messages": [
                    {"role": "system", "content": prompt},
                    {"role": "user", "content": f"q{i}"},
                ],
            }
        }
        for i in range(3)
    ]
    batch = [
        {
            "custom_id": f"b{i}",
            "url": "/v1/responses",
            "body": {"model": "m", "instructions": prompt, "input": f"q{i}"},
        }
        for i in range(2)
    ]
    result = read_logs(
        [write_jsonl(tmp_path / "a.jsonl", lines), write_jsonl(tmp_path / "b.jsonl", batch)]
    )
    prompts = [ex.request["messages"][0]["content"] for ex in result.exchanges]
    assert len(prompts) == 5 and all(p == prompt for p in prompts)
    assert all(p is prompts[0] for p in prompts)
