"""Reading many records of a run on disk by id (issue 17): each batch they fall in is
decoded once, not once a record (the report's ~70 examples decoded a batch of 1,024 each)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core import store
from migrate_eval.core.records import ReplayResult
from migrate_eval.core.store import ById, ByPair, Spill, SpilledRecords, interleave, pick
from tests.test_spill import _exchange


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch numbers decoded, in order."""
    seen: list[int] = []
    read = SpilledRecords._read

    def counted(self: SpilledRecords[Any], number: int) -> list[Any]:
        seen.append(number)
        return read(self, number)

    monkeypatch.setattr(SpilledRecords, "_read", counted)
    return seen


def test_get_many_decodes_each_batch_it_touches_once(tmp_path: Path, decodes: list[int]) -> None:
    with Spill(tmp_path, batch=8) as spill:
        records = spill.new("exchanges", ids=True)
        written = [_exchange(i) for i in range(100)]  # 12 batches on disk, 4 in the buffer
        records.extend(written)
        by_id = ById(records, store.record_ids(records))
        wanted = [f"e{i}" for i in random.Random(3).sample(range(100), 40)]
        wanted += ["e5", "nowhere", wanted[0]]  # repeated and unknown ids
        got = by_id.get_many(wanted)
        assert got == {k: written[int(k[1:])] for k in wanted if k != "nowhere"}
        touched = {int(k[1:]) // 8 for k in got if int(k[1:]) < 96}
        assert sorted(decodes) == sorted(touched)  # once each, more than 4 (the cache)
        assert len(touched) > 4
        # one by one, in the same random order, it decoded a batch for most of them
        decodes.clear()
        records._cache.clear()
        for key in wanted:
            by_id.get(key)
        assert len(decodes) > len(touched)


def test_answers_get_many_decodes_each_batch_of_each_candidate_once(
    tmp_path: Path, decodes: list[int]
) -> None:
    with Spill(tmp_path, batch=4) as spill:
        columns = [spill.new("a"), spill.new("b")]
        for i in range(30):
            for name, column in zip("ab", columns, strict=True):
                column.append(ReplayResult(exchange_id=f"e{i}", candidate=name))
        ids = [f"e{i}" for i in range(30)]
        by_pair = ByPair(interleave(columns), ById([], ids), ["a", "b"])
        wanted = [(f"e{i}", c) for i in (29, 3, 17, 2, 16, 9) for c in "ba"] + [("e1", "z")]
        got = by_pair.get_many(wanted)
        assert set(got) == set(wanted[:-1])
        assert all(v.exchange_id == k[0] and v.candidate == k[1] for k, v in got.items())
        # batches 0, 2, 4 of each candidate (e29 is in the buffer)
        assert sorted(decodes) == [0, 0, 2, 2, 4, 4]


def test_pick_reads_lists_and_spilled_records_alike(tmp_path: Path) -> None:
    with Spill(tmp_path, batch=3) as spill:
        records = spill.new("n")
        records.extend(range(10))
        assert pick(records, [9, -1, 4, 0]) == pick(list(range(10)), [9, -1, 4, 0])
        assert list(pick(records, [9, -1, 4, 0])) == [-1, 0, 4, 9]
        with pytest.raises(IndexError):
            pick(records, [10])
        rows = interleave([records, records])
        assert pick(rows, [19, 0, 7]) == {0: 0, 7: 3, 19: 9}


def test_the_ids_asked_for_are_found_without_a_map_of_every_id() -> None:
    # the report of a million exchanges shows 50,000: only their positions are kept (a map of
    # every id was 56 MB); one id looked up on its own builds the whole map, once
    ids = [f"e{i}" for i in range(1000)]
    records = [_exchange(i) for i in range(1000)]
    answers = [
        ReplayResult(exchange_id=ex_id, candidate=c, error="x", error_kind="vendor")
        for ex_id in ids
        for c in ("a", "b")
    ]
    by_id = ById(records, ids)
    by_pair = ByPair(answers, by_id, ["a", "b"])
    shown = ids[::20]
    by_id.resolve(shown)
    assert [by_id[i].id for i in shown] == shown
    assert [by_pair[(i, "b")].candidate for i in shown] == ["b"] * len(shown)
    assert len(by_id._position) == len(shown) and not by_id._whole
    got = by_pair.get_many([("e3", "a"), ("e5", "b"), ("nope", "a"), ("e3", "z")])
    assert {k: (v.exchange_id, v.candidate) for k, v in got.items()} == {
        ("e3", "a"): ("e3", "a"),
        ("e5", "b"): ("e5", "b"),
    }
    assert not by_id._whole and len(by_id._position) == len(shown) + 2
    assert by_id.get("e7") is records[7] and by_id._whole  # one at a time: the whole map
    assert "nope" not in by_id and ("e9", "z") not in by_pair and ("e9", "a") in by_pair
    with pytest.raises(KeyError):
        by_pair[("nope", "a")]
