"""AWS Bedrock through the Converse API (boto3's ``bedrock-runtime`` client).

The Chat Completions request is translated to ``Converse``:

* ``system``/``developer`` messages -> ``system`` text blocks; ``user``/``assistant`` turns ->
  ``messages`` (consecutive turns of one role are merged, as Converse requires alternation);
  ``tool`` messages -> ``toolResult`` blocks of a user turn; assistant ``tool_calls`` ->
  ``toolUse`` blocks; ``image_url`` parts with base64 data URLs -> ``image`` blocks (bytes).
* ``tools`` -> ``toolConfig.tools[].toolSpec`` (``inputSchema.json``); ``tool_choice``
  ``auto``/``required``/named -> ``toolChoice`` ``auto``/``any``/``tool``.
* ``response_format`` ``json_schema``/``json_object`` -> a forced tool named after the schema
  whose input is the JSON answer (returned as the answer's text). Not combinable with tools.
* ``temperature``, ``top_p``, ``max_tokens``/``max_completion_tokens``, ``stop`` ->
  ``inferenceConfig``.
* Soft gaps, dropped before sending and counted per task (refused under ``--strict-params``):
  ``seed``, penalties, ``logprobs``, ``logit_bias``, ``parallel_tool_calls: false``,
  ``reasoning_effort``; for Anthropic models (``anthropic.`` in the model id), ``top_p``
  beside ``temperature`` (newer Claude models reject the two together).
* Anything else (``n`` > 1, ``tool_choice: "none"`` with tools, remote image URLs,
  audio...) raises
  :class:`~migrate_eval.replay.providers.base.UnsupportedRequestError` naming it.

Candidate configuration: ``model`` is the Bedrock model id or inference-profile ARN;
``params.region`` (else ``AWS_REGION``/``AWS_DEFAULT_REGION``); ``params.aws_profile`` (else
the default credential chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, instance roles...); ``base_url`` overrides the
endpoint URL (VPC endpoints, tests). These params are never sent to the model.

boto3's client is synchronous: calls run in a thread pool of ``concurrency`` threads (the
client is thread-safe and shares one connection pool of that size). Bedrock's quotas are in
the tens to hundreds of requests per minute, far below what a thread pool sustains, so an
async AWS client (aiobotocore, which pins botocore versions tightly) would buy nothing.
botocore's own retries are off: the replay engine retries, honouring its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from migrate_eval.core.errors import ConfigError, MissingExtraError, VendorError
from migrate_eval.core.records import Response, ToolCall, Usage
from migrate_eval.core.request import (
    DRAW_FIELDS,
    LIMIT_FIELDS,
    TOOL_DECLARATION_FIELDS,
    content_text,
)
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers._translate import (
    Image,
    MessageCheck,
    check_fields,
    is_no_op,
    max_tokens,
    merge_turn,
    messages_of,
    parse_arguments,
    parse_response_format,
    parse_tool_choice,
    parse_tools,
    soft_drops,
    split_system,
    stop_list,
    translate_parts,
    unsupported,
)
from migrate_eval.replay.providers.base import (
    MalformedResponseError,
    Provider,
    ProviderResponse,
    UnsupportedRequestError,
    VendorConnectionError,
    VendorTimeout,
    is_retryable_status,
    parse_retry_after,
)

VENDOR = "Bedrock Converse"
#: ``params`` keys that configure the client, never sent to the model.
PROVIDER_PARAMS = ("region", "aws_profile")
#: Converse's ``inferenceConfig`` has ``temperature`` and ``topP`` of the draw fields.
_HANDLED = (
    "messages",
    *TOOL_DECLARATION_FIELDS[:3],  # tools, functions, tool_choice (no legacy function_call)
    "response_format",
    *DRAW_FIELDS[:2],
    *LIMIT_FIELDS,
    *PROVIDER_PARAMS,
)
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: Bedrock error codes and the HTTP status they stand for when botocore reports none.
_ERROR_STATUS = {
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ModelNotReadyException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}


def _aws() -> tuple[Any, Any, Any]:
    """boto3, botocore.exceptions and botocore.parsers, imported on first use (extra bedrock)."""
    try:
        return (
            importlib.import_module("boto3"),
            importlib.import_module("botocore.exceptions"),
            importlib.import_module("botocore.parsers"),
        )
    except ImportError:
        raise MissingExtraError("boto3", "bedrock", "provider 'bedrock'") from None


def _text_block(text: str) -> dict[str, Any]:
    return {"text": text}


def _image_block(image: Image, check: MessageCheck) -> dict[str, Any]:
    if not image.inline:
        unsupported(["images by remote URL (Converse takes bytes)"], VENDOR)
    fmt = _IMAGE_FORMATS.get(image.mime_type or "")
    if fmt is None:
        unsupported([f"image type {image.mime_type}"], VENDOR)
    return {"image": {"format": fmt, "source": {"bytes": image.raw_bytes()}}}


def _blocks(content: Any, check: MessageCheck) -> list[dict[str, Any]]:
    return translate_parts(content, check, _text_block, _image_block)


def translate(request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The ``Converse`` keyword arguments (without ``modelId``) for a Chat Completions request.

    Returns them with the name of the forced JSON-output tool, if ``response_format`` asked
    for JSON (its input is the answer).
    """
    check_fields(request, _HANDLED, VENDOR)
    check = MessageCheck()
    texts, messages = split_system(messages_of(request))
    system = [{"text": text} for text in texts if text]
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "user":
            merge_turn(turns, "user", _blocks(m.get("content"), check))
        elif role == "assistant":
            blocks = _blocks(m.get("content"), check)
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    unsupported(["an assistant tool call without a function name"], VENDOR)
                    continue
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": str(tc.get("id") or f"call_{len(blocks)}"),
                            "name": fn["name"],
                            "input": parse_arguments(fn.get("arguments")),
                        }
                    }
                )
            if m.get("function_call"):
                check.problems.append("legacy function_call messages")
            merge_turn(turns, "assistant", blocks)
        elif role == "tool":
            result = {
                "toolUseId": str(m.get("tool_call_id") or ""),
                "content": [{"text": content_text(m.get("content"))}],
                "status": "success",
            }
            merge_turn(turns, "user", [{"toolResult": result}])
        else:
            check.problems.append(f"messages with role {role!r}")
    unsupported(check.problems, VENDOR)
    if not turns or turns[0]["role"] != "user":
        unsupported(["a conversation that does not start with a user turn"], VENDOR)

    kwargs: dict[str, Any] = {"messages": turns}
    if system:
        kwargs["system"] = system
    inference: dict[str, Any] = {}
    limit = max_tokens(request)
    if limit is not None:
        inference["maxTokens"] = limit
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        value = request.get(name)
        if value is not None:
            inference[key] = value
    stops = stop_list(request.get("stop"))
    if stops:
        inference["stopSequences"] = stops
    if inference:
        kwargs["inferenceConfig"] = inference

    tools = parse_tools(request.get("tools"), request.get("functions"))
    choice = parse_tool_choice(request.get("tool_choice"))
    fmt = parse_response_format(request.get("response_format"))
    json_tool: str | None = None
    specs = [{"toolSpec": t.declaration(inputSchema={"json": t.parameters})} for t in tools]
    if fmt.kind != "text":
        if tools:
            unsupported(["response_format together with tools"], VENDOR)
        json_tool = fmt.name if fmt.kind == "json_schema" else "json_answer"
        schema = fmt.schema if fmt.schema is not None else {"type": "object"}
        specs = [
            {
                "toolSpec": {
                    "name": json_tool,
                    "description": "Give the answer as this tool's input.",
                    "inputSchema": {"json": schema},
                }
            }
        ]
        kwargs["toolConfig"] = {"tools": specs, "toolChoice": {"tool": {"name": json_tool}}}
    elif specs:
        config: dict[str, Any] = {"tools": specs}
        if choice is not None:
            if choice.mode == "none":
                unsupported(["tool_choice=none with tools"], VENDOR)
            elif choice.mode == "required":
                config["toolChoice"] = {"any": {}}
            elif choice.mode == "named":
                config["toolChoice"] = {"tool": {"name": choice.name}}
            else:
                config["toolChoice"] = {"auto": {}}
        kwargs["toolConfig"] = config
    return kwargs, json_tool


