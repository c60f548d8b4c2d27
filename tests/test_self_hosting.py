"""Self-hosted candidates: the managed-server launcher (vllm:, sglang:, llama-server:), the
hardware-fit estimate and the GPU-hour cost projection (docs/self-hosting.md).

The launcher is tested with a stand-in server (tests/stand_in_server.py) given as the candidate's
``options.command``: a real subprocess on loopback that speaks /health, /v1/models and
/v1/chat/completions. No GPU and no vLLM are needed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import migrate_eval
from migrate_eval.cli import main
from migrate_eval.core.errors import ExitCode, ServerError
from migrate_eval.core.hardware import (
    GIB,
    estimate,
    find_model_config,
    gpu_memory,
    load_model_shape,
    normalise_quantization,
    parse_model_config,
)
from migrate_eval.core.suite import CandidateSpec, LogSpec, Suite
from migrate_eval.replay import servers
from migrate_eval.replay.engine import ReplayInterrupted
from migrate_eval.replay.providers import managed
from migrate_eval.replay.servers import group_members
from migrate_eval.verdict.costs import HOURS_PER_MONTH
from tests.run_rows import response_rows

STAND_IN = Path(__file__).resolve().parent / "stand_in_server.py"
REPO = Path(__file__).resolve().parents[1]


def _line(i: int) -> dict[str, Any]:
    question = f"question number {i}"
    return {
        "request": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": question}],
        },
        "response": {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 1760000000 + 60 * i,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo: {question}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
        "metadata": {"feature": "echo"},
    }


def write_logs(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps(_line(i)) + "\n" for i in range(n)), encoding="utf-8")
    return path


def stand_in(*flags: str) -> list[str]:
    return [sys.executable, str(STAND_IN), "--port", "{port}", "--model", "{model}", *flags]


def candidate(name: str = "llama", model: str = "m", **options: Any) -> CandidateSpec:
    options.setdefault("command", stand_in("--child"))
    options.setdefault("startup_timeout", 60)
    options.setdefault("stop_timeout", 5)
    return CandidateSpec(name=name, provider="vllm", model=model, options=options, concurrency=1)


def make_suite(tmp_path: Path, candidates: list[CandidateSpec], n: int = 6) -> Suite:
    logs = write_logs(tmp_path / "logs.jsonl", n)
    return Suite(
        name="self-hosted",
        logs=[LogSpec(path=str(logs))],
        candidates=candidates,
        base_dir=tmp_path,
    )


def run(tmp_path: Path, suite: Suite, **kwargs: Any) -> migrate_eval.RunOutcome:
    return migrate_eval.run(
        suite,
        out=kwargs.pop("out", tmp_path / "run"),
        cache=tmp_path / "cache.sqlite",
        baseline=False,
        history=False,
        **kwargs,
    )


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie that nobody reaped does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] not in ("Z", "X")


def assert_stopped(log: Path) -> None:
    """The server (its pid as the launcher logged it), its child (when it had started one)
    and every other process of its group are gone."""
    text = log.read_text(encoding="utf-8")
    leader = re.search(r"^\[migrate-eval\] server pid (\d+)$", text, re.M)
    assert leader, text
    pid = int(leader.group(1))
    assert not alive(pid), "the server process is still running"
    for child in re.findall(r"^CHILD (\d+)$", text, re.M):
        assert not alive(int(child)), "the server's child process is still running (orphan)"
    assert group_members(pid) == [], "a process of the server's group is left"


pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")


# -- the launcher ---------------------------------------------------------------------------


def test_server_starts_answers_the_replay_and_stops_with_its_process_group(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    outcome = run(tmp_path, make_suite(tmp_path, [candidate()]), notify=said.append)
    result = outcome.results.candidates[0]
    assert result.provider == "vllm"
    assert result.errors.count == 0
    log = outcome.run_dir / "servers" / "llama.log"
    assert "serving m on 127.0.0.1:" in log.read_text(encoding="utf-8")
    assert_stopped(log)
    assert any(line.startswith("hardware fit: llama:") for line in said)


def test_a_cached_rerun_starts_no_server(tmp_path: Path) -> None:
    run(tmp_path, make_suite(tmp_path, [candidate()]))
    # the same candidate whose server cannot even start: every answer is in the cache
    broken = candidate(command=[str(tmp_path / "no-such-server"), "--port", "{port}"])
    outcome = run(tmp_path, make_suite(tmp_path, [broken]), out=tmp_path / "run2")
    assert outcome.results.candidates[0].errors.count == 0
    assert not (outcome.run_dir / "servers").exists()


def test_a_server_that_never_becomes_healthy_is_an_infrastructure_error(tmp_path: Path) -> None:
    bad = candidate(command=stand_in("--child", "--never-healthy"), startup_timeout=3.0)
    with pytest.raises(ServerError, match=r"not healthy within 3 s.*GET /health never") as e:
        run(tmp_path, make_suite(tmp_path, [bad]))
    assert e.value.exit_code == ExitCode.INFRASTRUCTURE
    assert isinstance(e.value.log, Path) and str(e.value.log) in str(e.value)
    assert_stopped(e.value.log)
    assert not (tmp_path / "run").exists()  # no run folder from a run that could not replay
    assert servers._POOL == {}  # a later run starts afresh


def test_a_server_that_dies_mid_run_exits_3_keeps_the_answers_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    suite_file = tmp_path / "suite.yaml"
    write_logs(tmp_path / "logs.jsonl", 8)
    command = stand_in("--child", "--die-after", "3")
    suite_file.write_text(
        "name: dies\nlogs: [logs.jsonl]\ncandidates:\n"
        "  - name: llama\n    provider: vllm\n    model: m\n    concurrency: 1\n"
        f"    options:\n      stop_timeout: 5\n      command: {json.dumps(command)}\n",
        encoding="utf-8",
    )
    cache = tmp_path / "cache.sqlite"
    result = CliRunner().invoke(
        main,
        ["run", str(suite_file), "--out", str(tmp_path / "run"), "--cache", str(cache)],
    )
    assert result.exit_code == 3, result.output
    assert "exited with code 7 during the replay" in result.output
    assert "answers received before are cached" in result.output
    assert "| dying after 3 answers" in result.output  # the end of the server's log
    assert servers._POOL == {}
    stats = migrate_eval.cache_stats(cache)
    assert sum(row["answers"] for row in stats["identities"]) == 3
    logs = list((tmp_path / "servers").glob("llama-*.log"))
    assert len(logs) == 1
    assert_stopped(logs[0])


def test_ctrl_c_stops_the_server(tmp_path: Path) -> None:
    sent: list[int] = []

    def progress(event: Any) -> None:
        if event.done >= 2 and not sent:
            sent.append(event.done)
            os.kill(os.getpid(), signal.SIGINT)

    slow = candidate(command=stand_in("--child", "--delay", "0.2"))
    with pytest.raises(ReplayInterrupted):
        run(tmp_path, make_suite(tmp_path, [slow], n=30), progress=progress)
    logs = list((tmp_path / "servers").glob("llama-*.log"))
    assert len(logs) == 1
    assert_stopped(logs[0])


def test_a_base_model_and_its_lora_adapter_share_one_server(tmp_path: Path) -> None:
    command = stand_in("--child", "--model", "sql")
    options = {"enable_lora": True, "lora_modules": ["sql=/adapters/sql"], "command": command}
    base = candidate("base", "m", **options)
    adapter = candidate("sql", "m@sql", **options)
    outcome = run(tmp_path, make_suite(tmp_path, [base, adapter]))
    rows = response_rows(outcome.run_dir)
    texts: dict[str, set[bool]] = {}
    for row in rows:
        content = (row.get("response") or {}).get("text") or ""
        texts.setdefault(row["candidate"], set()).add(content.startswith("[sql] "))
    assert texts == {"base": {False}, "sql": {True}}
    logs = list((outcome.run_dir / "servers").iterdir())
    assert [p.name for p in logs] == ["base.log"]  # one server for both candidates
    assert_stopped(logs[0])


def test_an_adapter_not_in_lora_modules_is_a_usage_error(tmp_path: Path) -> None:
    bad = candidate("sql", "m@sql", enable_lora=True, lora_modules={"other": "/a"})
    with pytest.raises(migrate_eval.ConfigError, match="'@sql' names no LoRA adapter"):
        run(tmp_path, make_suite(tmp_path, [bad]))


def vllm_run_args(logs: Path, tmp_path: Path) -> list[str]:
    model = "vllm:meta-llama/Llama-3.1-8B-Instruct"
    out, cache = str(tmp_path / "run"), str(tmp_path / "c.sqlite")
    return ["run", "--logs", str(logs), "--candidate", model, "--out", out, "--cache", cache]


def test_missing_vllm_exits_2_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = managed.importlib.util.find_spec
    monkeypatch.setattr(
        managed.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "vllm" else real(name, *a),
    )
    logs = write_logs(tmp_path / "logs.jsonl", 4)
    result = CliRunner().invoke(
        main,
        vllm_run_args(logs, tmp_path),
    )
    assert result.exit_code == 2, result.output
    assert "provider 'vllm' cannot start here: missing vLLM" in result.output
    assert "pip install vllm" in result.output


def test_no_gpu_exits_2_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(managed.VLLMProvider, "missing", lambda self: None)
    monkeypatch.setattr(managed, "gpu_present", lambda: False)
    logs = write_logs(tmp_path / "logs.jsonl", 4)
    result = CliRunner().invoke(
        main,
        vllm_run_args(logs, tmp_path),
    )
    assert result.exit_code == 2, result.output
    assert "missing a GPU" in result.output


def test_server_commands_carry_the_launch_options() -> None:
    spec = CandidateSpec(
        name="q",
        provider="vllm",
        model="org/model",
        options={
            "quantization": "awq",
            "max_model_len": 8192,
            "gpu_memory_utilization": 0.85,
            "enable_lora": True,
            "lora_modules": {"sql": "/a/sql"},
        },
    )
    argv = managed.VLLMProvider(spec).command()
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(argv)
    for part in (
        "--model {model}",
        "--port {port}",
        "--quantization awq",
        "--max-model-len 8192",
        "--gpu-memory-utilization 0.85",
        "--enable-lora --lora-modules sql=/a/sql",
    ):
        assert part in joined
    llama = CandidateSpec(name="g", provider="llama-server", model="/m/x.Q4_K_M.gguf")
    assert managed.LlamaServerProvider(llama).command()[:3] == ["llama-server", "-m", "{model}"]
    with pytest.raises(migrate_eval.ConfigError, match=r"options\.max_model_len"):
        managed.VLLMProvider(spec.model_copy(update={"options": {"max_model_len": "big"}}))


def _served(model: str, provider: str, **options: Any) -> CandidateSpec:
    """A candidate started with its kind's own command (not the stand-in)."""
    return CandidateSpec(name="c", provider=provider, model=model, options=options)


