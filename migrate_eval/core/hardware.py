"""Hardware fit: will a self-hosted model, at a quantisation, serve the logged traffic on a GPU?

Estimated before anything starts, from the model's ``config.json`` and the logged traffic:

* **weights** - the parameter count (``num_parameters`` when the config has it, else counted
  from the architecture: embeddings, attention with its key/value heads, gated MLP or mixture of
  experts, norms, an untied output head) times the bits per weight of the quantisation
  (:data:`BITS_PER_WEIGHT`). Integer quantisations of a checkpoint (``int8``, ``int4``, ``awq``,
  ``gptq``, ``fp8``) quantise the transformer blocks only: the embeddings and the output head
  stay 16-bit, and int4 groups of 128 carry a 16-bit scale and a 4-bit zero (4.16 bits). GGUF
  figures (``q4_k_m``...) are llama.cpp's whole-file bits per weight, embeddings included.
* **KV cache** - ``2 x layers x KV heads x head size x bytes`` per token (``kv_cache_dtype``:
  16-bit unless ``fp8``), times the longest logged context (prompt + answer tokens, at most
  ``max_model_len``), times the requests in flight (the candidate's concurrency).
* **runtime overhead** - :data:`OVERHEAD_FIXED_BYTES` (CUDA context, CUDA graphs, sampler
  buffers) plus :data:`OVERHEAD_WEIGHT_SHARE` of the weights (activations): a rule of thumb,
  not a measurement.

The total is compared with one GPU's memory times the share a server may use
(``gpu_memory_utilization``, vLLM's default 0.9). When it does not fit, :func:`estimate` says
how many GPUs (tensor parallel: 1, 2, 4 or 8) would, and how many requests at the longest
context fit at once. Mixture-of-experts models count every expert (all are resident). A
sliding-window layer (Gemma 2 and 3, gpt-oss, Mistral 7B v0.1) caches at most its window of a
request's tokens; latent attention (DeepSeek-V2/V3's MLA) caches one compressed latent a token
and layer (``kv_lora_rank`` + ``qk_rope_head_dim`` values); linear-attention and state-space
layers cache nothing per token.

GPUs by name (memory and a dated hourly price) are in ``migrate_eval/data/gpus.yaml``
(:func:`gpu_table`).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import StrictModel

GIB = 1024**3
MIB = 1024**2

#: Bits per weight of each quantisation, for the weights it quantises (see the module docstring).
BITS_PER_WEIGHT: dict[str, float] = {
    "fp32": 32.0,
    "fp16": 16.0,
    "bf16": 16.0,
    "fp8": 8.0,
    "int8": 8.0,
    "int4": 4.0 + 20.0 / 128.0,  # 4-bit weights; a 16-bit scale and a 4-bit zero per 128
    "awq": 4.0 + 20.0 / 128.0,
    "gptq": 4.0 + 20.0 / 128.0,
    # llama.cpp's quantize table (Llama-3.1-8B): whole-file bits per weight
    "q4_0": 4.55,
    "q4_k_m": 4.89,
    "q5_k_m": 5.70,
    "q6_k": 6.56,
    "q8_0": 8.50,
}
#: Quantisations that keep the embeddings and the output head at 16 bits.
_BLOCKS_ONLY = frozenset({"fp8", "int8", "int4", "awq", "gptq"})
#: Aliases found in configs and on command lines.
_ALIASES = {
    "float16": "fp16",
    "f16": "fp16",
    "f32": "fp32",
    "half": "fp16",
    "bfloat16": "bf16",
    "float32": "fp32",
    "auto": "bf16",
    "none": "bf16",
    "awq_marlin": "awq",
    "gptq_marlin": "gptq",
    "compressed-tensors": "int8",
    "bitsandbytes": "int4",
    "w4a16": "int4",
    "w8a8": "int8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
}

#: Runtime overhead: fixed bytes per GPU, plus a share of the weights (activations).
OVERHEAD_FIXED_BYTES = int(1.5 * GIB)
OVERHEAD_WEIGHT_SHARE = 0.05
#: The share of a GPU's memory a server may use (vLLM's ``gpu_memory_utilization`` default).
DEFAULT_MEMORY_UTILIZATION = 0.9
#: Tensor-parallel sizes a model may be split over.
_TP_SIZES = (1, 2, 4, 8)


class GpuEntry(StrictModel):
    memory_mib: int = Field(gt=0)
    per_hour_usd: float = Field(ge=0)
    offer: str


class GpuTable(StrictModel):
    as_of: str
    currency: str = "USD"
    gpus: dict[str, GpuEntry]


#: libyaml's parser where PyYAML has it (the same safe subset, ~5x faster: the shipped table
#: is read on every run)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=1)
def gpu_table() -> GpuTable:
    """The shipped GPU table (``migrate_eval/data/gpus.yaml``), read once."""
    text = resources.files("migrate_eval").joinpath("data/gpus.yaml").read_text("utf-8")
    try:
        return GpuTable.model_validate(yaml.load(text, Loader=_SAFE_LOADER))
    except (yaml.YAMLError, ValidationError) as e:  # pragma: no cover - a packaging bug
        raise ConfigError(f"migrate_eval/data/gpus.yaml is not a valid GPU table: {e}") from e


def gpu_entry(name: str) -> tuple[str, GpuEntry] | None:
    """The table's entry for a GPU name (case and ``-``/space insensitive), or None."""
    wanted = re.sub(r"[\s_-]+", "", name).lower()
    for key, entry in gpu_table().gpus.items():
        if re.sub(r"[\s_-]+", "", key).lower() == wanted:
            return key, entry
    return None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.I)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1024,
    "mib": MIB,
    "gib": GIB,
    "tib": 1024**4,
}


