"""The metric registry: built-ins, default choice, custom ``module:function`` and entry points."""

from __future__ import annotations

import importlib.metadata
import logging
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.plugins import Registry
from migrate_eval.core.records import Exchange, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import (
    MetricContext,
    default_metrics,
    get_metric,
    list_metrics,
    register_metric,
)
from migrate_eval.score import registry as reg

BUILT_INS = {
    "exact_match",
    "normalized_match",
    "gold_match",
    "length_ratio",
    "chrf",
    "token_f1",
    "json_valid",
    "json_schema_valid",
    "json_match",
    "tool_call_match",
    "tool_name_match",
    "tool_args_valid",
}


def length_parity(ctx: MetricContext) -> float | None:
    """Candidate no longer than the reference (a team's own metric)."""
    ref, cand = ctx.reference.text or "", ctx.candidate.text or ""
    return 1.0 if len(cand) <= len(ref) else 0.0


NOT_A_FUNCTION = 42


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    monkeypatch.setattr(reg, "_RESOLVED", {})
    yield


def _ctx(reference: str, candidate: str) -> MetricContext:
    ref, cand = Response(text=reference), Response(text=candidate)
    ex = Exchange(id="x", source=Source(file="f", line=1, format="t"), request={}, response=ref)
    task = TaskInfo(name="t", output="free_text", metrics=[], min_parity=0.8, n=1, source="suite")
    return MetricContext(exchange=ex, reference=ref, candidate=cand, task=task)


def test_built_in_metrics_are_listed_with_descriptions() -> None:
    listed = {m.name: m for m in list_metrics(include_entry_points=False)}
    assert set(listed) >= BUILT_INS
    assert all(listed[n].description for n in BUILT_INS)
    assert listed["chrf"].kinds == ("free_text",)
    assert listed["exact_match"].kinds == ()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("tool_call", ["tool_call_match"]),
        ("structured", ["json_valid", "json_schema_valid", "json_match"]),
        ("classification", ["normalized_match"]),
        ("free_text", ["semantic_similarity", "token_f1"]),  # never depends on installed extras
    ],
)
def test_default_metrics_by_kind(kind: Any, expected: list[str]) -> None:
    assert default_metrics(kind) == expected
    for name in expected:
        assert get_metric(name).name == name


def test_default_metrics_returns_a_fresh_list() -> None:
    default_metrics("free_text").append("exact_match")
    assert default_metrics("free_text") == ["semantic_similarity", "token_f1"]


def test_unknown_output_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown output kind"):
        default_metrics("poetry")  # type: ignore[arg-type]


def test_unknown_metric_name_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'bleurt_xxl'"):
        get_metric("bleurt_xxl")


def test_a_misspelt_metric_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'chrff' \(did you mean 'chrf'\?\)"):
        get_metric("chrff")


def test_custom_module_function_metric_from_a_loaded_module() -> None:
    info = get_metric(f"{__name__}:length_parity")
    assert info.func is length_parity
    assert info.description.startswith("Candidate no longer")
    assert info.func(_ctx("abcd", "ab")) == 1.0
    assert get_metric(f"{__name__}:length_parity") is info  # resolved once


def test_custom_module_function_metric_imported_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team_metrics_for_test.py").write_text(
        textwrap.dedent(
            """
            def starts_alike(ctx):
                ref = (ctx.reference.text or "")[:3]
                return 1.0 if (ctx.candidate.text or "").startswith(ref) else 0.0
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    info = get_metric("team_metrics_for_test:starts_alike")
    assert info.func(_ctx("Hello world", "Help!")) == 1.0
    assert info.func(_ctx("Hello world", "Bye")) == 0.0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module_xyz:fn", "cannot be imported"),
        (f"{__name__}:no_such_function", "has no attribute"),
        (f"{__name__}:NOT_A_FUNCTION", "not a function"),
        (":fn", "expected 'module:function'"),
        (f"{__name__}:", "expected 'module:function'"),
    ],
)
def test_bad_custom_metric_names_are_config_errors(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        get_metric(name)
    assert repr(name) in str(info.value)


def test_entry_point_metrics_are_resolved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eps = [
        EntryPoint(name="pkg_len", value=f"{__name__}:length_parity", group=reg.ENTRY_POINT_GROUP),
        EntryPoint(name="pkg_broken", value="no_such_module_xyz:fn", group=reg.ENTRY_POINT_GROUP),
    ]

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return eps if group == reg.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    fresh = Registry(
        "metric", reg.ENTRY_POINT_GROUP, reg._check_entry_point, logger=reg.ENTRY_POINTS.logger
    )
    monkeypatch.setattr(reg, "ENTRY_POINTS", fresh)
    assert get_metric("pkg_len").func is length_parity
    with pytest.raises(ConfigError, match=r"'pkg_broken'.*cannot be loaded"):
        get_metric("pkg_broken")
    # the plugin policy of every registry: a broken plugin is left out of listings, with a
    # warning, and is an error only when a suite names it
    with caplog.at_level(logging.WARNING):
        names = {m.name for m in list_metrics()}
    assert "pkg_len" in names and "pkg_broken" not in names
    assert any(
        "pkg_broken" in r.getMessage() and "not loaded" in r.getMessage() for r in caplog.records
    )


def test_register_metric_decorator() -> None:
    @register_metric("always_half", kinds=("free_text",), description="Half, always.")
    def always_half(ctx: MetricContext) -> float | None:
        return 0.5

    info = get_metric("always_half")
    assert info.func is always_half
    assert info.kinds == ("free_text",)
    assert info.description == "Half, always."
    # the same function again is fine (a module imported twice) ...
    register_metric("always_half", description="Half, always.")(always_half)

    # ... another one under a taken name is not
    def other(ctx: MetricContext) -> float | None:
        return 0.0

    with pytest.raises(ValueError, match="already registered"):
        register_metric("always_half", description="x")(other)
    with pytest.raises(ValueError, match="without ':'"):
        register_metric("a:b", description="x")