@pytest.mark.parametrize(
    ("model", "vllm", "sglang"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", "hermes", "qwen25"),
        ("/models/qwen3-coder-30b-a3b", "qwen3_coder", "qwen3_coder"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json", "llama3"),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4_pythonic", "pythonic"),
        ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", "mistral", "mistral"),
        ("deepseek-ai/DeepSeek-V3-0324", "deepseek_v3", "deepseekv3"),
        ("openai/gpt-oss-120b", "openai", "gpt-oss"),
        ("/data/llama-3-runs/google-gemma-3-27b-it", None, None),  # the folder's own name
    ],
)
def test_servers_parse_tool_calls_in_the_model_family_s_format(
    model: str, vllm: str | None, sglang: str | None
) -> None:
    """Bug: vLLM and SGLang servers were started without a tool-call parser, so every logged
    request with tools and tool_choice auto was refused by the server (an error row each)."""
    v = " ".join(managed.VLLMProvider(_served(model, "vllm")).command())
    s = " ".join(managed.SGLangProvider(_served(model, "sglang")).command())
    if vllm is None:
        assert "--tool-call-parser" not in v and "--tool-call-parser" not in s
    else:
        assert f"--enable-auto-tool-choice --tool-call-parser {vllm}" in v
        assert f"--tool-call-parser {sglang}" in s