def gpu_memory(gpu: str | int | float, *, where: str = "gpu") -> tuple[str, int]:
    """A GPU's name and memory in bytes: a table name (``L4``, ``H100``...) or a size
    (bytes as a number, or ``"24GiB"``, ``"80GB"``). Anything else is a :class:`ConfigError`."""
    if isinstance(gpu, bool):
        raise ConfigError(f"{where}: expected a GPU name or a memory size, got {gpu!r}")
    if isinstance(gpu, int | float):
        if gpu <= 0:
            raise ConfigError(f"{where}: a memory size must be positive, got {gpu!r}")
        return f"{int(gpu)} bytes", int(gpu)
    found = gpu_entry(gpu)
    if found is not None:
        return found[0], found[1].memory_mib * MIB
    m = _SIZE.match(gpu)
    if m and float(m.group(1)) > 0:
        return gpu.strip(), int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    raise ConfigError(
        f"{where}: unknown GPU {gpu!r}; known: {', '.join(gpu_table().gpus)}, "
        "or a memory size such as 24GiB or 25769803776"
    )


def normalise_quantization(name: str | None) -> str:
    """A quantisation's key in :data:`BITS_PER_WEIGHT` (None: ``bf16``); unknown is a ConfigError."""
    if name is None:
        return "bf16"
    key = name.strip().lower().replace("-", "_") if name.strip() else "bf16"
    key = _ALIASES.get(key, _ALIASES.get(key.replace("_", "-"), key))
    if key not in BITS_PER_WEIGHT:
        raise ConfigError(
            f"quantization {name!r} is not known to the memory estimate; known: "
            f"{', '.join(BITS_PER_WEIGHT)}"
        )
    return key


