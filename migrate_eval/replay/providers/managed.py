"""Candidates served by a model server the run starts and stops: ``vllm:``, ``sglang:``,
``llama-server:`` (docs/self-hosting.md).

``vllm:MODEL`` starts ``python -m vllm.entrypoints.openai.api_server --model MODEL`` on a free
loopback port (:mod:`migrate_eval.replay.servers`: health wait, log, clean stop), then replays
through the :class:`~migrate_eval.replay.providers.openai_compatible.OpenAICompatibleProvider`.
``sglang:MODEL`` starts ``python -m sglang.launch_server``, ``llama-server:PATH.gguf`` llama.cpp's
``llama-server`` binary. The server starts on the first request that is not in the response
cache: a run answered from the cache starts nothing (and needs no GPU).

Candidate ``options`` (:class:`ServerOptions`): ``quantization``, ``max_model_len``,
``gpu_memory_utilization``, ``kv_cache_dtype``, ``tensor_parallel_size``, ``enable_lora`` and
``lora_modules`` (``{name: path}`` or ``["name=path"]``), ``args`` (more server arguments),
``env``, ``startup_timeout``, ``stop_timeout``, ``command`` (the whole launch command, with
``{host}``, ``{port}``, ``{model}`` filled in: any OpenAI-compatible server), and the hardware
fit / cost settings ``gpu``, ``gpus``, ``gpu_hour_usd``, ``config``.

LoRA: ``vllm:MODEL@ADAPTER`` asks the adapter ``ADAPTER`` (a name in ``lora_modules``) of the
server that serves ``MODEL``; candidates with the same kind, base model and launch options share
one server, so a base model and its adapters are replayed side by side by one process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator

from migrate_eval.core.errors import (
    ConfigError,
    MigrateEvalError,
    ServerUnavailableError,
    VendorError,
)
from migrate_eval.core.records import StrictModel
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers._files import model_files_fingerprint
from migrate_eval.replay.providers.base import Provider, ProviderResponse
from migrate_eval.replay.providers.matrix import CHAT_COMPLETIONS_FEATURES
from migrate_eval.replay.providers.openai_compatible import OpenAICompatibleProvider
from migrate_eval.replay.servers import (
    LaunchSpec,
    ManagedServer,
    acquire,
    gpu_present,
    release,
)

#: Seconds to wait, after a failed request, for a dying server to exit (told apart from a
#: request that failed on a live server).
EXIT_GRACE = 2.0


class ServerOptions(StrictModel):
    """A managed server candidate's ``options``."""

    command: list[str] | None = Field(
        default=None, description="launch command ({host}, {port}, {model} filled in)"
    )
    quantization: str | None = Field(default=None, description="awq, gptq, fp8, bitsandbytes...")
    max_model_len: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    kv_cache_dtype: str | None = None
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    enable_lora: bool = False
    lora_modules: dict[str, str] = Field(default_factory=dict, description="adapter name -> path")
    args: list[str] = Field(default_factory=list, description="more arguments for the server")
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout: float = Field(default=900.0, gt=0)
    stop_timeout: float = Field(default=15.0, gt=0)
    device: str | None = Field(default=None, description="'cpu': skip the GPU check")
    binary: str | None = Field(default=None, description="llama-server: the binary to run")
    n_gpu_layers: int | None = Field(default=None, description="llama-server: layers on the GPU")
    tool_call_parser: str | None = Field(
        default=None,
        description="vLLM/SGLang tool-call parser (None: chosen from the model's family; "
        "'none': tool calls off)",
    )
    # hardware fit and cost (read by the run, not the server)
    gpu: str | int | None = None
    gpus: int = Field(default=1, ge=1)
    gpu_hour_usd: float | None = Field(default=None, ge=0)
    config: str | None = Field(default=None, description="the model's config.json (fit)")

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, v: Any) -> Any:
        if isinstance(v, str):
            import shlex

            return shlex.split(v)
        return v

    @field_validator("lora_modules", mode="before")
    @classmethod
    def _lora_pairs(cls, v: Any) -> Any:
        if isinstance(v, list):
            out: dict[str, str] = {}
            for item in v:
                name, eq, path = str(item).partition("=")
                if not eq or not name or not path:
                    raise ValueError(f"expected name=path, got {item!r}")
                out[name] = path
            return out
        return v

    @field_validator("args", mode="before")
    @classmethod
    def _split_args(cls, v: Any) -> Any:
        if isinstance(v, str):
            import shlex

            return shlex.split(v)
        return v