def test_tool_call_parser_option_overrides_or_turns_tool_calls_off() -> None:
    chosen = managed.VLLMProvider(_served("org/custom-model", "vllm", tool_call_parser="pythonic"))
    assert "--tool-call-parser pythonic" in " ".join(chosen.command())
    assert chosen.identity()["tool_call_parser"] == "pythonic"  # other answers: other entries
    off = managed.VLLMProvider(_served("Qwen/Qwen2.5-7B", "vllm", tool_call_parser="none"))
    assert "--tool-call-parser" not in off.command()
    gguf = CandidateSpec(name="g", provider="llama-server", model="/m/x.Q4_K_M.gguf")
    assert "--jinja" in managed.LlamaServerProvider(gguf).command()
    plain = gguf.model_copy(update={"options": {"tool_call_parser": "none"}})
    assert "--jinja" not in managed.LlamaServerProvider(plain).command()


def test_the_cache_identity_ignores_the_port_and_names_the_quantisation() -> None:
    spec = candidate(quantization="awq")
    ident = managed.VLLMProvider(spec).identity()
    assert ident == {"provider": "vllm", "model": "m", "quantization": "awq"}


# -- the hardware fit: published figures ------------------------------------------------------

#: config.json values as the models publish them (Hugging Face model repositories).
LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "max_position_embeddings": 131072,
}
LLAMA_31_70B = {
    **LLAMA_31_8B,
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
}
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
QWEN25_72B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 8192,
    "intermediate_size": 29568,
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def shape_of(tmp_path: Path, name: str, config: dict[str, Any]) -> Any:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    found = find_model_config(str(folder))
    assert found == folder / "config.json"
    return load_model_shape(found)


