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


def test_a_run_on_disk_renders_the_same_page_reading_its_examples_batch_by_batch(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: the examples the page shows are read in one ordered pass over the records on
    disk (each batch they fall in decoded once), not one batch per example."""
    from migrate_eval.core import store
    from migrate_eval.core.store import ById, ByPair, Spill, SpilledRecords, interleave
    from tests.report.conftest import CANDIDATES

    expected = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    decoded: list[int] = []
    read = SpilledRecords._read
    monkeypatch.setattr(SpilledRecords, "_read", lambda self, n: decoded.append(n) or read(self, n))
    monkeypatch.setattr(store, "_CACHED_BATCHES", 1)  # one by one, each would decode its own
    import random

    order = list(run.exchanges)  # on disk in another order than the page reads them
    random.Random(7).shuffle(order)
    position = {ex_id: i for i, ex_id in enumerate(order)}
    in_read_many: list[tuple[int, int]] = []
    read_many = html.read_many

    def counted(mapping: Any, keys: Any) -> Any:
        before = len(decoded)
        got = read_many(mapping, keys)
        pairs = [(k, "") if isinstance(k, str) else k for k in keys]  # (id, candidate)
        on_disk = len(order) // 4  # the batches written (the rest is in memory)
        touched = {(position[ex_id] // 4, c) for ex_id, c in pairs if position[ex_id] < on_disk * 4}
        in_read_many.append((len(decoded) - before, len(touched)))
        return got

    monkeypatch.setattr(html, "read_many", counted)
    with Spill(tmp_path, batch=4) as spill:
        records = spill.new("exchanges", ids=True)
        records.extend(run.exchanges[ex_id] for ex_id in order)
        columns = [spill.new(c) for c in CANDIDATES]
        for ex_id in order:
            for c, column in zip(CANDIDATES, columns, strict=True):
                column.append(run.replays[(ex_id, c)])
        by_id = ById(records, order)
        by_pair = ByPair(interleave(columns), by_id, CANDIDATES)
        assert render_html_text(run.results, run.scores, by_id, by_pair) == expected
    # each batch the examples fall in decoded once (one by one: about one an example)
    assert [decodes for decodes, _ in in_read_many] == [touched for _, touched in in_read_many]