#: Model families (a pattern of the model's name) and their servers' tool-call parsers:
#: (vLLM's ``--tool-call-parser``, SGLang's). First match wins.
TOOL_CALL_PARSERS: tuple[tuple[str, str, str], ...] = (
    (r"qwen3-?coder", "qwen3_coder", "qwen3_coder"),
    (r"qwen|qwq|hermes", "hermes", "qwen25"),
    (r"llama-?4", "llama4_pythonic", "pythonic"),
    (r"llama-?3", "llama3_json", "llama3"),
    (r"mi[sx]tral|ministral|devstral|magistral|codestral", "mistral", "mistral"),
    (r"deepseek-?v3\.1", "deepseek_v31", "deepseekv31"),
    (r"deepseek-?(v3|r1)", "deepseek_v3", "deepseekv3"),
    (r"gpt-?oss", "openai", "gpt-oss"),
    (r"kimi-?k2", "kimi_k2", "kimi_k2"),
    (r"glm-?4\.[5-7]", "glm45", "glm45"),
)


def tool_call_parser(model: str, options: ServerOptions, kind: str) -> str | None:
    """The tool-call parser a ``kind`` (``vllm``/``sglang``) server of ``model`` runs with:
    ``options.tool_call_parser``, else the model family's (:data:`TOOL_CALL_PARSERS`, from the
    model's name), else None (tool calls off: a request with tools is answered with an error,
    counted as unsupported)."""
    if options.tool_call_parser is not None:
        return None if options.tool_call_parser.lower() == "none" else options.tool_call_parser
    name = (Path(model).name or model).lower()  # a repo id's or a folder's last part
    for pattern, vllm, sglang in TOOL_CALL_PARSERS:
        if re.search(pattern, name):
            return vllm if kind == "vllm" else sglang
    return None


def server_options(spec: CandidateSpec) -> ServerOptions:
    """The candidate's options, validated (a :class:`ConfigError` naming the field)."""
    try:
        return ServerOptions.model_validate(spec.options)
    except ValidationError as e:
        problems = "; ".join(
            f"options.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()
        )
        raise ConfigError(f"candidate '{spec.name}': {problems}") from None


def split_adapter(spec: CandidateSpec, options: ServerOptions) -> tuple[str, str | None]:
    """``(base model, adapter)`` of ``MODEL@ADAPTER`` (adapter None without ``@``)."""
    base, at, adapter = spec.model.rpartition("@")
    if not at:
        return spec.model, None
    if adapter not in options.lora_modules:
        known = ", ".join(options.lora_modules) or "none"
        raise ConfigError(
            f"candidate '{spec.name}': '@{adapter}' names no LoRA adapter of "
            f"options.lora_modules (adapters: {known})"
        )
    return base, adapter


