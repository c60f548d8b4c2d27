"""Every new format under bad input: a malformed line, a wrong type, non-UTF-8 bytes, a 10 MB
message and a truncated (zstd/gzip) file give issues naming file, line and field; the rest is
read and the counts reconcile. Plus zstd files and the Arrow dataset path."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import LineIssue
from migrate_eval.ingest import (
    IngestResult,
    ingest_to_dataset,
    iter_exchanges,
    read_logs,
)
from tests.ingest.helpers import completion

BIG = "x" * (10 * 1024 * 1024)


def _msgs(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _helicone(text: str) -> dict[str, Any]:
    return {
        "request_id": None,
        "request_body": {"model": "gpt-4o", "messages": _msgs(text)},
        "response_body": completion("ok"),
        "response_status": 200,
    }


def _langfuse(text: str) -> dict[str, Any]:
    return {
        "id": None,
        "traceId": "t",
        "type": "GENERATION",
        "startTime": "2025-01-01T00:00:00Z",
        "model": "gpt-4o",
        "input": _msgs(text),
        "output": {"role": "assistant", "content": "ok"},
    }


def _langsmith(text: str) -> dict[str, Any]:
    return {
        "run_type": "llm",
        "inputs": {"messages": _msgs(text)},
        "outputs": completion("ok"),
        "extra": {"invocation_params": {"model": "gpt-4o"}},
    }


def _openpipe(text: str) -> dict[str, Any]:
    return {"messages": [*_msgs(text), {"role": "assistant", "content": "ok"}], "split": "TRAIN"}


def _responses(text: str) -> dict[str, Any]:
    return {
        "request": {"model": "gpt-4.1", "input": text},
        "response": {
            "object": "response",
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "ok"}],
                }
            ],
        },
    }


def _otel(text: str) -> dict[str, Any]:
    attrs = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        {
            "key": "gen_ai.input.messages",
            "value": {
                "stringValue": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": text}]}]
                )
            },
        },
    ]
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": attrs}]}]}]}


# (format name, good record builder, a record with a wrong type, the field the issue names)
CASES: list[tuple[str, Callable[[str], dict[str, Any]], dict[str, Any], str]] = [
    ("helicone", _helicone, {**_helicone("q"), "request_body": 5}, "request_body"),
    ("langfuse", _langfuse, {**_langfuse("q"), "modelParameters": [1]}, "modelParameters"),
    ("langsmith", _langsmith, {**_langsmith("q"), "inputs": "hi"}, "inputs"),
    ("openpipe", _openpipe, {**_openpipe("q"), "split": 3}, "split"),
    (
        "openai-responses",
        _responses,
        {**_responses("q"), "response": {"object": "response", "output": 5}},
        "response.output",
    ),
    ("otel-genai", _otel, {"resourceSpans": 5}, "resourceSpans"),
]


@pytest.mark.parametrize(("name", "good", "wrong", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_lines_are_reported_and_the_rest_is_read(
    tmp_path: Path,
    name: str,
    good: Callable[[str], dict[str, Any]],
    wrong: dict[str, Any],
    field: str,
) -> None:
    path = tmp_path / f"{name}.jsonl"
    lines = [
        json.dumps(good("first")).encode(),
        b'{"not": json',  # malformed
        json.dumps(wrong).encode(),
        json.dumps(good("cafMARK")).encode().replace(b"MARK", b"\xe9"),  # latin-1
        json.dumps(good(BIG)).encode(),  # a 10 MB message
        json.dumps(good("last")).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = read_logs([path])
    assert result.formats == {name: 3}
    assert result.lines_read == len(result.exchanges) + len(result.skipped) == 6
    issues = {i.line: i for i in result.skipped}
    assert set(issues) == {2, 3, 4}
    assert all(i.file == str(path) for i in result.skipped)
    assert issues[2].reason.startswith("invalid JSON")
    assert issues[3].field == field and issues[3].reason.startswith("wrong type")
    assert issues[4].reason.startswith("not valid UTF-8")
    big = result.exchanges[1]
    assert len(json.dumps(big.request)) > 10 * 1024 * 1024
    assert [e.source.line for e in result.exchanges] == [1, 5, 6]


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_truncated_compressed_files(tmp_path: Path, compress: str) -> None:
    # several zstd blocks (128 KB each): a cut file still holds whole blocks
    data = b"".join(
        json.dumps(_helicone(f"q{i} " + str(i * 7919) * 40)).encode() + b"\n" for i in range(4000)
    )
    if compress == "gzip":
        blob = gzip.compress(data)
        path = tmp_path / "helicone.jsonl.gz"
    else:
        zstandard = pytest.importorskip("zstandard")
        blob = zstandard.ZstdCompressor().compress(data)
        path = tmp_path / "helicone.jsonl.zst"
    path.write_bytes(blob)
    full = read_logs([path])
    assert len(full.exchanges) == 4000 and not full.skipped
    path.write_bytes(blob[: len(blob) // 2])
    cut = read_logs([path])
    assert 0 < len(cut.exchanges) < 4000
    last = cut.skipped[-1]
    assert last.file == str(path) and last.reason.startswith("truncated file")
    assert cut.lines_read == len(cut.exchanges) + len(cut.skipped)


def test_zstd_files_in_directories_and_tables(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = b"".join(json.dumps(_langsmith(f"q{i}")).encode() + b"\n" for i in range(10))
    # two frames in one file, as `zstd` writes for concatenated input
    c = zstandard.ZstdCompressor()
    (logs / "runs.jsonl.zst").write_bytes(
        c.compress(lines[: len(lines) // 2 + 3]) + c.compress(lines[len(lines) // 2 + 3 :])
    )
    (logs / "table.csv.zst").write_bytes(c.compress(b"prompt,response\nhi,hello\n"))
    result = read_logs([logs])
    assert result.formats == {"langsmith": 10, "table": 1}


def test_csv_robustness(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(
        b"prompt,response\n"
        b"first,ok\n"
        b"caf\xe9,ok\n"  # not UTF-8
        b"a,b,c\n"  # wrong number of cells
        + b'"'
        + BIG.encode()
        + b'",ok\n'
        + b"last,ok\n"
        + b'"unterminated,ok\n'
    )
    result = read_logs([path])
    assert result.lines_read == len(result.exchanges) + len(result.skipped)
    issues = {i.line: i for i in result.skipped}
    assert issues[3].field == "prompt" and issues[3].reason.startswith("not valid UTF-8")
    assert issues[4].reason.startswith("invalid value")
    assert [e.source.line for e in result.exchanges][:3] == [2, 5, 6]


def _mixed_logs(tmp_path: Path) -> list[Path]:
    a = tmp_path / "a.jsonl"
    a.write_text("\n".join(json.dumps(_helicone(f"q{i}")) for i in range(25)) + "\n{bad\n")
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join(json.dumps(_langfuse(f"r{i}")) for i in range(10)) + "\n")
    return [a, b]


def test_ingest_to_dataset_round_trips_exchanges(tmp_path: Path) -> None:
    paths = _mixed_logs(tmp_path)
    expected: IngestResult = read_logs(paths)
    ds, summary = ingest_to_dataset(paths, tmp_path / "cache", batch_rows=8)
    assert len(ds) == len(expected.exchanges) == 35
    assert summary == expected.summary()
    assert summary.lines_read == summary.exchanges + summary.skipped
    assert set(ds.column_names) >= {
        "id",
        "file",
        "line",
        "format",
        "request",
        "response",
        "metadata",
        "task",
    }
    back = list(iter_exchanges(ds, batch_rows=7))
    assert [e.model_dump() for e in back] == [e.model_dump() for e in expected.exchanges]
    assert ds[0]["model"] == "gpt-4o" and ds[0]["task"] is None
    # again: the cached file is rewritten, not appended to
    ds2, _ = ingest_to_dataset(paths, tmp_path / "cache")
    assert len(ds2) == 35


def test_issue_text_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({**_helicone("q"), "request_body": 5}) + "\n")
    (issue,) = read_logs([path]).skipped
    assert isinstance(issue, LineIssue)
    assert (
        str(issue)
        == f"{path}:1: field 'request_body': wrong type: expected a request object, got number"
    )


def test_zstd_without_the_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from migrate_eval.core.errors import MissingExtraError

    path = tmp_path / "log.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)
    real_import = builtins.__import__

    def no_zstd(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    with pytest.raises(MissingExtraError, match=r"pip install 'migrate-eval\[zstd\]'"):
        read_logs([path])


def test_suite_log_entries_take_table_columns() -> None:
    from migrate_eval.core.suite import LogSpec

    spec = LogSpec(path="evals.csv", columns={"prompt": "q", "response": "a"})
    assert spec.columns == {"prompt": "q", "response": "a"}
    assert LogSpec(path="logs/").columns is None