def normalise(raw: dict[str, Any], json_tool: str | None, latency_ms: float) -> Response:
    """A Converse answer as a :class:`Response` (OpenAI finish reasons, JSON arguments)."""
    output = raw.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise MalformedResponseError("Converse answer without output.message.content")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if not isinstance(block, dict):
            raise MalformedResponseError("Converse content block that is not an object")
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = json.dumps(use.get("input", {}), ensure_ascii=False)
            if json_tool is not None and use.get("name") == json_tool:
                texts = [arguments]
                continue
            calls.append(
                ToolCall.from_raw(str(use.get("name", "")), arguments, use.get("toolUseId"))
            )
    reason = raw.get("stopReason")
    finish = _FINISH.get(str(reason), str(reason) if reason else None)
    if json_tool is not None and finish == "tool_calls" and not calls:
        finish = "stop"
    usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    return Response(
        text="".join(texts) if texts else None,
        tool_calls=calls,
        finish_reason=finish,
        usage=Usage(
            prompt_tokens=usage.get("inputTokens"),
            completion_tokens=usage.get("outputTokens"),
            total_tokens=usage.get("totalTokens"),
            cached_tokens=usage.get("cacheReadInputTokens"),
        )
        if usage
        else None,
        latency_ms=latency_ms,
    )