def test_llama_31_8b_matches_its_published_sizes(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "llama8b", LLAMA_31_8B)
    # 8.03B parameters (model card)
    assert shape.parameters == pytest.approx(8.03e9, rel=0.005)
    # llama.cpp's quantize table for Llama-3.1-8B: F16 14.96 GiB, Q4_K_M 4.58 GiB, Q8_0 7.95 GiB
    assert shape.weight_bytes("fp16") / GIB == pytest.approx(14.96, rel=0.01)
    assert shape.weight_bytes("q4_k_m") / GIB == pytest.approx(4.58, rel=0.01)
    assert shape.weight_bytes("q8_0") / GIB == pytest.approx(7.95, rel=0.01)
    # hugging-quants' AWQ int4 checkpoint of the 8B Instruct model: 5.73 GB of safetensors
    assert shape.weight_bytes("awq") / 1e9 == pytest.approx(5.73, rel=0.02)
    # Hugging Face's Llama 3.1 post: KV cache of 128k tokens in 16 bits = 15.62 GB (GiB)
    assert shape.kv_bytes_per_token() == 128 * 1024
    assert shape.kv_bytes_per_token() * 128_000 / GIB == pytest.approx(15.62, rel=0.001)


def test_llama_31_70b_matches_its_published_sizes(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "llama70b", LLAMA_31_70B)
    assert shape.parameters == pytest.approx(70.55e9, rel=0.005)
    # 16-bit weights ~141 GB: the post's "140 GB"
    assert shape.weight_bytes("bf16") / 1e9 == pytest.approx(140, rel=0.01)
    # hugging-quants' AWQ int4 checkpoint: 8 full shards of 4.89-4.97 GB and a smaller ninth
    assert 8 * 4.89 < shape.weight_bytes("int4") / 1e9 < 9 * 4.97
    # the post: 39.06 GB (GiB) of KV cache at 128k tokens
    assert shape.kv_bytes_per_token() * 128_000 / GIB == pytest.approx(39.06, rel=0.001)


def test_mistral_7b_matches_its_published_sizes(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "mistral", MISTRAL_7B)
    assert shape.parameters == pytest.approx(7.24e9, rel=0.005)  # "7.24B params"
    assert shape.weight_bytes("bf16") / 1e9 == pytest.approx(14.48, rel=0.01)
    assert shape.kv_bytes_per_token() == 128 * 1024


def test_qwen25_72b_matches_its_published_parameter_counts(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "qwen", QWEN25_72B)
    # model card: 72.7B parameters, 70.0B without the embeddings
    assert shape.parameters == pytest.approx(72.7e9, rel=0.005)
    assert shape.parameters - shape.embedding_parameters == pytest.approx(70.0e9, rel=0.005)
    assert shape.kv_bytes_per_token() == 2 * 80 * 8 * 128 * 2


