from __future__ import annotations

from pathlib import Path

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.suite import load_suite, parse_candidate_spec

MINIMAL = """
name: t
logs: [logs/a.jsonl]
candidates:
  - {name: c1, model: m}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_minimal_suite_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    s = load_suite(write(tmp_path, MINIMAL))
    assert s.resolve(s.logs[0].path) == tmp_path.resolve() / "logs/a.jsonl"
    assert s.candidates[0].provider == "openai-compatible"
    assert s.thresholds.min_parity == 0.85


def test_folder_means_its_suite_yaml(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    assert load_suite(tmp_path).name == "t"


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "thresholds: {min_party: 0.9}\n")
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert str(p) in str(e.value)
    assert "thresholds.min_party" in str(e.value)


def test_bad_value_and_duplicate_names(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "  - {name: c1, model: m2, concurrency: 0}\n")
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert "candidates.1.concurrency" in str(e.value)
    p = write(tmp_path, MINIMAL + "  - {name: c1, model: m2}\n")
    with pytest.raises(ConfigError, match="duplicate candidate name"):
        load_suite(p)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = write(tmp_path, "name: t\nlogs: [a\ncandidates: {\n")
    with pytest.raises(ConfigError, match=r"suite\.yaml:\d+: not valid YAML"):
        load_suite(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.yaml")


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL.replace("model: m}", "model: m, base_url: '${X_URL:-http://127.0.0.1:1/v1}'}")
    p = write(tmp_path, text)
    assert load_suite(p).candidates[0].base_url == "http://127.0.0.1:1/v1"
    monkeypatch.setenv("X_URL", "http://127.0.0.1:2/v1")
    assert load_suite(p).candidates[0].base_url == "http://127.0.0.1:2/v1"
    p = write(tmp_path, MINIMAL.replace("model: m}", "model: '${NOT_SET_ANYWHERE}'}"))
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        load_suite(p)


@pytest.mark.parametrize(
    ("spec", "name", "provider", "model", "url"),
    [
        (
            "llama=openai-compatible:meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1",
            "llama",
            "openai-compatible",
            "meta-llama/Llama-3.1-8B-Instruct",
            "http://127.0.0.1:8000/v1",
        ),
        (
            "openai-compatible:llama3.1:8b@http://localhost:11434/v1",
            "llama3.1-8b",
            "openai-compatible",
            "llama3.1:8b",
            "http://localhost:11434/v1",
        ),
        ("openai:gpt-4o-mini", "gpt-4o-mini", "openai", "gpt-4o-mini", None),
        (
            "x=openai-compatible:org/model@v2@https://h/v1",
            "x",
            "openai-compatible",
            "org/model@v2",
            "https://h/v1",
        ),
    ],
)
def test_candidate_spec(spec: str, name: str, provider: str, model: str, url: str | None) -> None:
    c = parse_candidate_spec(spec)
    assert (c.name, c.provider, c.model, c.base_url) == (name, provider, model, url)


@pytest.mark.parametrize("spec", ["", "nomodel", "=openai:x", "Bad Name=openai:x", "openai:"])
def test_bad_candidate_spec(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_candidate_spec(spec)
