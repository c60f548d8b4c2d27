"""report.html.j2 is compiled once per machine (jinja2's bytecode cache), not on every run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from migrate_eval.report import html as html_mod
from migrate_eval.report import render_html_text

from .conftest import Run


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The templates jinja2 compiles from source (each compile is recorded by name)."""
    seen: list[str] = []
    real = jinja2.Environment.compile

    def counting(
        self: jinja2.Environment, source: object, name: str | None = None, *a: object, **k: object
    ) -> object:
        seen.append(str(name))
        return real(self, source, name, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    html_mod._environment.cache_clear()
    yield seen
    html_mod._environment.cache_clear()  # later tests get the environment of their settings


def _render(run: Run) -> str:
    html_mod._environment.cache_clear()  # a fresh process: nothing compiled in memory
    return render_html_text(run.results, run.scores, run.exchanges, run.replays)


def test_second_run_loads_the_compiled_template(
    run: Run, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_TEMPLATE_CACHE", str(tmp_path))
    first = _render(run)
    assert compiles == ["report.html.j2"]
    assert len(list(tmp_path.glob("migrate_eval_*.cache"))) == 1
    second = _render(run)
    assert compiles == ["report.html.j2"]  # not compiled again
    assert second == first


def test_named_folder_is_created(
    run: Run, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "not" / "yet"
    monkeypatch.setenv("MIGRATE_EVAL_TEMPLATE_CACHE", str(folder))
    first = _render(run)
    assert _render(run) == first
    assert compiles == ["report.html.j2"]
    assert len(list(folder.glob("migrate_eval_*.cache"))) == 1


def test_damaged_entry_is_compiled_again(
    run: Run, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_TEMPLATE_CACHE", str(tmp_path))
    first = _render(run)
    (entry,) = tmp_path.glob("migrate_eval_*.cache")
    entry.write_bytes(entry.read_bytes()[:100])
    assert _render(run) == first
    assert len(compiles) == 2
    assert _render(run) == first  # the entry was written again, whole
    assert len(compiles) == 2


def test_unusable_cache_folder_only_costs_the_compile(
    run: Run, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("MIGRATE_EVAL_TEMPLATE_CACHE", str(not_a_folder))
    first = _render(run)
    assert _render(run) == first
    assert len(compiles) == 2


def test_cache_can_be_turned_off(
    run: Run, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_TEMPLATE_CACHE", "off")
    _render(run)
    assert html_mod._environment().bytecode_cache is None
    _render(run)
    assert len(compiles) == 2


def test_key_changes_with_the_options_that_shape_the_code(tmp_path: Path) -> None:
    a = html_mod._CompiledTemplates(str(tmp_path))
    b = html_mod._CompiledTemplates(str(tmp_path))
    b.options = "other"
    name, filename = "report.html.j2", "/x/report.html.j2"
    assert a.get_cache_key(name, filename) != b.get_cache_key(name, filename)
    assert a.get_cache_key(name, filename) == html_mod._CompiledTemplates(
        str(tmp_path)
    ).get_cache_key(name, filename)