def test_fit_against_named_gpus(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "llama8b", LLAMA_31_8B)
    on_l4 = estimate(shape, quantization="bf16", context_tokens=4096, concurrency=16, gpu="L4")
    assert on_l4.fits is False and on_l4.gpus_needed == 2
    assert "one L4 holds the weights and" in " ".join(on_l4.notes)
    awq = estimate(shape, quantization="awq", context_tokens=4096, concurrency=16, gpu="L4")
    assert awq.fits is True and awq.gpus_needed == 1
    assert awq.max_concurrency is not None and awq.max_concurrency >= 16
    big = shape_of(tmp_path, "llama70b", LLAMA_31_70B)
    h100 = estimate(big, quantization="bf16", context_tokens=8192, concurrency=8, gpu="H100")
    assert h100.fits is False and h100.gpus_needed == 4
    h200 = estimate(big, quantization="fp8", context_tokens=8192, concurrency=8, gpu="H200")
    assert h200.fits is True
    assert "fits one H200" in h200.summary()
    # a size in bytes works as a GPU; the total is weights + KV cache + overhead
    raw = estimate(shape, quantization="fp16", context_tokens=1000, concurrency=2, gpu=48 * GIB)
    assert raw.gpu_bytes == 48 * GIB
    assert raw.total_bytes == raw.weights_bytes + raw.kv_cache_bytes + raw.overhead_bytes  # type: ignore[operator]
    assert raw.kv_cache_bytes == 128 * 1024 * 1000 * 2


# Gemma 3 27B (text part of google/gemma-3-27b-it's config.json): a 1,024-token window in five
# layers of six, the sixth attends to everything
GEMMA3_27B = {
    "model_type": "gemma3",
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "sliding_window": 1024,
        "vocab_size": 262208,
    },
}
# gpt-oss-120b: layers alternate a 128-token window and full attention (its layer_types)
GPT_OSS_120B = {
    "model_type": "gpt_oss",
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_attention_heads": 64,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_local_experts": 128,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 18,
    "vocab_size": 201088,
}
# DeepSeek-V3: multi-head latent attention
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "num_hidden_layers": 61,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "vocab_size": 129280,
}


def test_sliding_window_layers_cache_at_most_their_window(tmp_path: Path) -> None:
    """Bug: every layer was sized as full attention, so Gemma 3 27B's KV cache at 32K tokens
    came out 5.3x too large and a model that fits one H100 was said not to."""
    gemma = shape_of(tmp_path, "gemma3", GEMMA3_27B)
    assert (gemma.sliding_window, gemma.sliding_layers, gemma.full_layers) == (1024, 52, 10)
    per_layer = 2 * 16 * 128 * 2
    assert gemma.kv_bytes_per_request(32_768) == (10 * 32_768 + 52 * 1024) * per_layer
    assert gemma.kv_bytes_per_request(512) == 62 * 512 * per_layer  # within the window: all
    fit = estimate(gemma, quantization="bf16", context_tokens=32_768, concurrency=4, gpu="H100")
    assert fit.kv_cache_bytes == 4 * gemma.kv_bytes_per_request(32_768)
    assert fit.fits is True, fit.summary()
    full = 62 * 32_768 * per_layer * 4  # what the full-attention estimate said
    assert fit.weights_bytes + full > 0.9 * 80 * GIB  # type: ignore[operator]
    assert any("52 of 62 layers attend to a 1,024-token window" in n for n in fit.notes)
    oss = shape_of(tmp_path, "gptoss", GPT_OSS_120B)
    assert (oss.sliding_window, oss.sliding_layers, oss.full_layers) == (128, 18, 18)
    assert oss.kv_bytes_per_request(131_072) == (18 * 131_072 + 18 * 128) * 2 * 8 * 64 * 2
    # Gemma 2 alternates from its first layer; Mistral 7B v0.1 windows every layer; Qwen 2.5
    # names a window it does not use
    gemma2 = parse_model_config(
        {**MISTRAL_7B, "model_type": "gemma2", "num_hidden_layers": 42, "sliding_window": 4096},
        source="gemma2",
    )
    assert (gemma2.sliding_layers, gemma2.full_layers) == (21, 21)
    mistral01 = parse_model_config({**MISTRAL_7B, "sliding_window": 4096}, source="m")
    assert (mistral01.sliding_layers, mistral01.full_layers) == (32, 0)
    qwen = parse_model_config(
        {
            **QWEN25_72B,
            "sliding_window": 131072,
            "use_sliding_window": False,
            "max_window_layers": 70,
        },
        source="qwen",
    )
    assert qwen.sliding_window is None and qwen.full_layers == 80


