from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.core.records import Exchange, Response, Source, ToolCall, Usage
from migrate_eval.plan.profile import logged_error_kind as error_kind
from migrate_eval.plan.profile import profile, render_text, request_features
from migrate_eval.plan.tasks import assign_tasks


def ex(i: int, *, day: int = 1, usage: bool = True, **req: Any) -> Exchange:
    messages = req.pop("messages", [{"role": "user", "content": f"{i:02d}" + "x" * 38}])
    return Exchange(
        id=f"e{i}",
        source=Source(file="f", line=i, format="t"),
        timestamp=datetime(2026, 10, day, 12, tzinfo=UTC),
        request={"model": req.pop("model", "gpt-4o-mini"), "messages": messages, **req},
        response=Response(
            text="answer " * 5,
            usage=Usage(prompt_tokens=100 * (i + 1), completion_tokens=10) if usage else None,
            finish_reason="stop",
        ),
        metadata={"feature": "a" if i % 2 else "b"},
    )


def test_features_detected() -> None:
    tool_msg = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]},
        {"role": "assistant", "content": "hi"},
        {"role": "tool", "tool_call_id": "c", "content": "{}"},
    ]
    e = ex(
        0,
        messages=tool_msg,
        tools=[{"type": "function", "function": {"name": "f"}}],
        response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        stream=True,
        n=2,
        logprobs=True,
    )
    assert e.response is not None
    e.response.tool_calls = [ToolCall.from_raw("f", "{}"), ToolCall.from_raw("g", "{}")]
    assert request_features(e) == {
        "tools", "parallel_tool_calls", "json_schema", "images", "streaming", "multi_turn",
        "n_gt_1", "logprobs", "tool_results_in_history",
    }  # fmt: skip
    assert request_features(ex(1, response_format={"type": "json_object"})) == {"json_mode"}
    assert request_features(ex(2)) == set()


def test_profile_volumes_tokens_duplicates_errors() -> None:
    exchanges = [ex(i, day=1 + i % 3) for i in range(10)]
    exchanges.append(ex(10, usage=False, model="gpt-4o"))  # no usage: estimated
    exchanges.append(exchanges[0].model_copy(update={"id": "dup", "response": None}))
    exchanges.append(
        ex(11).model_copy(
            update={"response": None, "error": "HTTP 429: rate_limit_exceeded: slow down"}
        )
    )
    exchanges.append(ex(12).model_copy(update={"response": None, "error": "HTTP 500: boom"}))
    p = profile(exchanges, assign_tasks(exchanges))
    assert p.exchanges == 14
    assert p.by_day == {"2026-10-01": 8, "2026-10-02": 3, "2026-10-03": 3}
    assert p.by_model == {"gpt-4o-mini": 13, "gpt-4o": 1}
    assert {t.name: t.count for t in p.tasks} == {"a": 6, "b": 8}
    # 100..1000 logged, four estimated at 40 chars / 4 = 10 tokens; nearest-rank p50
    assert p.prompt_tokens.max == 1000 and p.prompt_tokens.p50 == 300
    assert p.prompt_tokens.estimated == 4  # the one without usage, and three without response
    assert p.completion_tokens.count == 11 and p.completion_tokens.estimated == 1
    assert any("estimated" in n for n in p.notes)
    # ex(0) was logged twice
    assert p.duplicates.groups == 1 and p.duplicates.duplicates == 1
    assert p.errors.count == 2 and p.errors.by_kind == {"rate_limit": 1, "http_500": 1}
    assert p.finish_reasons == {"stop": 11}
    text = render_text(p)
    assert "Features in use" in text and "Duplicate requests: 1 copies of 1" in text


def test_error_kinds() -> None:
    assert error_kind("HTTP 400: context_length_exceeded: too long") == "context_length"
    assert error_kind("HTTP 404: model_not_found: x") == "model_not_found"
    assert error_kind("HTTP 418: teapot") == "http_418"
    assert error_kind("weird") == "other"