class ModelShape(StrictModel):
    """What the memory estimate reads of a model's ``config.json``."""

    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    intermediate_size: int = Field(ge=0)
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    experts: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0)
    num_parameters: int | None = Field(default=None, gt=0)
    torch_dtype: str | None = None
    quant_method: str | None = Field(default=None, description="a quantised checkpoint's method")
    max_position_embeddings: int | None = None
    #: Tokens a sliding-window layer attends to (and keeps in its KV cache); None: none.
    sliding_window: int | None = Field(default=None, gt=0)
    #: Layers with that window (the others attend to the whole context).
    sliding_layers: int = Field(default=0, ge=0)
    #: Layers that keep no per-token cache (linear attention, state-space layers).
    stateless_layers: int = Field(default=0, ge=0)
    #: Multi-head latent attention (DeepSeek-V2/V3, Kimi K2): the cache holds one compressed
    #: latent of ``kv_lora_rank`` plus the ``qk_rope_head_dim`` rotary key per token and layer.
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_rope_head_dim: int = Field(default=0, ge=0)

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings plus an untied output head."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def parameters(self) -> int:
        """``num_parameters`` when the config gives it, else counted from the architecture."""
        if self.num_parameters is not None:
            return self.num_parameters
        h, hd = self.hidden_size, self.head_dim
        q, kv = self.num_attention_heads * hd, self.num_key_value_heads * hd
        attention = h * q + 2 * h * kv + q * h
        if self.attention_bias:
            attention += q + 2 * kv
        if self.experts:
            inter = self.moe_intermediate_size or self.intermediate_size
            mlp = self.experts * 3 * h * inter + h * self.experts
            if self.shared_expert_intermediate_size:
                mlp += 3 * h * self.shared_expert_intermediate_size + h
        else:
            mlp = 3 * h * self.intermediate_size
        per_layer = attention + mlp + 2 * h
        return self.num_hidden_layers * per_layer + h + self.embedding_parameters

    def _layer_bytes(self, kv_cache_dtype: str | None) -> int:
        """Bytes one token takes in one attention layer's cache."""
        width = 1 if kv_cache_dtype and kv_cache_dtype.lower().startswith("fp8") else 2
        if self.kv_lora_rank:  # one latent (keys and values together) and the rotary key
            return (self.kv_lora_rank + self.qk_rope_head_dim) * width
        return 2 * self.num_key_value_heads * self.head_dim * width

    @property
    def full_layers(self) -> int:
        """Layers whose cache grows with the whole context."""
        return max(0, self.num_hidden_layers - self.sliding_layers - self.stateless_layers)

    def kv_bytes_per_token(self, kv_cache_dtype: str | None = None) -> int:
        """Bytes of KV cache one token takes in every layer that caches it (within a sliding
        window: :meth:`kv_bytes_per_request` counts a window's layers only up to it)."""
        layers = self.full_layers + (self.sliding_layers if self.sliding_window else 0)
        return layers * self._layer_bytes(kv_cache_dtype)

    def kv_bytes_per_request(self, context_tokens: int, kv_cache_dtype: str | None = None) -> int:
        """Bytes of KV cache one request at ``context_tokens`` holds: the whole context in
        full-attention layers, at most the window in sliding-window layers (what vLLM's and
        llama.cpp's caches keep), nothing per token in linear or state-space layers."""
        per_layer = self._layer_bytes(kv_cache_dtype)
        tokens = self.full_layers * context_tokens
        if self.sliding_window:
            tokens += self.sliding_layers * min(context_tokens, self.sliding_window)
        return tokens * per_layer

    def weight_bytes(self, quantization: str) -> int:
        bits = BITS_PER_WEIGHT[quantization]
        total = self.parameters
        if quantization in _BLOCKS_ONLY:
            embed = min(self.embedding_parameters, total)
            return int((total - embed) * bits / 8 + embed * 2)
        return int(total * bits / 8)


def parse_model_config(data: Mapping[str, Any], *, source: str) -> ModelShape:
    """A :class:`ModelShape` from a Hugging Face ``config.json`` (a multimodal model's
    ``text_config`` when the top level has no ``hidden_size``)."""
    cfg: Mapping[str, Any] = data
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), Mapping):
        cfg = cfg["text_config"]
    missing = [
        k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        if not isinstance(cfg.get(k), int)
    ]  # fmt: skip
    if missing:
        raise ConfigError(
            f"{source}: not a transformer config the memory estimate reads "
            f"(missing {', '.join(missing)})"
        )
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    model_type = str(data.get("model_type") or cfg.get("model_type") or "")
    window, sliding, stateless = _attention_layers(cfg, model_type, int(cfg["num_hidden_layers"]))
    quant = data.get("quantization_config") or cfg.get("quantization_config")
    experts = cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts")
    try:
        return ModelShape(
            hidden_size=hidden,
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab_size=int(cfg["vocab_size"]),
            intermediate_size=int(cfg.get("intermediate_size") or 4 * hidden),
            tie_word_embeddings=bool(
                data.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
            ),
            attention_bias=bool(cfg.get("attention_bias", model_type.startswith("qwen2"))),
            experts=int(experts or 0),
            moe_intermediate_size=int(cfg.get("moe_intermediate_size") or 0),
            shared_expert_intermediate_size=int(cfg.get("shared_expert_intermediate_size") or 0),
            num_parameters=cfg.get("num_parameters") or data.get("num_parameters"),
            torch_dtype=cfg.get("torch_dtype") or data.get("torch_dtype"),
            quant_method=quant.get("quant_method") if isinstance(quant, Mapping) else None,
            max_position_embeddings=cfg.get("max_position_embeddings"),
            sliding_window=window,
            sliding_layers=sliding,
            stateless_layers=stateless,
            kv_lora_rank=int(cfg.get("kv_lora_rank") or 0),
            qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 0)
            if cfg.get("kv_lora_rank")
            else 0,
        )
    except (ValidationError, TypeError, ValueError) as e:
        raise ConfigError(
            f"{source}: config.json has values the estimate cannot use: {e}"
        ) from None


