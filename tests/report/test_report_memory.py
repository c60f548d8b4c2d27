"""report.html's exchange browser data is the largest string a run makes (issue 17, memory):
``render_html`` writes it as UTF-8 bytes in its place in the page, never as text, and the file
is byte for byte the page ``render_html_text`` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.records import Response
from migrate_eval.report import html
from migrate_eval.report.html import BLOB_MARK, render_html, render_html_text
from tests.report.conftest import Run


def test_the_written_report_is_the_rendered_page(run: Run, tmp_path: Path) -> None:
    # an emoji and line separators in an answer: 4 bytes a character as text, escapes in JSON
    first = next(iter(run.replays))
    run.replays[first] = run.replays[first].model_copy(
        update={"response": Response(text="shipped 😀 \u2028 </script> & done")}
    )
    path = tmp_path / "report.html"
    render_html(run.results, run.scores, run.exchanges, run.replays, path)
    expected = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    assert path.read_bytes() == expected.encode()
    assert BLOB_MARK not in path.read_text(encoding="utf-8")


def test_the_exchange_data_is_never_made_text(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the data was one str (and a Markup copy of it) while the page was rendered."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the exchange data was made text")

    monkeypatch.setattr(html, "exchange_blob", refused)
    path = tmp_path / "report.html"
    render_html(run.results, run.scores, run.exchanges, run.replays, path)
    assert 'id="exchange-data">{"candidates":' in path.read_text(encoding="utf-8")


def test_a_page_whose_text_has_the_mark_is_rendered_as_text(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page shows logged texts with their control characters made visible, so the mark
    cannot come from one; were it in the page's text all the same, the page is written as
    text, as before."""
    monkeypatch.setattr(html, "BLOB_MARK", "<div")  # in the page many times
    path = tmp_path / "report.html"
    render_html(run.results, run.scores, run.exchanges, run.replays, path)
    expected = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    assert path.read_bytes() == expected.encode()
