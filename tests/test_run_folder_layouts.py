"""Run folders: the exchanges and responses as Arrow datasets (``exchanges/``, ``responses/``)
that ``datasets`` and ``pyarrow`` open directly, and the earlier layout (``exchanges.jsonl``,
``responses.jsonl``) still loading the same Run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

import migrate_eval
from migrate_eval.core import run_folder
from migrate_eval.core.errors import UserError


@pytest.fixture
def run_dir(demo_run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(demo_run_dir, copy)
    return copy


def _to_old_layout(run_dir: Path, old: Path) -> None:
    """The same run folder as migrate-eval wrote it before the Arrow datasets."""
    run = migrate_eval.load_run(run_dir)
    shutil.copytree(run_dir, old)
    for name, records in (("exchanges", run.exchanges), ("responses", run.responses)):
        shutil.rmtree(old / name)
        with (old / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(r.model_dump_json(exclude_none=True) + "\n")


def test_new_and_old_layouts_load_the_same_run(run_dir: Path, tmp_path: Path) -> None:
    assert (run_dir / "exchanges").is_dir() and not (run_dir / "exchanges.jsonl").exists()
    old = tmp_path / "old"
    _to_old_layout(run_dir, old)
    new_run, old_run = migrate_eval.load_run(run_dir), migrate_eval.load_run(old)
    assert new_run.exchanges == old_run.exchanges and new_run.responses == old_run.responses
    assert new_run.results == old_run.results
    assert new_run.exchanges_df().equals(old_run.exchanges_df())
    # rerender and gate read either layout
    assert migrate_eval.rerender(old).gate == new_run.results.gate
    assert migrate_eval.gate(old, out=tmp_path / "g").results.gate == new_run.results.gate


def test_datasets_and_pyarrow_open_the_run_folder(run_dir: Path) -> None:
    import datasets

    run = migrate_eval.load_run(run_dir)
    ds = datasets.load_from_disk(str(run_dir / "responses"))
    assert len(ds) == len(run.responses)
    assert ds.column_names == [
        "exchange_id",
        "candidate",
        "ok",
        "error_kind",
        "latency_ms",
        "record",
    ]
    assert ds[0]["exchange_id"] == run.responses[0].exchange_id
    assert json.loads(ds[0]["record"])["candidate"] == run.responses[0].candidate
    with pa.memory_map(str(run_dir / "exchanges" / "data-00000-of-00001.arrow")) as src:
        frame = pa.ipc.open_stream(src).read_all().to_pandas()
    assert frame["id"].tolist() == [ex.id for ex in run.exchanges]


def test_records_are_written_in_batches(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = migrate_eval.load_run(run_dir)
    monkeypatch.setattr(run_folder, "BATCH_ROWS", 7)
    run_folder.write_records(tmp_path, "exchanges", iter(run.exchanges))
    with pa.memory_map(str(tmp_path / "exchanges" / "data-00000-of-00001.arrow")) as src:
        batches = list(pa.ipc.open_stream(src))
    assert len(batches) == -(-len(run.exchanges) // 7) and max(len(b) for b in batches) == 7
    shutil.rmtree(run_dir / "exchanges")
    shutil.copytree(tmp_path / "exchanges", run_dir / "exchanges")
    assert migrate_eval.load_run(run_dir).exchanges == run.exchanges


def test_a_broken_dataset_names_the_file_and_row(run_dir: Path) -> None:
    run = migrate_eval.load_run(run_dir)
    records = list(run.responses)
    data = run_dir / "responses" / "data-00000-of-00001.arrow"
    run_folder.write_records(run_dir, "responses", records)
    schema = pa.ipc.open_stream(pa.memory_map(str(data))).schema
    table = pa.Table.from_pylist(
        [
            {
                "exchange_id": "a",
                "candidate": "c",
                "ok": True,
                "record": records[0].model_dump_json(),
            },
            {"exchange_id": "b", "candidate": "c", "ok": True, "record": "{not json"},
        ],
        schema=schema,
    )
    with pa.OSFile(str(data), "wb") as fh, pa.ipc.new_stream(fh, schema) as sink:
        sink.write_table(table)
    with pytest.raises(UserError, match=r"data-00000-of-00001.arrow: row 2: not a valid record"):
        migrate_eval.load_run(run_dir)
    data.write_bytes(b"not arrow")
    with pytest.raises(UserError, match=r"not a readable Arrow file"):
        migrate_eval.load_run(run_dir)
    (run_dir / "responses" / "state.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match=r"state.json: not a dataset's state"):
        migrate_eval.load_run(run_dir)


@pytest.mark.parametrize("ids", [[], ['b"1', "a-é", "c\n"]])
def test_tasks_json_is_written_a_line_at_a_time_as_json_writes_it(
    tmp_path: Path, ids: list[str]
) -> None:
    # tasks.json of a million exchanges is streamed; it must stay the file json.dumps gives
    # (indent 1, the exchanges in the run's order, not the mapping's), which load_run reads
    from migrate_eval.core.results import TaskInfo

    tasks = [
        TaskInfo(
            name="qa", description="questions « »", output="free_text", metrics=["chrf"],
            min_parity=0.8, n=len(ids), source="suite",
        )
    ]  # fmt: skip
    assignment = {ex_id: "qa" for ex_id in reversed(ids)}
    path = tmp_path / "tasks.json"
    run_folder.write_tasks(path, tasks, ids, assignment)
    expected = {
        "tasks": [t.model_dump(mode="json") for t in tasks],
        "assignment": {ex_id: "qa" for ex_id in ids},
    }
    assert path.read_text(encoding="utf-8") == json.dumps(expected, indent=1, ensure_ascii=False)
    assert list(json.loads(path.read_text(encoding="utf-8"))["assignment"]) == ids