#: ``layer_types`` entries whose cache grows with the context, and with a window.
_FULL_LAYER_TYPES = {"full_attention", "attention", "global"}
_SLIDING_LAYER_TYPES = {"sliding_attention", "local_sliding", "sliding", "local"}


def _attention_layers(
    cfg: Mapping[str, Any], model_type: str, layers: int
) -> tuple[int | None, int, int]:
    """(the sliding window, layers using it, layers with no per-token cache) of a config.

    ``layer_types`` (recent Transformers configs: Gemma 3, gpt-oss, Qwen3-Next...) says it
    layer by layer; older configs give ``sliding_window`` and the pattern is the model's own:
    Gemma 2 alternates (from the first layer), Gemma 3 and Cohere 2 keep one global layer in
    ``sliding_window_pattern``, Qwen 2 windows the layers from ``max_window_layers`` on and only
    with ``use_sliding_window``; others (Mistral 7B v0.1, Phi-3 mini 4k) window every layer.
    """
    window = cfg.get("sliding_window")
    window = (
        int(window)
        if isinstance(window, int) and not isinstance(window, bool) and window > 0
        else None
    )
    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) == layers and all(isinstance(t, str) for t in types):
        sliding = sum(t in _SLIDING_LAYER_TYPES for t in types)
        full = sum(t in _FULL_LAYER_TYPES for t in types)
        return (window if sliding else None), (sliding if window else 0), layers - sliding - full
    if window is None or cfg.get("use_sliding_window") is False:
        return None, 0, 0
    if model_type.startswith("gemma2"):
        return window, (layers + 1) // 2, 0
    pattern = cfg.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 1:
        return window, layers - layers // pattern, 0
    if model_type.startswith(("gemma3", "cohere2")):  # their configs' default patterns
        every = 6 if model_type.startswith("gemma3") else 4
        return window, layers - layers // every, 0
    if model_type.startswith("qwen"):
        if not cfg.get("use_sliding_window"):
            return None, 0, 0
        first = cfg.get("max_window_layers")
        start = int(first) if isinstance(first, int) else 0
        return window, max(0, layers - start), 0
    return window, layers, 0


def _hf_cache_dirs() -> list[Path]:
    dirs: list[Path] = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def find_model_config(model: str, config: str | Path | None = None) -> Path | None:
    """The ``config.json`` describing ``model``: ``config`` (a file or a folder) when given, the
    model's own folder, or a snapshot of the model id in the local Hugging Face cache. Nothing
    is downloaded. None when there is none."""
    if config is not None:
        p = Path(config).expanduser()
        p = p / "config.json" if p.is_dir() else p
        if not p.is_file():
            raise ConfigError(f"options.config: {p} is not a config.json file or folder")
        return p
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return folder / "config.json"
    if folder.suffix == ".gguf" and (folder.parent / "config.json").is_file():
        return folder.parent / "config.json"
    if "/" in model and not folder.exists():
        name = "models--" + model.replace("/", "--")
        for root in _hf_cache_dirs():
            snapshots = sorted((root / name / "snapshots").glob("*/config.json"))
            if snapshots:
                return snapshots[-1]
    return None


def load_model_shape(path: Path) -> ModelShape:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the model config: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config is a JSON object")
    return parse_model_config(data, source=str(path))


