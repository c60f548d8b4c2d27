"""A line over the line limit (``--max-line-bytes``, ``MIGRATE_EVAL_MAX_LINE_BYTES``, 16 MiB
by default) is skipped unread with an issue naming its file and line; the lines around it are
read; the compiled fast path, the pure-Python builder and the line-by-line readers agree.
(The limit is set low here so that the test stays small; benchmarks/bench_bigline.py measures
a 50 MB line.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.core.errors import BadLineError, ConfigError
from migrate_eval.ingest import ingest_to_dataset, read_logs
from migrate_eval.ingest._jsonl import MAX_LINE_BYTES, max_line_bytes, parse_size
from tests.ingest.helpers import completion

LIMIT = 64 * 1024


def _chat(i: int, text: str) -> dict[str, Any]:
    return {
        "id": f"r{i}",
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        "response": completion(f"answer {i}"),
    }


def _log(path: Path, record: Any = _chat) -> Path:
    rows = [record(1, "short"), record(2, "y" * (LIMIT + 10)), record(3, "also short")]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _low_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_MAX_LINE_BYTES", str(LIMIT))


def _check(issues: list[Any], path: Path) -> None:
    assert len(issues) == 1
    issue = issues[0]
    assert (issue.file, issue.line) == (str(path), 2)
    assert issue.reason.startswith("line too long: ")
    assert "over the 64K" not in issue.reason and "65,536 bytes limit" in issue.reason
    assert "--max-line-bytes" in issue.reason


def test_line_over_the_limit_is_skipped_and_named(tmp_path: Path) -> None:
    path = _log(tmp_path / "logs.jsonl")
    res = read_logs([path])
    assert [e.id for e in res.exchanges] == ["r1", "r3"]
    _check(res.skipped, path)
    summary = res.summary()
    assert summary.lines_read == 3 and summary.skipped_by_reason == {"line too long": 1}


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure-python"])
def test_fast_path_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pure: bool) -> None:
    """The dataset path (the compiled builder, or its pure-Python twin) never takes the line:
    it goes to the Python path, which rejects it."""
    if pure:
        monkeypatch.setenv("MIGRATE_EVAL_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("MIGRATE_EVAL_PURE_PYTHON", raising=False)
    path = _log(tmp_path / "logs.jsonl")
    ds, summary = ingest_to_dataset([path], tmp_path / "cache")
    assert sorted(ds["id"]) == ["r1", "r3"]
    assert summary.skipped_by_reason == {"line too long": 1}
    assert summary.lines_read == 3 and summary.exchanges == 2


def test_other_formats_and_strict_mode(tmp_path: Path) -> None:
    def batch_line(i: int, text: str) -> dict[str, Any]:
        return {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        }

    path = _log(tmp_path / "batch.jsonl", batch_line)
    res = read_logs([path])
    _check(res.skipped, path)
    with pytest.raises(BadLineError, match="line too long"):
        read_logs([_log(tmp_path / "chat.jsonl")], strict=True)


def test_the_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_MAX_LINE_BYTES", "1M")
    assert max_line_bytes() == 1 << 20
    assert len(read_logs([_log(tmp_path / "logs.jsonl")]).exchanges) == 3
    monkeypatch.delenv("MIGRATE_EVAL_MAX_LINE_BYTES")
    assert max_line_bytes() == MAX_LINE_BYTES == 16 << 20
    assert parse_size("16MiB", "x") == parse_size("16m", "x") == 16 << 20
    with pytest.raises(ConfigError, match="positive byte count"):
        parse_size("lots", "--max-line-bytes")


def test_cli_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _log(tmp_path / "logs.jsonl")
    monkeypatch.delenv("MIGRATE_EVAL_MAX_LINE_BYTES")
    runner = CliRunner()
    res = runner.invoke(main, ["profile", str(path), "--max-line-bytes", "64K", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["exchanges"] == 2 and out["skipped"] == {"line too long": 1}
    res = runner.invoke(main, ["profile", str(path), "--max-line-bytes", "2M", "--json"])
    assert json.loads(res.stdout)["exchanges"] == 3
    res = runner.invoke(main, ["profile", str(path), "--max-line-bytes", "none"])
    assert res.exit_code == 2 and "positive byte count" in res.output