class ManagedServerProvider(Provider):
    """A candidate served by a server this run starts (one kind per subclass)."""

    kind: ClassVar[str] = ""
    #: Whether ``MODEL@ADAPTER`` candidates work: the server serves each LoRA adapter under its
    #: own model name (vLLM's ``--lora-modules``; any server with ``options.command``).
    adapters_as_models: ClassVar[bool] = False
    #: What to install when the server is missing.
    install: ClassVar[str] = ""
    needs_gpu: ClassVar[bool] = True
    features: ClassVar[dict[str, str]] = CHAT_COMPLETIONS_FEATURES

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        self.options = server_options(spec)
        self.base_model, self.adapter = split_adapter(spec, self.options)
        if self.adapter is not None and not self.options.enable_lora:
            raise ConfigError(
                f"candidate '{spec.name}': '@{self.adapter}' needs options.enable_lora: true"
            )
        serves_adapters = self.adapters_as_models or bool(self.options.command)
        if self.adapter is not None and not serves_adapters:
            raise ConfigError(
                f"candidate '{spec.name}': {self.kind} does not serve a LoRA adapter under its "
                "own model name; replay adapters as candidates with vllm: (or options.command)"
            )
        self.launch = LaunchSpec(
            kind=self.kind,
            argv=self.command(),
            model=self.base_model,
            served=[
                self.base_model,
                *(
                    self.options.lora_modules
                    if self.options.enable_lora and serves_adapters
                    else ()
                ),
            ],
            label=spec.name,
            env=dict(self.options.env),
            startup_timeout=self.options.startup_timeout,
            stop_timeout=self.options.stop_timeout,
        )
        self._acquired = False
        self._server: ManagedServer | None = None
        self._inner: OpenAICompatibleProvider | None = None
        self._lock: asyncio.Lock | None = None
        self._failed: MigrateEvalError | None = None

    # -- what to run ----------------------------------------------------------------------

    def command(self) -> list[str]:
        """The launch command (placeholders kept): ``options.command`` or the kind's own."""
        if self.options.command:
            return list(self.options.command)
        return [*self.default_command(), *self.options.args]

    def default_command(self) -> list[str]:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def missing(self) -> str | None:
        """What this machine lacks to start the server (None: nothing)."""
        return None

    def check_available(self) -> None:
        """:class:`ServerUnavailableError` naming what is missing (skipped with ``command``)."""
        if self.options.command:
            return
        lacking = self.missing()
        needs_gpu = self.needs_gpu and self.options.device != "cpu"
        if lacking is None and needs_gpu and not gpu_present():
            lacking = (
                f"a GPU ({self.kind} needs one; nvidia-smi lists none and there is no "
                "ROCm device). Run it on a GPU machine, give options.device: cpu for a CPU "
                "build, or replay a server you started (openai-compatible:MODEL@URL)"
            )
        if lacking is not None:
            raise ServerUnavailableError(
                f"candidate '{self.spec.name}': provider '{self.kind}' cannot start here: "
                f"missing {lacking}"
            )

    # -- the provider ---------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"provider": self.kind, "model": self.spec.model}
        for key in ("quantization", "max_model_len", "kv_cache_dtype", "tool_call_parser"):
            value = getattr(self.options, key)
            if value is not None:
                ident[key] = value
        if self.adapter is not None:
            adapter = Path(self.options.lora_modules[self.adapter]).expanduser()
            ident["adapter"] = (
                model_files_fingerprint(adapter) if adapter.is_dir() else str(adapter)
            )
        folder = Path(self.base_model).expanduser()
        if folder.is_dir():
            ident["weights"] = model_files_fingerprint(folder)
        elif folder.is_file():
            stat = folder.stat()
            ident["weights"] = f"{stat.st_size}:{stat.st_mtime_ns}"
        return ident

    async def _ensure(self) -> tuple[ManagedServer, OpenAICompatibleProvider]:
        if self._server is not None and self._inner is not None:
            return self._server, self._inner
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._failed is not None:  # one start per provider: its failure stands
                raise self._failed
            if self._server is None:
                self.check_available()
                self._acquired = True  # released once, in aclose, whatever happens
                try:
                    self._server = await acquire(self.launch)
                except MigrateEvalError as e:
                    self._failed = e
                    raise
                inner_spec = self.spec.model_copy(
                    update={
                        "provider": "openai-compatible",
                        "base_url": self._server.base_url,
                        "api_key_env": None,
                        "model": self.adapter or self.base_model,
                    }
                )
                self._inner = OpenAICompatibleProvider(inner_spec)
        assert self._server is not None and self._inner is not None
        return self._server, self._inner

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        server, inner = await self._ensure()
        code = server.exit_code()
        if code is not None:
            raise server.died_error(code)
        body = {**request, "model": self.adapter or self.base_model}
        try:
            return await inner.complete(body)
        except VendorError:
            # a dead server is the run's failure (exit 3), not this request's error row
            code = await asyncio.to_thread(server.wait_exit, EXIT_GRACE)
            if code is not None:
                raise server.died_error(code) from None
            raise

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.aclose()
        if self._acquired:
            self._acquired = False
            self._server = None
            await release(self.launch)