class HardwareFit(StrictModel):
    """The memory a self-hosted candidate needs and whether it fits a GPU (results.json)."""

    model_config_path: str | None = Field(default=None, description="the config.json read")
    quantization: str = Field(description="the quantisation the weights are counted at")
    bits_per_weight: float
    parameters: int | None = None
    weights_bytes: int | None = None
    kv_bytes_per_token: int | None = None
    context_tokens: int = Field(description="longest logged context (prompt + answer tokens)")
    concurrency: int = Field(description="requests in flight (the candidate's concurrency)")
    kv_cache_bytes: int | None = None
    overhead_bytes: int | None = None
    total_bytes: int | None = Field(default=None, description="weights + KV cache + overhead")
    gpu: str | None = Field(default=None, description="the GPU it is sized for")
    gpu_bytes: int | None = None
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    fits: bool | None = Field(default=None, description="fits one GPU (None: no GPU named)")
    gpus_needed: int | None = Field(
        default=None, description="GPUs (tensor parallel 1/2/4/8) it needs; None: more than 8"
    )
    max_concurrency: int | None = Field(
        default=None, description="requests at the longest context that fit at once on gpus_needed"
    )
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line for the run's output and the report."""

        def gib(n: int | None) -> str:
            return "?" if n is None else f"{n / GIB:.1f} GiB"

        if self.weights_bytes is None:
            return "; ".join(self.notes) or "memory unknown"
        need = (
            f"{gib(self.total_bytes)} = weights {gib(self.weights_bytes)} "
            f"({self.quantization}, {self.bits_per_weight:g} bits) + KV cache "
            f"{gib(self.kv_cache_bytes)} ({self.concurrency} x {self.context_tokens} tokens) "
            f"+ overhead {gib(self.overhead_bytes)}"
        )
        if self.gpu is None:
            return f"needs {need}; name a GPU (options.gpu) to check the fit"
        usable = int((self.gpu_bytes or 0) * self.memory_utilization)
        if self.fits:
            verdict = f"fits one {self.gpu} ({gib(usable)} usable)"
        elif self.gpus_needed is not None:
            verdict = (
                f"does not fit one {self.gpu} ({gib(usable)} usable): needs {self.gpus_needed}"
            )
        else:
            verdict = f"does not fit 8 x {self.gpu} at this concurrency"
        if self.max_concurrency is not None and self.gpus_needed is not None:
            verdict += f", {self.max_concurrency} requests at that context at once"
        return f"{verdict}; needs {need}"


