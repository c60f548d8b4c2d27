"""A local open model, in process, through Hugging Face transformers (extra ``local``).

``model`` is a folder holding a saved model (``config.json``, weights, tokenizer with a chat
template) or the id of a model already in the local Hugging Face cache. Nothing is ever
downloaded: every load passes ``local_files_only=True``.

Each request is rendered with the tokenizer's chat template
(``apply_chat_template(messages, tools=..., add_generation_prompt=True)``) and generated with:

* ``temperature`` (0 = greedy; OpenAI's default 1.0 when absent), ``top_p``;
* ``max_tokens``/``max_completion_tokens`` -> ``max_new_tokens`` (default
  :data:`DEFAULT_MAX_NEW_TOKENS`, or ``params.max_new_tokens``);
* ``stop`` -> ``stop_strings`` (the answer is cut before the stop string, as OpenAI does);
* ``seed`` -> the torch seed, set before each generation under the model's lock, so equal
  requests with a seed give equal answers.

Tool calls are parsed out of the generated text in the model family's format
(:func:`~migrate_eval.replay.providers._chat_template.parse_tool_calls`: Hermes / Qwen blocks,
Mistral ``[TOOL_CALLS]``, Llama 3.x JSON, pythonic lists); text outside them is the answer's
content. Other formats are left as text.

``tool_choice`` ``required`` or a named tool, and ``response_format`` JSON modes, cannot be
enforced without constrained decoding: such requests raise
:class:`~migrate_eval.replay.providers.base.UnsupportedRequestError`, like images and audio.
``tool_choice: "none"`` renders the prompt without the tools.

The cache identity holds a fingerprint of the model's files (``weights``: content hash of the
small files, size and mtime of the large ones; :mod:`~migrate_eval.replay.providers._files`):
new weights saved at the same path are asked again, not answered from the cache.

One model instance per candidate; generation runs in one worker thread (a queue: any
``concurrency`` is safe, requests are served one at a time). ``params.device`` (default
``cpu``) and ``params.dtype`` (e.g. ``bfloat16``) configure loading and are not part of the
request.
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from migrate_eval.core.errors import ConfigError, VendorError
from migrate_eval.core.records import Response, Usage
from migrate_eval.core.request import DRAW_FIELDS, LIMIT_FIELDS
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers._chat_template import (
    parse_tool_calls,
    template_messages,
    tool_message,
    tool_names,
)
from migrate_eval.replay.providers._files import model_files_fingerprint
from migrate_eval.replay.providers._translate import (
    check_fields,
    max_tokens,
    parse_response_format,
    parse_tool_choice,
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

VENDOR = "the local transformers model"
DEFAULT_MAX_NEW_TOKENS = 256
#: ``params`` keys that configure loading, never part of the request.
PROVIDER_PARAMS = ("device", "dtype", "max_new_tokens")
_HANDLED = (
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    *DRAW_FIELDS[:3],  # temperature, top_p, seed
    *LIMIT_FIELDS,
    *PROVIDER_PARAMS,
)


class LocalHFProvider(InProcessProvider):
    """A transformers causal LM loaded from a local folder or the local HF cache."""

    thread_name = "hf-local"

    #: The feature matrix (:mod:`migrate_eval.replay.providers.matrix`).
    features: ClassVar[dict[str, str]] = {
        "system_prompt": "yes",
        "multi_turn": "yes",
        "tools": "yes",  # through the chat template; calls parsed (_chat_template)
        "tool_choice_required": "no",
        "tool_choice_named": "no",
        "parallel_tool_calls": "yes",
        "json_mode": "no",
        "json_schema": "no",
        "stop": "yes",
        "seed": "yes",
        "n": "no",
        "logprobs": "no",
        "images": "no",
        "streaming": "no",
    }

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        path = Path(spec.model).expanduser()
        self.source = str(path.resolve()) if path.exists() else spec.model
        device = spec.params.get("device", "cpu")
        dtype = spec.params.get("dtype")
        if not isinstance(device, str) or (dtype is not None and not isinstance(dtype, str)):
            raise ConfigError(f"candidate '{spec.name}': params.device and dtype must be strings")
        self.device = device
        self.dtype = dtype
        default_new = spec.params.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if isinstance(default_new, bool) or not isinstance(default_new, int) or default_new < 1:
            raise ConfigError(f"candidate '{spec.name}': params.max_new_tokens must be >= 1")
        self.default_max_new_tokens = default_new
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._weights: str | None = None  # taken once, on the first identity()
        self._weights_taken = False

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        return soft_drops(request, _HANDLED)

    def identity(self) -> dict[str, Any]:
        """Provider, model path or id, device, dtype and ``weights``: a fingerprint of the
        files loaded (:func:`~migrate_eval.replay.providers._files.model_files_fingerprint`),
        so new weights at the same path miss the cache."""
        if not self._weights_taken:
            self._weights = model_files_fingerprint(self._model_folder())
            self._weights_taken = True
        return {
            "provider": self.name or self.spec.provider,
            "base_url": None,
            "model": self.source,
            "device": self.device,
            "dtype": self.dtype,
            "weights": self._weights,
        }

    def _model_folder(self) -> Path:
        """The folder ``from_pretrained`` reads: the model's own, or its snapshot in the local
        Hugging Face cache (looked up on disk, never downloaded)."""
        path = Path(self.source)
        if path.is_dir():
            return path
        try:
            hub = importlib.import_module("huggingface_hub")
            cached = hub.try_to_load_from_cache(self.source, "config.json")
        except Exception:  # no hub library, or not a repo id: no fingerprint to take
            return path
        return Path(cached).parent if isinstance(cached, str) else path

    # -- loading (worker thread) --------------------------------------------------------

    def _load(self) -> tuple[Any, Any]:
        if self._model is not None:
            return self._model, self._tokenizer
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
        transformers.utils.logging.disable_progress_bar()
        kwargs: dict[str, Any] = {"local_files_only": True}
        if self.dtype is not None:
            if not isinstance(getattr(torch, self.dtype, None), torch.dtype):
                raise ConfigError(f"candidate '{self.spec.name}': unknown dtype {self.dtype!r}")
            kwargs["dtype"] = getattr(torch, self.dtype)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.source, local_files_only=True
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(self.source, **kwargs)
        except (OSError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"candidate '{self.spec.name}': cannot load model {self.spec.model!r} from a "
                f"local folder or the local Hugging Face cache (nothing is downloaded): {first}"
            ) from None
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"candidate '{self.spec.name}': the tokenizer of {self.spec.model!r} has no "
                "chat template"
            )
        model.to(self.device)
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        return model, tokenizer

    # -- one request (worker thread) ----------------------------------------------------

    def _generate(self, request: dict[str, Any]) -> ProviderResponse:
        check_fields(request, _HANDLED, VENDOR)
        fmt = parse_response_format(request.get("response_format"))
        choice = parse_tool_choice(request.get("tool_choice"))
        problems: list[str] = []
        if fmt.kind != "text":
            problems.append(f"response_format={fmt.kind} (no constrained decoding)")
        if choice is not None and choice.mode in ("required", "named"):
            problems.append(f"tool_choice={choice.mode} (no constrained decoding)")
        tools = request.get("tools") or None
        if tools is not None and (
            not isinstance(tools, list)
            or any(not isinstance(t, dict) or t.get("type") != "function" for t in tools)
        ):
            problems.append("tools that are not functions")
        unsupported(problems, VENDOR)
        if choice is not None and choice.mode == "none":
            tools = None
        messages = template_messages(request, VENDOR)
        limit = max_tokens(request) or self.default_max_new_tokens
        stops = stop_list(request.get("stop"))
        temperature = request.get("temperature", 1.0)
        top_p = request.get("top_p")
        seed = request.get("seed")
        for name, value in (("temperature", temperature), ("top_p", top_p), ("seed", seed)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                unsupported([f"{name}={value!r}"], VENDOR)
        torch = importlib.import_module("torch")

        with self._lock:
            model, tokenizer = self._load()
            try:
                prompt = tokenizer.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=True, tokenize=False
                )
            except Exception as e:  # jinja2 errors, raise_exception() in templates
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise UnsupportedRequestError(
                    f"the model's chat template rejects this request: {first}"
                ) from None
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            gen: dict[str, Any] = {
                "max_new_tokens": limit,
                "max_time": self.spec.timeout,
                "pad_token_id": tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None
                else tokenizer.eos_token_id,
            }
            if temperature is None or temperature > 0:
                gen.update(do_sample=True, temperature=float(temperature or 1.0), top_k=0)
                if top_p is not None:
                    gen["top_p"] = float(top_p)
            else:
                gen["do_sample"] = False
            if stops:
                gen.update(stop_strings=stops, tokenizer=tokenizer)
            if seed is not None:
                torch.manual_seed(int(seed))
            start = time.perf_counter()
            try:
                with torch.inference_mode():
                    output = model.generate(**inputs, **gen)
            except (RuntimeError, ValueError, IndexError) as e:  # e.g. prompt too long
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise VendorError(f"local generation failed: {first}") from None
            latency_ms = (time.perf_counter() - start) * 1000.0
        n_prompt = int(inputs["input_ids"].shape[1])
        new_ids = output[0, n_prompt:].tolist()
        if latency_ms >= self.spec.timeout * 1000.0:
            raise VendorTimeout(f"generation took longer than {self.spec.timeout:g} s")
        eos = tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        hit_eos = bool(new_ids) and new_ids[-1] in eos_ids
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        finish = "stop" if hit_eos or len(new_ids) < limit else "length"
        if stops:
            cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        content, calls = parse_tool_calls(text, tool_names(tools)) if tools else (text, [])
        if calls:
            finish = "tool_calls"
        usage = Usage(
            prompt_tokens=n_prompt,
            completion_tokens=len(new_ids),
            total_tokens=n_prompt + len(new_ids),
        )
        message = tool_message(calls, content)
        raw = {
            "id": f"chatcmpl-local-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.spec.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
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
        self._model = self._tokenizer = None
