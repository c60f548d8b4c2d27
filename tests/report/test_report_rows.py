"""The report reads score rows as plain lists (``_records``): the values pandas' ``to_dict``
gives, for every column type the scores frame has."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from migrate_eval.report.html import _records


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b) if a is not pd.NA else b is pd.NA


def test_records_equal_to_dict_records() -> None:
    frame = pd.DataFrame(
        {
            "exchange_id": pd.Series(["a", "b", None], dtype="str"),
            "status": ["ok", "timeout", "ok"],
            "parity": [1.0, float("nan"), 0.25],
            "prompt_tokens": pd.array([3, None, 5], dtype="Int64"),
            "cached": [True, False, True],
            "judge_prompt_tokens": [0, 1, 2],
        },
        index=[7, 3, 9],  # a group's rows keep the whole frame's index
    )
    columns = ("exchange_id", "status", "parity", "prompt_tokens", "cached", "missing", "status")
    expected = frame[[c for c in dict.fromkeys(columns) if c in frame.columns]].to_dict("records")
    got = _records(frame, columns)
    assert [list(r) for r in got] == [list(r) for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert all(_same(g[k], e[k]) for k in e), (g, e)
    assert _records(frame, ("missing",)) == [{}, {}, {}]