def estimate(
    shape: ModelShape | None,
    *,
    quantization: str | None,
    context_tokens: int,
    concurrency: int,
    gpu: str | int | float | None = None,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    kv_cache_dtype: str | None = None,
    weights_bytes: int | None = None,
    config_path: str | None = None,
    notes: Sequence[str] = (),
) -> HardwareFit:
    """The :class:`HardwareFit` of a model (``shape`` None: unknown, with ``notes`` saying why).

    ``weights_bytes`` replaces the counted weights (a GGUF file's size).
    """
    quant = normalise_quantization(quantization)
    gpu_name, gpu_bytes = gpu_memory(gpu) if gpu is not None else (None, None)
    fit = HardwareFit(
        model_config_path=config_path,
        quantization=quant,
        bits_per_weight=round(BITS_PER_WEIGHT[quant], 3),
        context_tokens=max(1, context_tokens),
        concurrency=max(1, concurrency),
        gpu=gpu_name,
        gpu_bytes=gpu_bytes,
        memory_utilization=memory_utilization,
        notes=list(notes),
    )
    if shape is None:
        return fit
    fit.parameters = shape.parameters
    fit.weights_bytes = weights_bytes if weights_bytes is not None else shape.weight_bytes(quant)
    per_request = shape.kv_bytes_per_request(fit.context_tokens, kv_cache_dtype)
    fit.kv_bytes_per_token = -(-per_request // fit.context_tokens)  # at this context
    fit.kv_cache_bytes = per_request * fit.concurrency
    if shape.sliding_window and shape.sliding_layers:
        fit.notes.append(
            f"{shape.sliding_layers} of {shape.num_hidden_layers} layers attend to a "
            f"{shape.sliding_window:,}-token window: their cache holds at most that"
        )
    if shape.kv_lora_rank:
        fit.notes.append("latent attention (MLA): the cache holds one compressed latent a token")
    fit.overhead_bytes = OVERHEAD_FIXED_BYTES + int(OVERHEAD_WEIGHT_SHARE * fit.weights_bytes)
    fit.total_bytes = fit.weights_bytes + fit.kv_cache_bytes + fit.overhead_bytes
    if gpu_bytes is None:
        return fit
    usable = gpu_bytes * memory_utilization
    fit.fits = fit.total_bytes <= usable

    def capacity(n: int) -> int:
        """Requests at the longest context that fit on n GPUs (weights and KV cache split over
        them, the fixed overhead on each); negative: not even the weights fit."""
        assert fit.weights_bytes is not None
        room = n * (usable - OVERHEAD_FIXED_BYTES) - OVERHEAD_WEIGHT_SHARE * fit.weights_bytes
        return int((room - fit.weights_bytes) // per_request)

    fit.gpus_needed = next((n for n in _TP_SIZES if capacity(n) >= fit.concurrency), None)
    fit.max_concurrency = max(0, capacity(fit.gpus_needed or _TP_SIZES[-1]))
    one = capacity(1)
    if fit.gpus_needed != 1 and one >= 1:
        fit.notes.append(
            f"one {gpu_name} holds the weights and {one} of the {fit.concurrency} concurrent "
            "requests at the longest context: the rest would queue"
        )
    return fit


# -- GGUF files: the shape from the file's own metadata ----------------------------------------

#: GGUF metadata value types (the GGUF specification): struct format of the fixed-size ones.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_GGUF_STRING, _GGUF_ARRAY = 8, 9
#: ``general.file_type`` -> quantisation (llama.cpp's ``llama_ftype``).
GGUF_FILE_TYPES = {0: "fp32", 1: "fp16", 2: "q4_0", 7: "q8_0", 15: "q4_k_m", 17: "q5_k_m",
                   18: "q6_k", 32: "bf16"}  # fmt: skip
_MAX_GGUF_STRING = 1 << 24


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The metadata key/values of a GGUF file (arrays as their length, except short ones).

    Only the header is read (the tensors are not). A file that is not GGUF, or is cut short,
    is a :class:`ConfigError` naming it.
    """
    import struct

    def fail(why: str) -> ConfigError:
        return ConfigError(f"{path}: not a readable GGUF file ({why})")

    with path.open("rb") as f:

        def take(n: int) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise fail("cut short")
            return data

        def scalar(kind: int) -> Any:
            fmt = _GGUF_SCALARS[kind]
            return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

        def string() -> str:
            (n,) = struct.unpack("<Q", take(8))
            if n > _MAX_GGUF_STRING:
                raise fail("a string of implausible length")
            return take(n).decode("utf-8", "replace")

        def value(kind: int) -> Any:
            if kind in _GGUF_SCALARS:
                return scalar(kind)
            if kind == _GGUF_STRING:
                return string()
            if kind == _GGUF_ARRAY:
                (item, count) = struct.unpack("<IQ", take(12))
                items = [value(item) for _ in range(count)]
                return items if count <= 16 else count
            raise fail(f"unknown value type {kind}")

        if take(4) != b"GGUF":
            raise fail("no GGUF magic")
        (version,) = struct.unpack("<I", take(4))
        if version < 2:
            raise fail(f"version {version} (GGUF v2 or later is read)")
        _tensors, n_kv = struct.unpack("<QQ", take(16))
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = string()
            (kind,) = struct.unpack("<I", take(4))
            meta[key] = value(kind)
    return meta


def gguf_shape(path: Path) -> tuple[ModelShape, str | None]:
    """The :class:`ModelShape` a GGUF file describes, and its quantisation (``general.file_type``)."""
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ConfigError(f"{path}: GGUF metadata has no general.architecture")

    def get(name: str) -> Any:
        return meta.get(f"{arch}.{name}")

    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = get("vocab_size") or (len(tokens) if isinstance(tokens, list) else tokens)
    config = {
        "model_type": arch,
        "hidden_size": get("embedding_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": get("attention.head_count"),
        "num_key_value_heads": get("attention.head_count_kv"),
        "head_dim": get("attention.key_length"),
        "intermediate_size": get("feed_forward_length"),
        "vocab_size": vocab,
        "num_local_experts": get("expert_count"),
        "moe_intermediate_size": get("expert_feed_forward_length"),
        "max_position_embeddings": get("context_length"),
        "sliding_window": get("attention.sliding_window"),
        "kv_lora_rank": get("attention.kv_lora_rank"),
        "qk_rope_head_dim": get("rope.dimension_count") if get("attention.kv_lora_rank") else None,
    }
    shape = parse_model_config({k: v for k, v in config.items() if v is not None}, source=str(path))
    file_type = meta.get("general.file_type")
    return shape, GGUF_FILE_TYPES.get(file_type) if isinstance(file_type, int) else None
