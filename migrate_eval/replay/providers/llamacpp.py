"""A quantised local model in a GGUF file, in process, through llama.cpp (extra ``llama-cpp``).

``llama-cpp:PATH.gguf``: ``model`` is the path of a GGUF file (weights at any quantisation,
tokenizer and chat template in one file), loaded once per run by ``llama-cpp-python``
(``llama_cpp.Llama``). Nothing is downloaded.

Loading options (candidate ``params``, never part of what the model is asked):

* ``n_ctx``: the context length (default :data:`DEFAULT_N_CTX`; ``0`` = the model's training
  context). A prompt longer than it is an error row naming ``n_ctx``;
* ``n_gpu_layers``: layers offloaded to the GPU (default 0; ``-1`` = all) when llama.cpp was
  built with GPU support;
* ``threads``: CPU threads (default: llama-cpp-python's, half the cores);
* ``max_new_tokens``: the answer's length when the request sets no ``max_tokens`` (default
  :data:`DEFAULT_MAX_NEW_TOKENS`).

Each request is rendered with the chat template of the GGUF metadata
(``tokenizer.chat_template``, through llama-cpp-python's Jinja2 chat handler, with the
request's ``tools``); a file without one is a configuration error. Generation:

* ``temperature`` (0 = greedy; OpenAI's default 1.0 when absent), ``top_p``,
  ``presence_penalty``, ``frequency_penalty``; llama.cpp's own truncations (top-k 40,
  min-p 0.05, repeat penalty) are off, so sampling is OpenAI's;
* ``seed`` -> the sampler's seed (equal seeded requests give equal answers);
* ``max_tokens``/``max_completion_tokens``, ``stop``.

Structured output is grammar-constrained (llama.cpp's JSON-schema-to-grammar support):
``response_format`` ``json_schema`` -> a grammar of the schema (a schema the converter cannot
express is an ``unsupported`` row naming why), ``json_object`` -> llama.cpp's JSON grammar.
Tool calls: with ``tool_choice`` ``auto`` the answer is parsed in the model family's format
(:func:`~migrate_eval.replay.providers._chat_template.parse_tool_calls`); ``tool_choice`` naming a function constrains the
answer to that function's arguments (as llama-cpp-python does), and ``required`` to
``{"name": ..., "arguments": ...}`` of one of the tools: both give a tool call whatever the
weights. ``tool_choice: "none"`` renders the prompt without the tools. Refused per request
(``unsupported`` rows): ``n`` > 1, images, audio, tools that are not functions, a named tool
the request does not declare. ``logprobs`` is a soft field (dropped and counted).

The cache identity holds a fingerprint of the GGUF file (content hash up to 64 MiB, else size
and mtime: :func:`~migrate_eval.replay.providers._files.model_file_fingerprint`): new weights
at the same path are asked again. The model instance serves one request at a time (a lock);
generation runs in a worker thread, so the replay's event loop never blocks. A generation
longer than the candidate's ``timeout`` is an error row after it ends (llama.cpp cannot be
interrupted mid-answer).
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from migrate_eval.core.errors import ConfigError, VendorError
from migrate_eval.core.records import Response, ToolCall, Usage
from migrate_eval.core.request import DRAW_FIELDS, LIMIT_FIELDS
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers._chat_template import (
    new_call_id,
    parse_tool_calls,
    template_messages,
    tool_message,
)
from migrate_eval.replay.providers._files import model_file_fingerprint
from migrate_eval.replay.providers._translate import (
    check_fields,
    max_tokens,
    parse_response_format,
    parse_tool_choice,
    parse_tools,
    soft_drops,
    stop_list,
    unsupported,
)
from migrate_eval.replay.providers.base import (
    InProcessProvider,
    ProviderResponse,
    UnsupportedRequestError,
    VendorTimeout,
)

VENDOR = "the local llama.cpp model"
DEFAULT_N_CTX = 4096
DEFAULT_MAX_NEW_TOKENS = 256
#: ``params`` keys that configure loading, never part of the request.
PROVIDER_PARAMS = ("n_ctx", "n_gpu_layers", "threads", "max_new_tokens")
_HANDLED = (
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    *DRAW_FIELDS,  # temperature, top_p, seed, presence_penalty, frequency_penalty
    *LIMIT_FIELDS,
    *PROVIDER_PARAMS,
)
#: Grammars kept per run (schema text -> grammar): converting a schema costs milliseconds.
_GRAMMAR_CACHE_SIZE = 64


def _int_param(spec: CandidateSpec, key: str, default: int | None, minimum: int) -> int | None:
    value = spec.params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"candidate '{spec.name}': params.{key} must be an integer >= {minimum}, not {value!r}"
        )
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _remote_ref(schema: Any) -> str | None:
    """The first ``$ref`` of ``schema`` that is not a local ``#...`` pointer: llama-cpp-python's
    converter would fetch it over the network (a logged schema must not make replay call out)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                return ref
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