def _write_logs(path: Path) -> None:
    rows: list[str] = []
    for i in range(6):
        rows.append(
            json.dumps(
                {
                    "request": {
                        "model": "gpt-4o-mini",
                        "messages": [
                            {"role": "system", "content": f"Classify tickets for shop {i}."},
                            {"role": "user", "content": f"ticket {i}"},
                        ],
                        "stream": i % 2 == 0,
                    },
                    "response": {
                        "choices": [{"message": {"role": "assistant", "content": "billing"}}],
                        "usage": {"prompt_tokens": 20 + i, "completion_tokens": 1},
                    },
                    "timestamp": "2026-10-05T10:00:00Z",
                }
            )
        )
    rows.append("{not json")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_cli_profile_json(tmp_path: Path) -> None:
    logs = tmp_path / "t.jsonl"
    _write_logs(logs)
    res = CliRunner().invoke(main, ["profile", str(logs), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)  # exactly one JSON object
    assert data["exchanges"] == 6
    assert sum(data["skipped"].values()) == 1
    assert data["formats"] == {"chat-jsonl": 6}
    assert [(t["name"], t["count"]) for t in data["tasks"]] == [
        (data["tasks"][0]["name"], 6)
    ]  # one template: "Classify tickets for shop <n>."
    assert data["features"]["streaming"]["count"] == 3
    assert data["prompt_tokens"]["max"] == 25


def test_cli_profile_text_and_strict(tmp_path: Path) -> None:
    logs = tmp_path / "t.jsonl"
    _write_logs(logs)
    res = CliRunner().invoke(main, ["profile", str(logs)])
    assert res.exit_code == 0
    assert "6 exchanges" in res.output and "skipped lines: 1" in res.output
    assert "streaming" in res.output
    strict = CliRunner().invoke(main, ["profile", str(logs), "--strict"])
    assert strict.exit_code == 2 and "t.jsonl:7" in strict.output


def _mixed_logs(path: Path) -> Path:
    """Tagged, templated and untagged prompt-less traffic, duplicates, errors, a bad line."""
    rows = []
    for i in range(120):
        request: dict[str, Any] = {
            "model": "gpt-4o-mini" if i % 5 else "gpt-4o",
            "messages": [{"role": "user", "content": f"question {i % 10} about my order"}],
        }
        if i % 4 == 0:
            request["messages"].insert(0, {"role": "system", "content": f"Triage for shop {i}."})
        line: dict[str, Any] = {"id": f"r{i}", "request": request}
        if i % 4 == 1:
            line["metadata"] = {"feature": "faq" if i % 3 else "refunds"}
        if i % 11 == 0:
            line["response"] = {"error": {"code": "rate_limit_exceeded", "message": "slow"}}
        else:
            line["response"] = {
                "choices": [
                    {"message": {"role": "assistant", "content": "yes" if i % 2 else "no"}}
                ],
                "usage": {"prompt_tokens": 10 + i} if i % 6 else None,
            }
        if i % 9:
            line["timestamp"] = 1_790_000_000 + 3_600 * i
        rows.append(json.dumps(line))
    rows.insert(50, '{"request": 5}')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_streamed_profile_equals_the_profile_of_every_exchange_in_memory(tmp_path: Path) -> None:
    from migrate_eval.api import profile as profile_logs
    from migrate_eval.ingest import read_logs

    logs = _mixed_logs(tmp_path / "mixed.jsonl")
    demo = Path(__file__).resolve().parents[1] / "suites" / "demo" / "logs" / "traffic.jsonl"
    for paths in ([logs], [demo], [logs, demo]):
        read = read_logs(paths)
        expected = profile(read.exchanges, assign_tasks(read.exchanges), read.summary())
        assert profile_logs(paths) == expected
    streamed = profile_logs([logs])
    assert streamed.exchanges == 120 and streamed.skipped_total == 1
    assert streamed.duplicates.duplicates > 0 and streamed.errors.count == 11
    assert {t.source for t in streamed.tasks} >= {"metadata", "system_prompt"}


def test_streamed_profile_does_not_read_the_logs_into_memory(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import migrate_eval.ingest as ingest_pkg
    from migrate_eval.api import profile as profile_logs

    def no_list(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("profile_logs must stream, not read every exchange into a list")

    monkeypatch.setattr(ingest_pkg, "read_logs", no_list)
    monkeypatch.setattr("migrate_eval.ingest.reader.read_logs", no_list)
    assert profile_logs([_mixed_logs(tmp_path / "mixed.jsonl")]).exchanges == 120


def test_profile_of_logs_without_exchanges_is_a_usage_error(tmp_path: Path) -> None:
    logs = tmp_path / "bad.jsonl"
    logs.write_text('{"request": {"model": "m", "messages": "hi"}}\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["profile", str(logs)])
    assert res.exit_code == 2 and "no exchanges could be read" in res.output


def test_the_terminal_volume_table_stays_short_on_long_logs() -> None:
    from datetime import timedelta

    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    exchanges = [
        ex(i).model_copy(update={"timestamp": start + timedelta(days=i)}) for i in range(200)
    ]
    text = render_text(profile(exchanges, assign_tasks(exchanges)))
    assert "Volume by week" in text and "week of 2024-12-30" in text  # the Monday before
    assert "Volume by day" not in text and "2025-03-15  " not in text
    rows = text.split("Volume by week")[1].split("\n\n")[0].splitlines()[2:]
    assert 28 <= len(rows) <= 31
    assert sum(int(r.split()[-1]) for r in rows) == 200
    short = render_text(profile(exchanges[:10], assign_tasks(exchanges[:10])))
    assert "Volume by day" in short and "2025-01-10" in short


def test_cli_profile_lists_the_first_skipped_lines_and_writes_them_all(tmp_path: Path) -> None:
    logs = tmp_path / "t.jsonl"
    _write_logs(logs)
    with logs.open("a", encoding="utf-8") as f:
        f.writelines("{broken\n" for _ in range(12))  # 13 bad lines in all
    out = tmp_path / "skipped.jsonl"
    res = CliRunner().invoke(main, ["profile", str(logs), "--skipped", str(out)])
    assert res.exit_code == 0, res.output
    assert "skipped lines: 13" in res.output
    listed = [line.strip() for line in res.output.splitlines() if "t.jsonl:" in line]
    assert len(listed) == 5 and listed[0].startswith(f"{logs}:7: ")
    assert "... and 8 more: `migrate-eval profile ... --skipped FILE`" in res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == list(range(7, 20))
    assert set(rows[0]) == {"file", "line", "field", "reason"}


def test_profile_reports_progress_while_reading(tmp_path: Path) -> None:
    import migrate_eval
    from migrate_eval.plan.traffic import READ_PROGRESS_EVERY

    logs = tmp_path / "many.jsonl"
    line = json.dumps(
        {
            "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": "yo"}}]},
        }
    )
    logs.write_text((line + "\n") * (2 * READ_PROGRESS_EVERY + 5), encoding="utf-8")
    heard: list[int] = []
    migrate_eval.profile([logs], on_read=heard.append)
    assert heard == [READ_PROGRESS_EVERY, 2 * READ_PROGRESS_EVERY]


