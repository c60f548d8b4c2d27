"""A run's fixed cost: nothing is imported that the command does not use (issue 17).

Time is not measured here (``benchmarks/bench_fixed.py`` does that): each command runs in a
fresh interpreter, which reports the modules it ended with, and those are checked.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.core.hardware import gpu_table
from migrate_eval.core.prices import price_table

REPO = Path(__file__).resolve().parents[1]

#: Runs the ``migrate-eval`` command (``console_main``) once per argument list (argv[2]: a JSON
#: list of lists) and writes, for each, its exit code, the names of every module loaded so far,
#: those loaded when a run's replay was about to start (``EarlyChrf``, made just before its
#: background work and the replay start; None when no replay started) and the garbage
#: collections per generation so far.
_CHILD = """
import gc, importlib.machinery, json, sys
from migrate_eval.cli import console_main
at_replay = []
class Patch:  # EarlyChrf records the modules loaded, once a command imports it
    def find_spec(self, name, path=None, target=None):
        if name != "migrate_eval.score.early":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        execute = spec.loader.exec_module
        def exec_module(module):
            execute(module)
            made = module.EarlyChrf.__init__
            def record(self, *args, **kwargs):
                at_replay.append(sorted(sys.modules))
                made(self, *args, **kwargs)
            module.EarlyChrf.__init__ = record
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Patch())
dest, commands = sys.argv[1], json.loads(sys.argv[2])
out = []
for args in commands:
    sys.argv = ["migrate-eval", *args]
    at_replay.clear()
    try:
        console_main()
        code = 0
    except SystemExit as e:
        code = e.code
    collections = [g["collections"] for g in gc.get_stats()]
    out.append({"code": code, "modules": sorted(sys.modules), "gc": collections,
                "at_replay": at_replay[0] if at_replay else None})
with open(dest, "w", encoding="utf-8") as f:
    json.dump(out, f)
"""

#: Libraries no command needs for --help / --version (nor for reading its options).
HEAVY = {
    "pandas",
    "numpy",
    "pyarrow",
    "aiohttp",
    "datasets",
    "jinja2",
    "pydantic",
    "jsonschema",
    "yaml",
    "sqlite3",
    "asyncio",
}

#: What the shipped demo run never imports: no request is sent (every answer comes from the
#: recordings through the cache), chrF is computed without lm-eval or sacrebleu, no judge, no
#: vendor SDK, the local executor, no adaptation or export.
NEVER_ON_THE_DEMO_PATH = {
    "aiohttp",
    "lm_eval",
    "sacrebleu",
    "ray",
    "openai",
    "anthropic",
    "boto3",
    "httpx",
    "tiktoken",
    "duckdb",
    "migrate_eval.adapt",
    "migrate_eval.export",
    "migrate_eval.replay.cluster",
    "migrate_eval.replay.baseline",
    "migrate_eval.report.chromium",
    "migrate_eval.report.over_time",
}
#: ...and, once its answers and its free-text embeddings are cached (every run after the
#: first), not the embedding model either.
NOT_ON_A_CACHED_DEMO_RUN = NEVER_ON_THE_DEMO_PATH | {
    "scipy",
    "torch",
    "transformers",
    "sentence_transformers",
    "datasets",
    "sklearn",
    "migrate_eval.core.embeddings",
    "migrate_eval.core._minilm",
}


def _child(tmp_path: Path, *commands: list[str]) -> list[dict[str, Any]]:
    out = tmp_path / "modules.json"
    env = {
        **os.environ,
        # this checkout's package, whatever is installed
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "MIGRATE_EVAL_TEMPLATE_CACHE": str(tmp_path / "templates"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out), json.dumps(list(commands))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _loaded(modules: list[str], names: set[str]) -> set[str]:
    """The ``names`` (packages or modules) among ``modules``, a submodule counting as its
    package."""
    return {n for n in names for m in modules if m == n or m.startswith(n + ".")}


def test_help_and_version_import_no_heavy_library(tmp_path: Path) -> None:
    commands = [["--help"], ["--version"], ["run", "--help"], ["gate", "--help"]]
    for args, seen in zip(commands, _child(tmp_path, *commands), strict=True):
        assert seen["code"] == 0, args
        assert _loaded(seen["modules"], HEAVY) == set(), args


def test_importing_the_api_imports_no_frame_or_network_library() -> None:
    """``import migrate_eval`` / ``migrate_eval.api`` (a script, a notebook, every command):
    pandas, NumPy, Arrow, aiohttp and jinja2 come with the functions that use them."""
    code = "import json, sys, migrate_eval.api; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    heavy = {"pandas", "numpy", "pyarrow", "aiohttp", "jinja2", "datasets", "jsonschema"}
    assert _loaded(json.loads(proc.stdout), heavy) == set()


def test_demo_run_imports_only_what_it_uses(tmp_path: Path) -> None:
    demo = ["run", "--offline", "-q", "--out"]
    (first,) = _child(tmp_path, [*demo, str(tmp_path / "first")])
    (cached,) = _child(tmp_path, [*demo, str(tmp_path / "cached")])
    for seen, run in ((first, "first"), (cached, "cached")):
        assert seen["code"] == 1, run  # the demo's gate fails by design: the run went to its end
        assert (tmp_path / run / "report.html").stat().st_size > 0
        # what a run does use is there: the checks below are not vacuous
        used = {"pandas", "jinja2", "migrate_eval.report.html", "migrate_eval.score.semantic"}
        assert _loaded(seen["modules"], used) == used, run
    assert _loaded(first["modules"], NEVER_ON_THE_DEMO_PATH) == set()
    # what only the stages after the replay use is imported while the replay waits on the
    # vendors (api._import_later_stages), not before it starts
    for seen, run in ((first, "first"), (cached, "cached")):
        assert seen["at_replay"] is not None, run
        later = {"pandas", "jsonschema", "jinja2", "migrate_eval.report", "pyarrow.parquet"}
        later.add("pyarrow.compute")  # timestamps viewed as int64, whole batches not taken
        assert _loaded(seen["at_replay"], later) == set(), run
    assert _loaded(cached["modules"], NOT_ON_A_CACHED_DEMO_RUN) == set()
    # the collector does not traverse the imported libraries over and over (cli.GC_THRESHOLDS):
    # with Python's defaults the cached run made ~280 young, ~25 middle and 2 full collections
    young, middle, full = cached["gc"]
    assert full == 0 and middle <= 3 and young <= 60, cached["gc"]


def test_the_cli_called_in_process_keeps_the_callers_gc_settings() -> None:
    """Only the ``migrate-eval`` process tunes its collector; a program (or a test) calling
    ``main`` keeps its own thresholds."""
    before = gc.get_threshold()
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    assert gc.get_threshold() == before


def test_shipped_tables_read_alike_by_both_yaml_parsers() -> None:
    """The price and GPU tables are read with libyaml's parser (every run reads the price
    table): the same data as PyYAML's own safe loader."""
    data = REPO / "migrate_eval" / "data"
    for table, name in ((price_table(), "prices.yaml"), (gpu_table(), "gpus.yaml")):
        expected = type(table).model_validate(
            yaml.safe_load((data / name).read_text(encoding="utf-8"))
        )
        assert table == expected, name