class LlamaCppProvider(InProcessProvider):
    """A GGUF model loaded in process by llama-cpp-python."""

    thread_name = "llama-cpp"

    #: The feature matrix (:mod:`migrate_eval.replay.providers.matrix`).
    features: ClassVar[dict[str, str]] = {
        "system_prompt": "yes",
        "multi_turn": "yes",
        "tools": "yes",  # through the chat template; calls parsed (_chat_template)
        "tool_choice_required": "emulated",  # grammar: {"name", "arguments"} of one tool
        "tool_choice_named": "emulated",  # grammar: the named function's arguments
        "parallel_tool_calls": "yes",
        "json_mode": "yes",  # llama.cpp's JSON grammar
        "json_schema": "yes",  # llama.cpp's JSON-schema-to-grammar
        "stop": "yes",
        "sampling": "yes",
        "seed": "yes",
        "n": "no",
        "logprobs": "no",
        "images": "no",
        "streaming": "no",
    }

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        self.path = Path(spec.model).expanduser().resolve()
        self.n_ctx = _int_param(spec, "n_ctx", DEFAULT_N_CTX, 0)
        self.n_gpu_layers = _int_param(spec, "n_gpu_layers", 0, -1)
        self.threads = _int_param(spec, "threads", None, 1)
        new = _int_param(spec, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS, 1)
        self.default_max_new_tokens = DEFAULT_MAX_NEW_TOKENS if new is None else new
        self._llm: Any = None
        self._lock = threading.Lock()
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._weights: str | None = None  # taken once, on the first identity()
        self._weights_taken = False

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        return soft_drops(request, _HANDLED)

    def identity(self) -> dict[str, Any]:
        """Provider, resolved GGUF path and ``weights``: a fingerprint of the file, so new
        weights at the same path miss the cache. Loading options are request parameters
        (``params``), hence already in the other half of the cache key."""
        if not self._weights_taken:
            self._weights = model_file_fingerprint(self.path)
            self._weights_taken = True
        return {
            "provider": self.name or self.spec.provider,
            "base_url": None,
            "model": str(self.path),
            "weights": self._weights,
        }

    # -- loading (worker thread, under the lock) ----------------------------------------

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        where = f"candidate '{self.spec.name}'"
        if not self.path.is_file():
            raise ConfigError(f"{where}: no GGUF file at {self.spec.model!r}")
        llama_cpp = importlib.import_module("llama_cpp")
        kwargs: dict[str, Any] = {
            "model_path": str(self.path),
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "verbose": False,
        }
        if self.threads is not None:
            kwargs["n_threads"] = self.threads
        try:
            llm = llama_cpp.Llama(**kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(
                f"{where}: llama.cpp cannot load {self.spec.model!r}: {_first_line(e)}"
            ) from None
        metadata = getattr(llm, "metadata", None) or {}
        if not metadata.get("tokenizer.chat_template"):
            llm.close()
            raise ConfigError(
                f"{where}: the GGUF file {self.spec.model!r} has no chat template "
                "(tokenizer.chat_template in its metadata)"
            )
        # the file's own template, never a format llama-cpp-python guesses from it (those
        # ignore the request's tools)
        llm.chat_format = "chat_template.default"
        self._llm = llm
        return llm

    def _grammar(self, schema: Any) -> Any:
        """A llama.cpp grammar for a JSON schema (``True`` or None: any JSON value)."""
        key = "" if schema is None or schema is True else json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is not None:
            self._grammars.move_to_end(key)
            return grammar
        llama_grammar = importlib.import_module("llama_cpp.llama_grammar")
        try:
            if not key:
                grammar = llama_grammar.LlamaGrammar.from_string(
                    llama_grammar.JSON_GBNF, verbose=False
                )
            else:
                grammar = llama_grammar.LlamaGrammar.from_json_schema(key, verbose=False)
        except Exception as e:  # the converter raises ValueError, KeyError, TypeError...
            raise UnsupportedRequestError(
                f"{VENDOR} cannot turn this JSON schema into a grammar: {_first_line(e)}"
            ) from None
        self._grammars[key] = grammar
        if len(self._grammars) > _GRAMMAR_CACHE_SIZE:
            self._grammars.popitem(last=False)
        return grammar

    # -- one request (worker thread) ----------------------------------------------------

    def _generate(self, request: dict[str, Any]) -> ProviderResponse:
        check_fields(request, _HANDLED, VENDOR)
        fmt = parse_response_format(request.get("response_format"))
        choice = parse_tool_choice(request.get("tool_choice"))
        raw_tools = request.get("tools") or None
        if raw_tools is not None and not isinstance(raw_tools, list):
            unsupported(["tools of an unknown shape"], VENDOR)
        tools = parse_tools(raw_tools)
        if choice is not None and choice.mode in ("required", "named") and not tools:
            unsupported([f"tool_choice={choice.mode} without tools"], VENDOR)
        messages = template_messages(request, VENDOR)
        limit = max_tokens(request) or self.default_max_new_tokens
        stops = stop_list(request.get("stop"))
        sampling: dict[str, float] = {}
        for name in DRAW_FIELDS:
            value = request.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                unsupported([f"{name}={value!r}"], VENDOR)
            sampling[name] = value
        seed = sampling.pop("seed", None)

        call_mode: str | None = None  # "named" or "required": a grammar makes it a call
        forced: str | None = None  # the named tool
        schema: Any = None
        constrained = True
        if choice is not None and choice.mode == "named":
            tool = next((t for t in tools if t.name == choice.name), None)
            if tool is None:
                raise UnsupportedRequestError(
                    f"{VENDOR} has no equivalent for: tool_choice naming {choice.name!r}, "
                    "not among the request's tools"
                )
            call_mode, forced, schema = "named", tool.name, tool.parameters
        elif choice is not None and choice.mode == "required":
            call_mode = "required"
            schema = {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                        "required": ["name", "arguments"],
                    }
                    for t in tools
                ]
            }
        elif fmt.kind == "json_schema":
            schema = fmt.schema
        elif fmt.kind != "json_object":
            constrained = False
        remote = _remote_ref(schema) if constrained else None
        if remote is not None:
            raise UnsupportedRequestError(
                f"{VENDOR} has no equivalent for: a JSON schema $ref to another document "
                f"({remote[:80]}); only local '#/...' references are resolved"
            )
        template_tools = raw_tools if choice is None or choice.mode != "none" else None

        with self._lock:
            llm = self._load()
            grammar = self._grammar(schema) if constrained else None
            temperature = sampling.get("temperature", 1.0)
            start = time.perf_counter()
            try:
                result = llm.create_chat_completion(
                    messages=messages,
                    tools=template_tools,
                    temperature=float(temperature),
                    top_p=float(sampling.get("top_p", 1.0)),
                    top_k=0,
                    min_p=0.0,
                    typical_p=1.0,
                    repeat_penalty=1.0,
                    presence_penalty=float(sampling.get("presence_penalty", 0.0)),
                    frequency_penalty=float(sampling.get("frequency_penalty", 0.0)),
                    seed=None if seed is None else int(seed),
                    stop=stops or [],
                    max_tokens=limit,
                    grammar=grammar,
                )
            except ValueError as e:
                text = _first_line(e)
                if "context window" in text:
                    raise VendorError(
                        f"prompt exceeds the context length (n_ctx={llm.n_ctx()}; "
                        f"raise params.n_ctx): {text}",
                        status=400,
                    ) from None
                raise VendorError(f"local generation failed: {text}") from None
            except Exception as e:  # jinja2 errors of the template, llama_decode failures
                kind = type(e).__module__.split(".")[0]
                if kind == "jinja2":
                    raise UnsupportedRequestError(
                        f"the model's chat template rejects this request: {_first_line(e)}"
                    ) from None
                raise VendorError(f"local generation failed: {_first_line(e)}") from None
            latency_ms = (time.perf_counter() - start) * 1000.0
        if latency_ms >= self.spec.timeout * 1000.0:
            raise VendorTimeout(f"generation took longer than {self.spec.timeout:g} s")
        return self._answer(
            result,
            latency_ms,
            call_mode=call_mode,
            forced=forced,
            tools={t.name for t in tools} if tools else None,
        )

    def _answer(
        self,
        result: Mapping[str, Any],
        latency_ms: float,
        *,
        call_mode: str | None,
        forced: str | None,
        tools: set[str] | None,
    ) -> ProviderResponse:
        choice = result["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason") or "stop"
        content: str | None = text
        calls: list[ToolCall] = []
        if call_mode == "named" and forced is not None:  # the text is the tool's arguments
            content, calls = None, [ToolCall.from_raw(forced, text.strip(), new_call_id())]
        elif call_mode == "required":  # the text is {"name": ..., "arguments": ...}
            try:
                payload = json.loads(text)
            except ValueError:  # cut by max_tokens: the text is the answer
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("name"), str):
                arguments = json.dumps(payload.get("arguments", {}), ensure_ascii=False)
                content = None
                calls = [ToolCall.from_raw(payload["name"], arguments, new_call_id())]
        elif tools:
            content, calls = parse_tool_calls(text, tools)
        if calls and finish == "stop":
            finish = "tool_calls"
        raw_usage = result.get("usage") or {}
        n_prompt = int(raw_usage.get("prompt_tokens") or 0)
        n_completion = int(raw_usage.get("completion_tokens") or 0)
        usage = Usage(
            prompt_tokens=n_prompt,
            completion_tokens=n_completion,
            total_tokens=n_prompt + n_completion,
        )
        raw = {
            "id": f"chatcmpl-llamacpp-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.spec.model,
            "choices": [
                {"index": 0, "message": tool_message(calls, content), "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_completion,
                "total_tokens": n_prompt + n_completion,
            },
        }
        response = Response(
            text=content,
            tool_calls=calls,
            finish_reason=finish,
            usage=usage,
            model=self.spec.model,
            latency_ms=latency_ms,
        )
        return ProviderResponse(response=response, raw=raw, latency_ms=latency_ms)

    def _release(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()
