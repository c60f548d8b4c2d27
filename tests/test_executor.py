"""Choosing the executor (`--executor`, MIGRATE_EVAL_EXECUTOR, the suite's `executor:`) and the
ray extra missing: a usage error with the install line, exit 2, before any log is read.
Runs without Ray (its absence is simulated)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.core.errors import ConfigError, MissingExtraError
from migrate_eval.core.executor import ENV_EXECUTOR, import_ray, resolve_executor
from migrate_eval.core.paths import demo_suite_path
from migrate_eval.core.suite import load_suite

HINT = "pip install 'migrate-eval[ray]'"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


def test_local_is_the_default_and_the_option_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_EXECUTOR, raising=False)
    assert resolve_executor(None) == "local"
    assert resolve_executor(None, "ray") == "ray"
    monkeypatch.setenv(ENV_EXECUTOR, "ray")
    assert resolve_executor(None, "local") == "ray"
    assert resolve_executor("local", "ray") == "local"
    monkeypatch.setenv(ENV_EXECUTOR, "spark")
    with pytest.raises(ConfigError, match=r"MIGRATE_EVAL_EXECUTOR: 'spark' is not an executor"):
        resolve_executor(None)


def test_suite_key(tmp_path: Path) -> None:
    text = demo_suite_path().read_text(encoding="utf-8") + "\nexecutor: ray\n"
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(text, encoding="utf-8")
    assert load_suite(suite_file).executor == "ray"
    assert load_suite(demo_suite_path()).executor == "local"


def test_missing_extra_names_the_install_line(no_ray: None) -> None:
    with pytest.raises(MissingExtraError, match=r"--executor ray needs the 'ray' package"):
        import_ray()


@pytest.mark.parametrize("how", ["option", "env"])
def test_run_without_the_extra_exits_2_with_the_hint(
    how: str, no_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["run", "-q", "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite")]
    if how == "option":
        args += ["--executor", "ray"]
    else:
        monkeypatch.setenv(ENV_EXECUTOR, "ray")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert HINT in result.output
    assert not (tmp_path / "run").exists()  # nothing was run


def test_ray_is_imported_only_when_a_run_asks_for_it() -> None:
    code = (
        "import sys, migrate_eval.cli, migrate_eval.api, migrate_eval.replay.cluster; "
        "print('ray' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_a_server_the_run_starts_cannot_be_split_across_workers() -> None:
    from migrate_eval.core.suite import CandidateSpec
    from migrate_eval.replay.cluster import check_candidates

    check_candidates([CandidateSpec(name="a", model="m", base_url="http://127.0.0.1:1/v1")])
    with pytest.raises(ConfigError, match=r"candidate 'v' \(vllm:\) is a model server"):
        check_candidates([CandidateSpec(name="v", provider="vllm", model="org/m")])
