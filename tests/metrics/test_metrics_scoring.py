"""score(): one row per replay result, statuses, parity, metric failures, replay fields."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source, ToolCall, Usage
from migrate_eval.core.results import SCORE_COLUMNS, TaskInfo
from migrate_eval.score import MetricContext, error_kind_of, format_error, score

CLS = TaskInfo(
    name="triage",
    output="classification",
    metrics=["normalized_match", "exact_match"],
    min_parity=0.8,
    n=3,
    source="suite",
)
TOOLS = TaskInfo(
    name="lookup",
    output="tool_call",
    metrics=["tool_call_match"],
    min_parity=0.8,
    n=2,
    source="suite",
)


def raising_metric(ctx: MetricContext) -> float | None:
    raise RuntimeError("kaboom")


def out_of_range_metric(ctx: MetricContext) -> float | None:
    return 1.5


def _ex(i: str, text: str | None = None, calls: list[ToolCall] | None = None) -> Exchange:
    response = (
        None if text is None and calls is None else Response(text=text, tool_calls=calls or [])
    )
    return Exchange(
        id=i,
        source=Source(file="log.jsonl", line=1, format="test"),
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": i}]},
        response=response,
    )


def _ok(
    i: str,
    cand: str,
    text: str | None = None,
    calls: list[ToolCall] | None = None,
    *,
    latency_ms: float | None = None,
    cached: bool = False,
) -> ReplayResult:
    return ReplayResult(
        exchange_id=i,
        candidate=cand,
        response=Response(text=text, tool_calls=calls or []),
        latency_ms=latency_ms,
        cached=cached,
    )


def test_columns_statuses_and_parity() -> None:
    exchanges = [
        _ex("a", "Positive"),
        _ex("b", "Negative"),
        _ex("c", "Neutral"),
        _ex("t1", calls=[ToolCall.from_raw("f", '{"x": 1}')]),
        _ex("t2", "no tool needed"),
        _ex("nr"),  # no logged answer
    ]
    assignment = {
        "a": "triage",
        "b": "triage",
        "c": "triage",
        "t1": "lookup",
        "t2": "lookup",
        "nr": "triage",
    }
    replays = [
        _ok("a", "m1", "positive.", latency_ms=120.0, cached=True),
        _ok("b", "m1", "Negative"),
        ReplayResult(
            exchange_id="c", candidate="m1", error="rate limited", error_kind="http_429", status=429
        ),
        _ok("t1", "m1", calls=[ToolCall.from_raw("f", '{"x": 1.0}')]),
        _ok("t2", "m1", "still no tool"),
        _ok("nr", "m1", "anything"),
        ReplayResult(
            exchange_id="a",
            candidate="m2",
            error="tools are not supported",
            error_kind="unsupported",
        ),
    ]
    df = score(exchanges, [CLS, TOOLS], assignment, replays)

    assert list(df.columns) == [
        *SCORE_COLUMNS,
        "normalized_match",
        "exact_match",
        "tool_call_match",
        "reference_label",
        "candidate_label",
        "gold_agree",
        "judge_prompt_tokens",
        "judge_completion_tokens",
    ]
    assert len(df) == 7
    rows: dict[tuple[str, str], dict[str, Any]] = {
        (str(r["exchange_id"]), str(r["candidate"])): {str(k): v for k, v in r.items()}
        for r in df.to_dict("records")
    }

    a = rows[("a", "m1")]
    assert (a["status"], a["error"]) == ("ok", "")
    assert a["normalized_match"] == 1.0 and a["exact_match"] == 0.0
    assert a["parity"] == 0.5  # mean of the task's metrics
    assert a["latency_ms"] == 120.0 and bool(a["cached"]) is True
    assert math.isnan(a["tool_call_match"])  # not a metric of this task

    assert rows[("b", "m1")]["parity"] == 1.0

    c = rows[("c", "m1")]
    assert c["status"] == "error" and c["error"] == "http_429: rate limited"
    assert math.isnan(c["parity"]) and math.isnan(c["normalized_match"])
    assert error_kind_of(c["error"]) == "http_429"

    assert rows[("t1", "m1")]["parity"] == 1.0
    t2 = rows[("t2", "m1")]  # tool_call_match is None for text vs text: no applicable metric
    assert t2["status"] == "ok" and math.isnan(t2["parity"]) and math.isnan(t2["tool_call_match"])

    assert rows[("nr", "m1")]["status"] == "no_reference"
    unsupported = rows[("a", "m2")]
    assert unsupported["status"] == "unsupported"
    assert error_kind_of(unsupported["error"]) == "unsupported"


def test_tokens_and_latency_come_from_the_replay() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=7)
    replays = [
        _ok("a", "m", "x", latency_ms=None),
        ReplayResult(
            exchange_id="b",
            candidate="m",
            response=Response(text="y", usage=usage, latency_ms=55.0),
            latency_ms=80.0,
        ),
        ReplayResult(
            exchange_id="c",
            candidate="m",
            response=Response(text="z", usage=usage, latency_ms=33.0),
        ),
    ]
    df = score(
        [_ex("a", "x"), _ex("b", "y"), _ex("c", "z")],
        [CLS],
        dict.fromkeys("abc", "triage"),
        replays,
    )
    assert df["latency_ms"].isna().tolist() == [True, False, False]
    assert df["latency_ms"].tolist()[1:] == [80.0, 33.0]  # the replay's latency wins
    assert df["prompt_tokens"].isna().tolist() == [True, False, False]
    assert int(df["prompt_tokens"].sum()) == 200
    assert int(df["completion_tokens"].sum()) == 14
    assert str(df["prompt_tokens"].dtype) == "Int64"


def test_a_raising_metric_gives_nan_and_an_error_note_without_stopping_scoring() -> None:
    task = CLS.model_copy(update={"metrics": ["normalized_match", f"{__name__}:raising_metric"]})
    df = score(
        [_ex("a", "Yes"), _ex("b", "No")],
        [task],
        {"a": "triage", "b": "triage"},
        [_ok("a", "m", "yes"), _ok("b", "m", "yes")],
    )
    col = f"{__name__}:raising_metric"
    assert df[col].isna().all()
    assert df["status"].tolist() == ["ok", "ok"]
    assert df["error"].tolist() == [f"metric {col}: RuntimeError: kaboom"] * 2
    assert df["parity"].tolist() == [1.0, 0.0]  # the other metric still counts


def test_a_metric_returning_out_of_range_is_reported() -> None:
    task = CLS.model_copy(update={"metrics": [f"{__name__}:out_of_range_metric"]})
    df = score([_ex("a", "Yes")], [task], {"a": "triage"}, [_ok("a", "m", "yes")])
    assert math.isnan(df["parity"].iloc[0])
    assert "returned 1.5" in df["error"].iloc[0]


def test_unknown_metric_is_a_config_error_before_scoring() -> None:
    task = CLS.model_copy(update={"metrics": ["no_such_metric"]})
    with pytest.raises(ConfigError, match="no_such_metric"):
        score([_ex("a", "x")], [task], {"a": "triage"}, [_ok("a", "m", "x")])


def test_metric_named_like_a_score_column_is_rejected() -> None:
    task = CLS.model_copy(update={"metrics": ["parity"]})
    with pytest.raises(ConfigError, match="clash"):
        score([], [task], {}, [])


def test_unassigned_exchanges_are_skipped_and_unknown_ones_rejected() -> None:
    df = score(
        [_ex("a", "x"), _ex("b", "x")],
        [CLS],
        {"a": "triage"},
        [_ok("a", "m", "x"), _ok("b", "m", "x")],
    )
    assert df["exchange_id"].tolist() == ["a"]
    with pytest.raises(ValueError, match="unknown exchange"):
        score([], [CLS], {"zz": "triage"}, [_ok("zz", "m", "x")])
    with pytest.raises(ValueError, match="unknown task"):
        score([_ex("a", "x")], [CLS], {"a": "nope"}, [_ok("a", "m", "x")])


def test_empty_input_gives_an_empty_frame_with_all_columns() -> None:
    df = score([], [CLS], {}, [])
    assert list(df.columns) == [
        *SCORE_COLUMNS,
        "normalized_match",
        "exact_match",
        "reference_label",
        "candidate_label",
        "gold_agree",
        "judge_prompt_tokens",
        "judge_completion_tokens",
    ]
    assert len(df) == 0


def test_mappings_are_accepted() -> None:
    df = score({"a": _ex("a", "x")}, {"triage": CLS}, {"a": "triage"}, [_ok("a", "m", "x")])
    assert df["parity"].tolist() == [1.0]


def test_error_text_format() -> None:
    assert format_error("timeout", "read timed out") == "timeout: read timed out"
    assert format_error(None, "boom") == "error: boom"
    assert format_error("http_500", "http_500: upstream") == "http_500: upstream"
    assert format_error("connection", None) == "connection: no response"
    assert error_kind_of("metric chrf: ValueError: x") == "other"
    assert error_kind_of("") == "other"


def test_scoring_is_deterministic() -> None:
    ex = [_ex(str(i), f"label {i % 3}") for i in range(20)]
    rp = [_ok(str(i), "m", f"Label {i % 2}") for i in range(20)]
    a = score(ex, [CLS], {str(i): "triage" for i in range(20)}, rp)
    b = score(ex, [CLS], {str(i): "triage" for i in range(20)}, rp)
    assert a.equals(b)
    assert np.isfinite(a["parity"]).all()


def int_metric(ctx: MetricContext) -> float | None:
    return 1 if ctx.candidate.text == "yes" else 0  # type: ignore[return-value]


def numpy_metric(ctx: MetricContext) -> float | None:
    return np.float32(0.5)  # type: ignore[return-value]


def nan_metric(ctx: MetricContext) -> float | None:
    return math.nan


def test_integer_and_numpy_values_are_accepted_and_nan_is_reported() -> None:
    names = [f"{__name__}:{m}" for m in ("int_metric", "numpy_metric", "nan_metric")]
    task = CLS.model_copy(update={"metrics": names})
    df = score(
        [_ex("a", "Yes"), _ex("b", "No")],
        [task],
        {"a": "triage", "b": "triage"},
        [_ok("a", "m", "yes"), _ok("b", "m", "no")],
    )
    assert df[names[0]].tolist() == [1.0, 0.0]
    assert df[names[1]].tolist() == [0.5, 0.5]
    assert df[names[2]].isna().all()
    assert df["parity"].tolist() == [0.75, 0.25]
    assert all("returned nan" in e for e in df["error"])


def test_scoring_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    assert gc.isenabled()
    score([_ex("a", "x")], [CLS], {"a": "triage"}, [_ok("a", "m", "x")])
    assert gc.isenabled()
    with pytest.raises(ValueError, match="unknown task"):
        score([_ex("a", "x")], [CLS], {"a": "nope"}, [_ok("a", "m", "x")])
    assert gc.isenabled()
    gc.disable()
    try:
        score([_ex("a", "x")], [CLS], {"a": "triage"}, [_ok("a", "m", "x")])
        assert not gc.isenabled()
    finally:
        gc.enable()


LABELS = ("task", "candidate", "status", "error", "reference_label", "candidate_label")


def test_text_columns_of_few_values_are_categorical_and_read_back_as_text(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # at a million exchanges and two candidates each text column held as strings costs an
    # offset and the bytes a row (~120 MB for these six); a categorical costs a byte a row.
    # scores.parquet keeps plain text, so run folders and users' scripts read as before.
    import pandas as pd

    from migrate_eval.core import run_folder
    from migrate_eval.score.scoring import score_chunks

    exchanges = [_ex(f"e{i}", ["Positive", "Negative"][i % 2]) for i in range(9)]
    assignment = {ex.id: "triage" for ex in exchanges}
    replays = []
    for i, ex in enumerate(exchanges):
        replays.append(_ok(ex.id, "m1", "positive" if i < 6 else "negative"))
        # the second candidate fails only in the last chunk: chunks' categories differ
        if i < 6:
            replays.append(_ok(ex.id, "m2", "Negative"))
        else:
            replays.append(
                ReplayResult(exchange_id=ex.id, candidate="m2", error="x", error_kind="http_500")
            )
    whole = score(exchanges, [CLS], assignment, replays)
    chunked = score_chunks(exchanges, [CLS], assignment, replays, 2, chunk=3)
    for df in (whole, chunked):
        for name in LABELS:
            assert isinstance(df[name].dtype, pd.CategoricalDtype), name
            categories = df[name].cat.categories.tolist()
            assert categories == sorted(categories), name  # groups and sorts as the texts do
    pd.testing.assert_frame_equal(chunked, whole)
    assert set(chunked["status"]) == {"ok", "error"}
    assert chunked["error"].iloc[-1] == "http_500: x"

    monkeypatch.setattr(run_folder, "SCORE_ROWS", 4)  # several slices
    run_folder.write_scores(whole, tmp_path / "scores.parquet")
    back = pd.read_parquet(tmp_path / "scores.parquet")
    for name in LABELS:
        assert not isinstance(back[name].dtype, pd.CategoricalDtype), name
    pd.testing.assert_frame_equal(back, whole.astype({name: "str" for name in LABELS}))
    back.loc[back["candidate"] == "m1", "status"] = "error"  # users edit it as text
    empty = score([], [CLS], {}, [])
    run_folder.write_scores(empty, tmp_path / "empty.parquet")
    assert list(pd.read_parquet(tmp_path / "empty.parquet").columns) == list(empty.columns)