def test_reading_indicator_redraws_on_a_terminal_and_prints_lines_otherwise() -> None:
    from migrate_eval.cli import _Reading

    now = [0.0]
    out: list[str] = []
    piped = _Reading(True, tty=False, clock=lambda: now[0], write=out.append)
    for t, count in [(1.0, 1000), (4.0, 2000), (5.5, 3000), (7.0, 4000), (10.6, 5000)]:
        now[0] = t
        piped(count)
    # one line every 5 s of the (fake) clock, never a carriage return
    assert out == [
        "reading the logs: 3,000 exchanges, 6 s\n",
        "reading the logs: 5,000 exchanges, 11 s\n",
    ]
    out.clear()
    now[0] = 0.0
    tty = _Reading(True, tty=True, clock=lambda: now[0], write=out.append)
    now[0] = 0.6
    tty.tick()  # the background beat, before any count: the time still moves
    now[0] = 1.2
    tty(1000)
    tty.stop()
    assert out == [
        "\rreading the logs: 1 s\x1b[K",
        "\rreading the logs: 1,000 exchanges, 1 s\x1b[K",
        "\r\x1b[K",
    ]
    tty(2000)  # after stop: silent
    assert len(out) == 3
    quiet = _Reading(False, tty=True, clock=lambda: 99.0, write=out.append)
    quiet(5)
    assert len(out) == 3
