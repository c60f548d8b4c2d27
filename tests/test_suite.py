from __future__ import annotations

import re
from pathlib import Path

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.suite import apply_candidate_params, load_suite, parse_candidate_spec

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


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nomodel",
        "=openai:x",
        "Bad Name=openai:x",
        "openai:",
        # a base URL without its scheme, which would be folded into the model name
        "openai-compatible:m@127.0.0.1:8000/v1",
        "llama=openai-compatible:meta-llama/Llama-3.1-8B-Instruct@localhost:8000/v1",
        "openai-compatible:m@vllm:8000",
        "openai-compatible:m@api.together.xyz",
        "openai-compatible:m@http://",  # a scheme without a host
        "http://127.0.0.1:8000/v1",  # a URL without a provider
        "openai-compatible:http://127.0.0.1:8000/v1",  # the URL where the model goes
        "openai-compatible:my model",
    ],
)
def test_bad_candidate_spec_is_a_usage_error_showing_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ConfigError, match="accepted forms:") as info:
        parse_candidate_spec(spec)
    assert info.value.exit_code == 2
    assert "@BASE_URL" in str(info.value) and "--candidate-param" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "model"),
    [
        ("anthropic:claude-3-5-sonnet@20240620", "claude-3-5-sonnet@20240620"),  # Vertex style
        ("x=openai-compatible:org/model@v2", "org/model@v2"),
    ],
)
def test_a_model_version_after_at_is_kept_in_the_model(spec: str, model: str) -> None:
    c = parse_candidate_spec(spec)
    assert c.model == model and c.base_url is None


def test_candidate_params_set_parameters_price_and_limits() -> None:
    llama = parse_candidate_spec("llama-3.1=openai-compatible:m@http://h/v1")
    claude = parse_candidate_spec("claude=anthropic:c")
    out = apply_candidate_params(
        [llama, claude],
        [
            "llama-3.1.temperature=0",  # a name holding dots: the longest name wins
            "llama-3.1.price.input_per_mtok=0.2",
            "llama-3.1.concurrency=8",
            "llama-3.1.rpm=600",
            "claude.seed=null",  # null: removed from every request
            "claude.params.stream=true",  # params.KEY: a request parameter, not the setting
            "claude.stop=[END, STOP]",
            "claude.strict_params=true",
        ],
    )
    assert out[0].params == {"temperature": 0} and out[0].concurrency == 8
    assert out[0].price is not None and out[0].price.input_per_mtok == 0.2
    assert out[0].rpm == 600
    assert out[1].params == {"seed": None, "stream": True, "stop": ["END", "STOP"]}
    assert out[1].stream is False and out[1].strict_params is True


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("claude.temperature", "expected NAME.KEY=VALUE"),
        ("gpt.temperature=0", "no candidate named 'gpt'"),
        ("claude.concurrency=0", "concurrency"),
        ("claude.price.per_token=1", "price.per_token"),
        ("claude.name=other", "cannot be set"),
    ],
)
def test_bad_candidate_param_is_a_usage_error(assignment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        apply_candidate_params([parse_candidate_spec("claude=anthropic:c")], [assignment])
    assert info.value.exit_code == 2 and "--candidate-param" in str(info.value)