class BedrockProvider(Provider):
    """AWS Bedrock models through the Converse API (see the module docstring)."""

    #: The feature matrix (:mod:`migrate_eval.replay.providers.matrix`).
    features: ClassVar[dict[str, str]] = {
        "system_prompt": "yes",
        "multi_turn": "yes",
        "tools": "yes",
        "tool_choice_required": "yes",
        "tool_choice_named": "yes",
        "parallel_tool_calls": "yes",
        "json_mode": "emulated",  # a forced tool whose input is the answer
        "json_schema": "emulated",
        "stop": "yes",
        "seed": "no",
        "n": "no",
        "logprobs": "no",
        "images": "yes",  # data URLs (bytes); remote URLs are refused, never fetched
        "streaming": "no",
    }

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        region = spec.params.get("region") or os.environ.get("AWS_REGION")
        self.region = region or os.environ.get("AWS_DEFAULT_REGION")
        profile = spec.params.get("aws_profile")
        self.profile = profile if isinstance(profile, str) else None
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        drops = soft_drops(request, _HANDLED)
        if (
            "anthropic." in self.spec.model
            and not is_no_op("temperature", request.get("temperature"))
            and not is_no_op("top_p", request.get("top_p"))
        ):
            drops = (*drops, "top_p")
        return drops

    def identity(self) -> dict[str, Any]:
        return {
            "provider": self.name or self.spec.provider,
            "base_url": self.spec.base_url,
            "region": self.region,
            "model": self.spec.model,
        }

    def _make_client(self) -> Any:
        with self._client_lock:
            if self._client is not None:
                return self._client
            if not self.region:
                raise ConfigError(
                    f"candidate '{self.spec.name}': no AWS region: set params.region or AWS_REGION"
                )
            boto3, exceptions, _ = _aws()
            config_module = importlib.import_module("botocore.config")
            timeout = self.spec.timeout
            config = config_module.Config(
                region_name=self.region,
                connect_timeout=min(timeout, 10.0),
                read_timeout=timeout,
                retries={"total_max_attempts": 1, "mode": "standard"},
                max_pool_connections=max(1, self.spec.concurrency),
                user_agent_extra="migrate-eval/0.1",
            )
            try:
                session = boto3.session.Session(profile_name=self.profile)
                self._client = session.client(
                    "bedrock-runtime", endpoint_url=self.spec.base_url, config=config
                )
            except exceptions.BotoCoreError as e:
                raise ConfigError(f"candidate '{self.spec.name}': {e}") from None
            return self._client

    def _call(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], float]:
        client = self._make_client()
        start = time.perf_counter()
        raw: dict[str, Any] = client.converse(modelId=self.spec.model, **kwargs)
        return raw, (time.perf_counter() - start) * 1000.0

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        kwargs, json_tool = translate(request)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, self.spec.concurrency), thread_name_prefix="bedrock"
            )
        loop = asyncio.get_running_loop()
        try:
            raw, latency_ms = await loop.run_in_executor(self._pool, self._call, kwargs)
        except Exception as e:  # botocore's failures, mapped; anything else is re-raised
            raise self._map_error(e) from None
        raw.pop("ResponseMetadata", None)
        response = normalise(raw, json_tool, latency_ms)
        try:
            raw_json = json.dumps(raw, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # pragma: no cover - Converse answers are JSON
            raw_json = None
        return ProviderResponse(
            response=response, raw=json.loads(raw_json) if raw_json else {}, latency_ms=latency_ms,
            raw_json=raw_json,
        )  # fmt: skip

    def _map_error(self, e: Exception) -> Exception:
        _, exc, parsers = _aws()
        if isinstance(e, exc.ClientError):
            return self._client_error(e)
        if isinstance(
            e, exc.NoCredentialsError | exc.PartialCredentialsError | exc.ProfileNotFound
        ):
            return ConfigError(f"candidate '{self.spec.name}': AWS credentials: {e}")
        if isinstance(e, exc.ReadTimeoutError | exc.ConnectTimeoutError):
            return VendorTimeout(f"no answer within {self.spec.timeout:g} s")
        if isinstance(
            e, exc.EndpointConnectionError | exc.ConnectionClosedError | exc.HTTPClientError
        ):
            return VendorConnectionError(f"connection failed: {e}")
        if isinstance(e, exc.ParamValidationError):  # botocore checks the request locally
            detail = " ".join(str(e).split())[:300] or "invalid parameters"
            return UnsupportedRequestError(f"{VENDOR} rejects the translated request: {detail}")
        if isinstance(e, parsers.ResponseParserError):
            return MalformedResponseError(f"unparsable Converse answer: {e}")
        return e

    def _client_error(self, e: Any) -> VendorError:
        error = e.response.get("Error", {})
        meta = e.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        status = meta.get("HTTPStatusCode") or _ERROR_STATUS.get(code) or 500
        headers = {str(k).lower(): str(v) for k, v in (meta.get("HTTPHeaders") or {}).items()}
        message = " ".join(str(error.get("Message") or "").split())[:300] or "(no message)"
        retryable = is_retryable_status(int(status)) or code in (
            "ThrottlingException",
            "ModelNotReadyException",
            "ServiceUnavailableException",
            "InternalServerException",
            "ModelTimeoutException",
        )
        return VendorError(
            f"HTTP {status} {code}: {message}",
            status=int(status),
            retryable=retryable,
            retry_after=parse_retry_after(headers),
        )

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