class PythonServerProvider(ManagedServerProvider):
    """A server run as ``python -m MODULE`` (vLLM, SGLang): options mapped to its flags."""

    server_module: ClassVar[str] = ""
    model_flag: ClassVar[str] = ""
    #: ``ServerOptions`` field -> the server's flag taking its value
    option_flags: ClassVar[dict[str, str]] = {}

    def lora_args(self) -> list[str]:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def tool_args(self, parser: str) -> list[str]:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def default_command(self) -> list[str]:
        argv = [
            sys.executable, "-m", self.server_module,
            self.model_flag, "{model}", "--served-model-name", "{model}",
            "--host", "{host}", "--port", "{port}",
        ]  # fmt: skip
        for field, flag in self.option_flags.items():
            value = getattr(self.options, field)
            if value:
                argv += [flag, str(value)]
        argv += self.lora_args()
        if parser := tool_call_parser(self.base_model, self.options, self.kind):
            argv += self.tool_args(parser)
        return argv


class VLLMProvider(PythonServerProvider):
    """vLLM's OpenAI-compatible server (``pip install vllm``; a GPU)."""

    kind = "vllm"
    install = "pip install vllm"
    adapters_as_models = True

    server_module = "vllm.entrypoints.openai.api_server"
    model_flag = "--model"
    option_flags: ClassVar[dict[str, str]] = {
        "quantization": "--quantization",
        "max_model_len": "--max-model-len",
        "gpu_memory_utilization": "--gpu-memory-utilization",
        "kv_cache_dtype": "--kv-cache-dtype",
        "tensor_parallel_size": "--tensor-parallel-size",
    }

    def lora_args(self) -> list[str]:
        o = self.options
        if not o.enable_lora:
            return []
        argv = ["--enable-lora"]
        if o.lora_modules:
            argv += ["--lora-modules", *(f"{n}={p}" for n, p in o.lora_modules.items())]
        return argv

    def tool_args(self, parser: str) -> list[str]:
        return ["--enable-auto-tool-choice", "--tool-call-parser", parser]

    # no --device: vLLM removed it in 0.10 (a CPU build of vLLM runs on the CPU by itself);
    # options.device: cpu only skips the GPU check

    def missing(self) -> str | None:
        if importlib.util.find_spec("vllm") is None:
            return (
                f"vLLM (the 'vllm' package is not installed in {sys.executable}: pip install vllm)"
            )
        return None


class SGLangProvider(PythonServerProvider):
    """SGLang's server (``pip install "sglang[all]"``; a GPU)."""

    kind = "sglang"
    install = 'pip install "sglang[all]"'

    server_module = "sglang.launch_server"
    model_flag = "--model-path"
    option_flags: ClassVar[dict[str, str]] = {
        "quantization": "--quantization",
        "max_model_len": "--context-length",
        "gpu_memory_utilization": "--mem-fraction-static",
        "kv_cache_dtype": "--kv-cache-dtype",
        "tensor_parallel_size": "--tp-size",
    }

    def lora_args(self) -> list[str]:
        o = self.options
        if not (o.enable_lora and o.lora_modules):
            return []
        return ["--lora-paths", *(f"{n}={p}" for n, p in o.lora_modules.items())]

    def tool_args(self, parser: str) -> list[str]:
        return ["--tool-call-parser", parser]

    def missing(self) -> str | None:
        if importlib.util.find_spec("sglang") is None:
            return (
                f"SGLang (the 'sglang' package is not installed in {sys.executable}: "
                'pip install "sglang[all]")'
            )
        return None


class LlamaServerProvider(ManagedServerProvider):
    """llama.cpp's ``llama-server`` binary serving a GGUF file (CPU or GPU)."""

    kind = "llama-server"
    install = "build llama.cpp (or install its release), so that llama-server is on PATH"
    needs_gpu = False

    def default_command(self) -> list[str]:
        o = self.options
        argv = [
            o.binary or "llama-server", "-m", "{model}", "--alias", "{model}",
            "--host", "{host}", "--port", "{port}",
        ]  # fmt: skip
        if o.max_model_len:
            argv += ["-c", str(o.max_model_len)]
        if o.n_gpu_layers is not None:
            argv += ["-ngl", str(o.n_gpu_layers)]
        if (o.tool_call_parser or "").lower() != "none":
            argv += ["--jinja"]  # the GGUF's own chat template: tools and their calls parsed
        return argv

    def missing(self) -> str | None:
        binary = self.options.binary or "llama-server"
        if shutil.which(binary) is None:
            return f"llama.cpp's server binary '{binary}' (not on PATH: {self.install})"
        return None