def test_latent_attention_caches_one_latent_a_token(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "dsv3", DEEPSEEK_V3)
    # "Insights into DeepSeek-V3" (ISCA 2025), table 1: 70.272 KB of KV cache a token in BF16
    assert shape.kv_bytes_per_token() == 70_272
    assert shape.kv_bytes_per_request(1000, "fp8") == 70_272 // 2 * 1000


def test_unknown_gpu_and_quantisation_are_usage_errors() -> None:
    with pytest.raises(migrate_eval.ConfigError, match=r"unknown GPU 'T4'.*L4, A10G"):
        gpu_memory("T4")
    assert gpu_memory("24GiB") == ("24GiB", 24 * GIB)
    assert gpu_memory("a100-80g")[0] == "A100-80G"
    with pytest.raises(migrate_eval.ConfigError, match="quantization 'int3'"):
        normalise_quantization("int3")
    assert normalise_quantization("AWQ_Marlin") == "awq"
    assert normalise_quantization("bfloat16") == "bf16"


def test_fit_and_gpu_cost_in_results(tmp_path: Path) -> None:
    config = tmp_path / "llama8b"
    config.mkdir()
    (config / "config.json").write_text(json.dumps(LLAMA_31_8B), encoding="utf-8")
    spec = candidate(gpu="L4", config=str(config))
    outcome = run(tmp_path, make_suite(tmp_path, [spec]))
    result = outcome.results.candidates[0]
    fit = result.hardware
    assert fit is not None and fit.gpu == "L4" and fit.fits is True
    assert fit.context_tokens == 15 and fit.concurrency == 1  # logged usage: 10 + 5 tokens
    cost = result.cost
    assert cost.gpu == "L4" and cost.gpu_hour_usd == pytest.approx(0.805)
    assert cost.servers == 1 and cost.gpus == 1
    assert cost.monthly_usd == pytest.approx(0.805 * HOURS_PER_MONTH)
    assert cost.throughput_rps is not None and cost.throughput_tokens_per_s is not None
    assert cost.price_source is not None and "GPU table" in cost.price_source
    assert "a server is 1 x L4 at $0.805/GPU-hour" in (cost.cost_basis or "")
    saved = json.loads((outcome.run_dir / "results.json").read_text("utf-8"))
    assert saved["candidates"][0]["hardware"]["gpu"] == "L4"
    summary = (outcome.run_dir / "summary.md").read_text("utf-8")
    assert "## Hardware fit" in summary and "fits one L4" in summary
    assert "1 server (1 x L4)" in summary
    assert "answer tokens/s per server" in summary
    html = (outcome.run_dir / "report.html").read_text("utf-8")
    assert "Hardware fit" in html and "fits one L4" in html


def test_options_are_set_from_the_command_line() -> None:
    from migrate_eval.core.suite import apply_candidate_params, parse_candidate_spec

    spec = parse_candidate_spec("llama=vllm:meta-llama/Llama-3.1-8B-Instruct")
    (done,) = apply_candidate_params(
        [spec], ["llama.options.gpu=L4", "llama.options.max_model_len=8192", "llama.temperature=0"]
    )
    assert done.options == {"gpu": "L4", "max_model_len": 8192}
    assert done.params == {"temperature": 0}  # a request parameter, never an option


def write_gguf(path: Path, meta: dict[str, Any], padding: int = 0) -> Path:
    """A GGUF v3 header with ``meta`` (ints as uint32, strings, lists of strings), no tensors."""
    import struct

    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    body = b""
    for key, value in meta.items():
        body += string(key)
        if isinstance(value, str):
            body += struct.pack("<I", 8) + string(value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(string(v) for v in value)
        else:
            body += struct.pack("<II", 4, value)
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta))
    path.write_bytes(header + body + b"\0" * padding)
    return path


