"""The hardware fit of each self-hosted candidate, before anything starts (docs/self-hosting.md).

A candidate gets a fit when it is served by a server the run starts (``vllm:``, ``sglang:``,
``llama-server:``, ``llama-cpp:``) or names a GPU (``options.gpu``) or a model config
(``options.config``). The estimate itself is :func:`migrate_eval.core.hardware.estimate`; this
module reads the candidate's options, finds the model's ``config.json`` and measures the
logged contexts: prompt + answer tokens of each replayed exchange (its logged usage, else an
estimate of the request), the longest one at most ``max_model_len``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.hardware import (
    DEFAULT_MEMORY_UTILIZATION,
    HardwareFit,
    ModelShape,
    estimate,
    find_model_config,
    gguf_shape,
    load_model_shape,
)
from migrate_eval.core.prices import SELF_HOSTED_PROVIDERS
from migrate_eval.core.records import Exchange
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.tokens import estimate_request_tokens

_GGUF_QUANT = re.compile(r"(?i)\b(q4_0|q4_k_m|q5_k_m|q6_k|q8_0|f16|bf16)\b")


def wants_fit(spec: CandidateSpec) -> bool:
    return spec.provider in SELF_HOSTED_PROVIDERS or any(
        k in spec.options for k in ("gpu", "config")
    )


def logged_context_tokens(exchanges: Sequence[Exchange]) -> list[int]:
    """Prompt + answer tokens of each exchange (logged usage, else estimated)."""
    out: list[int] = []
    for ex in exchanges:
        usage = ex.response.usage if ex.response is not None else None
        if usage is not None and usage.prompt_tokens is not None:
            out.append(usage.prompt_tokens + (usage.completion_tokens or 0))
        else:
            out.append(estimate_request_tokens(ex.request))
    return out


def _option(spec: CandidateSpec, key: str, kind: type | tuple[type, ...]) -> Any:
    value = spec.options.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ConfigError(f"candidate '{spec.name}': options.{key}: {value!r} is not valid here")
    return value


def candidate_fit(spec: CandidateSpec, contexts: Sequence[int]) -> HardwareFit:
    """The :class:`HardwareFit` of one candidate at the logged contexts and its concurrency."""
    base = spec.model.rpartition("@")[0] if "@" in spec.model else spec.model
    max_len = _option(spec, "max_model_len", int) or _option(spec, "n_ctx", int)
    longest = max(contexts, default=0)
    if max_len:
        longest = min(longest, max_len)
    quant = _option(spec, "quantization", str)
    weights_bytes: int | None = None
    notes: list[str] = []
    if base.lower().endswith(".gguf"):
        m = _GGUF_QUANT.search(Path(base).name)
        quant = quant or (m.group(1).lower() if m else None)
        gguf = Path(base).expanduser()
        if gguf.is_file():
            weights_bytes = gguf.stat().st_size  # the weights are the file
    shape: ModelShape | None = None
    config = find_model_config(base, _option(spec, "config", str))
    if config is None and weights_bytes is not None:  # a GGUF file describes itself
        shape, file_quant = gguf_shape(Path(base).expanduser())
        quant = quant or file_quant
        config = Path(base).expanduser()
    elif config is None:
        notes.append(
            f"no config.json found for {base} (a model folder, the local Hugging Face cache or "
            "options.config): memory not estimated"
        )
    if shape is None and config is not None:
        shape = load_model_shape(config)
        quant = quant or shape.quant_method or shape.torch_dtype
    return estimate(
        shape,
        quantization=quant,
        context_tokens=longest,
        concurrency=spec.concurrency,
        gpu=_option(spec, "gpu", (str, int, float)),
        memory_utilization=_option(spec, "gpu_memory_utilization", (int, float))
        or DEFAULT_MEMORY_UTILIZATION,
        kv_cache_dtype=_option(spec, "kv_cache_dtype", str),
        weights_bytes=weights_bytes,
        config_path=str(config) if config is not None else None,
        notes=notes,
    )


def hardware_fits(
    specs: Sequence[CandidateSpec], exchanges: Sequence[Exchange]
) -> dict[str, HardwareFit]:
    """The fit of every candidate that wants one (:func:`wants_fit`), by candidate name."""
    wanted = [s for s in specs if wants_fit(s)]
    if not wanted:
        return {}
    contexts = logged_context_tokens(exchanges)
    return {s.name: candidate_fit(s, contexts) for s in wanted}