def test_a_gguf_file_sizes_itself_from_its_metadata(tmp_path: Path) -> None:
    from migrate_eval.replay.fit import candidate_fit

    gguf = write_gguf(
        tmp_path / "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        {
            "general.architecture": "llama",
            "general.file_type": 15,
            "llama.block_count": 32,
            "llama.embedding_length": 4096,
            "llama.feed_forward_length": 14336,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.context_length": 131072,
            "tokenizer.ggml.tokens": [f"t{i}" for i in range(40)],
        },
        padding=4096,
    )
    spec = CandidateSpec(
        name="g", provider="llama-server", model=str(gguf), options={"gpu": "L4"}, concurrency=4
    )
    fit = candidate_fit(spec, [1000, 2000])
    assert fit.quantization == "q4_k_m"
    assert fit.weights_bytes == gguf.stat().st_size  # the weights are the file
    assert fit.kv_bytes_per_token == 128 * 1024  # Llama 3.1 8B's, from the metadata
    assert fit.kv_cache_bytes == 128 * 1024 * 2000 * 4
    assert fit.fits is True
    (tmp_path / "bad.gguf").write_bytes(b"GGML\0\0\0\0")
    with pytest.raises(migrate_eval.ConfigError, match="not a readable GGUF file"):
        candidate_fit(spec.model_copy(update={"model": str(tmp_path / "bad.gguf")}), [10])


def test_a_server_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    from migrate_eval.replay.servers import LaunchSpec, ManagedServer, collect_logs

    launch = LaunchSpec(
        kind="vllm",
        argv=stand_in("--child", "--ignore-term"),
        model="m",
        served=["m"],
        label="stubborn",
        startup_timeout=60,
        stop_timeout=1,
    )
    server = ManagedServer(launch)
    with collect_logs(tmp_path) as logs:
        server.start()
    assert server.exit_code() is None  # healthy and running
    server.stop()
    assert server.exit_code() == -signal.SIGKILL  # SIGTERM was ignored: killed
    assert_stopped(logs[0][1])
    server.stop()  # a second stop does nothing


def test_a_model_that_needs_two_gpus_is_priced_for_two(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from migrate_eval.verdict.costs import gpu_price

    shape = shape_of(tmp_path, "llama8b", LLAMA_31_8B)
    fit = estimate(shape, quantization="bf16", context_tokens=4096, concurrency=16, gpu="L4")
    spec = candidate(gpu="L4")
    found = gpu_price(spec, SimpleNamespace(hardware=fit))  # type: ignore[arg-type]
    assert found is not None
    price, source, gpu, per_server, per_gpu = found
    assert (gpu, per_server, per_gpu) == ("L4", 2, pytest.approx(0.805))
    assert price.per_hour_usd == pytest.approx(2 * 0.805)
    assert source.startswith("GPU table 2024-12-01: AWS g6.xlarge")
    own = gpu_price(candidate(gpu="L4", gpu_hour_usd=0.5), SimpleNamespace(hardware=None))  # type: ignore[arg-type]
    assert own is not None and own[0].per_hour_usd == 0.5 and own[1] == "options.gpu_hour_usd"


_OWNER = """
import sys
from pathlib import Path
from migrate_eval.replay.servers import LaunchSpec, ManagedServer, collect_logs

argv = sys.argv[2:]
launch = LaunchSpec(kind="vllm", argv=argv, model="m", served=["m"], label="orphan",
                    startup_timeout=60, stop_timeout=1)
server = ManagedServer(launch)
with collect_logs(Path(sys.argv[1])) as logs:
    server.start()
print(logs[0][1], flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_a_killed_migrate_eval_leaves_no_server_running(tmp_path: Path) -> None:
    """SIGKILL skips every cleanup of migrate-eval's own: the reaper started beside the server
    stops it (SIGTERM, then SIGKILL for one that ignores it), so no server is left orphaned."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path), *stand_in("--child", "--ignore-term")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert owner.stdout is not None
        log = Path(owner.stdout.readline().strip())
        text = log.read_text(encoding="utf-8")
        pid = int(re.search(r"^\[migrate-eval\] server pid (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
        assert alive(pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 60  # a bound on waiting, not a timing assertion
        while group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert_stopped(log)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pipe in (owner.stdin, owner.stdout):
            if pipe is not None:
                pipe.close()
