"""Logs of LLM gateways: ``litellm`` and ``portkey``.

``litellm`` - two shapes:

* the ``StandardLoggingPayload`` every LiteLLM callback receives (custom callbacks, the S3 /
  GCS bucket loggers, a JSON-lines logger): ``id``, ``call_type``, ``status``
  (``success``/``failure``), ``model``, ``messages``, ``response`` (a chat completion),
  ``model_parameters`` (the optional parameters the caller passed), ``startTime``/``endTime``/
  ``completionStartTime`` (epoch seconds), ``metadata``, ``request_tags``, ``error_str``,
  ``error_information``, ``response_cost``. Source: BerriAI/litellm,
  docs/my-website/docs/proxy/logging_spec.md and litellm/types/utils.py;
* rows of the proxy's spend logs (``GET /spend/logs``: a JSON array; ``/spend/logs/v2``:
  ``{"data": [...]}``; the ``LiteLLM_SpendLogs`` table): ``request_id``, ``call_type``,
  ``spend``, ``model``, ``startTime``/``endTime`` (ISO), ``messages``/``response`` and
  ``proxy_server_request`` (the request body as the client sent it), ``status``,
  ``metadata`` (with ``error_information`` for failures), ``request_tags``, ``end_user``.
  The proxy stores prompts and answers only with ``general_settings:
  store_prompts_in_spend_logs: true``; a row without them is skipped naming that setting.

``portkey`` - Portkey's logs export (JSONL): ``request.body`` / ``response.body`` (nested
objects or dotted keys), ``response_status_code``, ``is_success``, ``ai_model``, ``ai_org``,
``created_at``, ``response_time`` (ms), ``req_units``/``res_units``, ``cost`` (cents),
``trace_id``, ``metadata``, ``request_url``. Source:
https://portkey.ai/docs/product/observability/logs-export ("Exported Data").

Neither tool fills in parameters the caller did not pass (LiteLLM logs the caller's optional
parameters; both keep the request body as sent), so nothing is dropped as a tool default
except non-finite numbers and LiteLLM's empty ``extra_body``.
"""

from __future__ import annotations

from typing import Any

from migrate_eval.core.records import Exchange, Response
from migrate_eval.core.request import REQUEST_OPTIONS
from migrate_eval.ingest._common import (
    MISSING_FIELD,
    UNSUPPORTED_ENDPOINT,
    LineContext,
    Logged,
    RecordError,
    check_chat_request,
    drop_filled_params,
    error_text,
    float_or_none,
    int_or_none,
    maybe_json,
    merge_metadata,
    parse_timestamp,
    record_id,
    wrong_type,
)
from migrate_eval.ingest._csv_records import csv_reader, csv_sniffer
from migrate_eval.ingest._responses import logged_response
from migrate_eval.ingest.registry import LogFormat
from migrate_eval.ingest.responses_api import chat_request_from_responses

_CHAT_CALLS = frozenset({"completion", "acompletion", "chat_completion", "achat_completion"})
_RESPONSES_CALLS = frozenset({"responses", "aresponses"})
_LITELLM_PARAMS = frozenset(
    {*REQUEST_OPTIONS, "logit_bias", "user", "stream", "verbosity", "prediction", "modalities"}
)


#: Keys of a request body that the LiteLLM proxy reads itself (routing, retries, caching,
#: logging, guardrails: litellm docs, "Proxy - Request body params") and does not send on.
_PROXY_ONLY = frozenset(
    {
        "metadata",
        "tags",
        "fallbacks",
        "context_window_fallback_dict",
        "num_retries",
        "timeout",
        "request_timeout",
        "mock_response",
        "mock_testing_fallbacks",
        "caching",
        "cache",
        "no-log",
        "guardrails",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "user_config",
        "proxy_server_request",
        "secret_fields",
    }
)
_SECRET_KEYS = frozenset({"api_key", "secret_fields", "user_config"})


def _latency_s(start: Any, end: Any) -> float | None:
    """Milliseconds between two times (epoch seconds or ISO strings), if both are there."""
    try:
        s = parse_timestamp(start, "startTime")
        e = parse_timestamp(end, "endTime")
    except RecordError:
        return None
    if s is None or e is None or e < s:
        return None
    return (e - s).total_seconds() * 1000.0


def _litellm_error(record: dict[str, Any], meta: dict[str, Any]) -> str:
    info = record.get("error_information") or meta.get("error_information")
    info = info if isinstance(info, dict) else {}
    message = record.get("error_str") or info.get("error_message") or "error"
    code = info.get("error_code")
    parts = [str(x) for x in (info.get("error_class"), message) if x]
    status = int_or_none(code)
    return error_text(": ".join(parts) or "error", status)


# ---------------------------------------------------------------- LiteLLM


def sniff_litellm(record: dict[str, Any]) -> bool:
    if "call_type" not in record:
        return False
    payload = "messages" in record and ("model_parameters" in record or "hidden_params" in record)
    spend = "request_id" in record and "spend" in record
    return payload or spend


def read_litellm(record: dict[str, Any], ctx: LineContext) -> Exchange:
    call_type = record.get("call_type")
    spend_row = "spend" in record and "request_id" in record
    metadata_field = record.get("metadata")
    meta = maybe_json(metadata_field, "metadata")
    meta = meta if isinstance(meta, dict) else {}
    responses = call_type in _RESPONSES_CALLS
    if call_type not in _CHAT_CALLS and not responses:
        raise RecordError(
            "call_type",
            UNSUPPORTED_ENDPOINT,
            f"{call_type!r} calls are not chat completions (only completion/acompletion and "
            "responses calls can be replayed)",
        )
    body = maybe_json(record.get("proxy_server_request"), "proxy_server_request")
    notes: list[str] = []
    proxy_params: dict[str, Any] = {}
    if isinstance(body, dict) and (body.get("messages") or body.get("input")):
        request = {}
        for key, value in body.items():
            if key in _PROXY_ONLY or key.startswith("litellm"):
                if key not in _SECRET_KEYS:
                    proxy_params[key] = value
            else:
                request[key] = value
        path = "proxy_server_request"
    else:
        messages = maybe_json(record.get("messages"), "messages")
        if not messages:
            hint = (
                " (the proxy stores prompts only with general_settings: "
                "store_prompts_in_spend_logs: true)"
                if spend_row
                else " (message logging was turned off: turn_off_message_logging)"
            )
            raise RecordError("messages", MISSING_FIELD, "no prompt recorded" + hint)
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        request = {"model": record.get("model"), "messages": messages}
        if responses:
            request = {"model": record.get("model"), "input": messages}
        params = maybe_json(record.get("model_parameters"), "model_parameters")
        if params is not None and not isinstance(params, dict):
            raise wrong_type("model_parameters", "an object", params)
        for key, value in (params or {}).items():
            if key in _LITELLM_PARAMS and value is not None:
                request[key] = value
        path = ""
    if request.get("model") is None:
        request["model"] = record.get("model") or record.get("model_group")
    if responses or ("input" in request and "messages" not in request):
        request, notes = chat_request_from_responses(request, path, ctx)
    else:
        check_chat_request(request, path or "", ctx)
    latency = float_or_none(record.get("response_time"))
    latency = latency * 1000.0 if latency is not None and not spend_row else latency
    latency = _latency_s(record.get("startTime"), record.get("endTime")) or latency
    status = record.get("status") or meta.get("status")
    if status == "failure":
        logged = Logged(None, _litellm_error(record, meta))
    else:
        response = maybe_json(record.get("response"), "response")
        if response in ({}, "", None):
            if spend_row:
                raise RecordError(
                    "response",
                    MISSING_FIELD,
                    "no answer recorded (the proxy stores responses only with "
                    "general_settings: store_prompts_in_spend_logs: true)",
                )
            logged = Logged(None)
        elif isinstance(response, str):
            logged = Logged(Response(text=response, latency_ms=latency))
        else:
            logged = logged_response(response, "response", latency)
    if logged.response is not None:
        first = record.get("completionStartTime")
        if first is not None and first != record.get("endTime"):
            logged.response.ttft_ms = _latency_s(record.get("startTime"), first)
    metadata: dict[str, Any] = {}
    requester = meta.get("requester_metadata")
    if isinstance(requester, dict):
        metadata.update(requester)
    spend_meta = meta.get("spend_logs_metadata")
    if isinstance(spend_meta, dict):
        metadata.update(spend_meta)
    for key in ("user_api_key_alias", "user_api_key_team_alias", "user_api_key_team_id"):
        if meta.get(key):
            metadata[key] = meta[key]
    for key in (
        "trace_id",
        "session_id",
        "end_user",
        "model_group",
        "custom_llm_provider",
        "api_base",
        "cache_hit",
    ):
        value = record.get(key)
        if value not in (None, "", {}):
            metadata[key] = value
    cost = record.get("response_cost", record.get("spend"))
    if cost is not None:
        metadata["cost"] = cost
    tags = maybe_json(record.get("request_tags"), "request_tags")
    if tags:
        metadata["tags"] = tags
    if notes:
        metadata["conversion_notes"] = notes
    if proxy_params:  # what the client told the proxy, not the model: kept, not replayed
        metadata["proxy_params"] = proxy_params
    if request.get("metadata") == {}:
        del request["metadata"]
    drop_filled_params(request, metadata, {"extra_body": ({},)}, "LiteLLM logs an empty extra_body")
    ex_id = record_id(record.get("request_id") or record.get("id"), "id")
    return Exchange(
        id=ex_id or ctx.default_id(),
        source=ctx.source(),
        timestamp=parse_timestamp(record.get("startTime"), "startTime"),
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


# ---------------------------------------------------------------- Portkey


def _dotted(record: dict[str, Any], outer: str, inner: str) -> Any:
    nested = record.get(outer)
    if isinstance(nested, dict) and inner in nested:
        return nested[inner]
    return record.get(f"{outer}.{inner}")


def sniff_portkey(record: dict[str, Any]) -> bool:
    has_body = "request.body" in record or (
        isinstance(record.get("request"), dict) and ("body" in record["request"])
    )
    return has_body and ("ai_model" in record or "is_success" in record or "ai_org" in record)


def read_portkey(record: dict[str, Any], ctx: LineContext) -> Exchange:
    field = "request.body"
    body = maybe_json(_dotted(record, "request", "body"), field)
    if body is None:
        raise RecordError(field, MISSING_FIELD, "no request body in the export (add request.body)")
    if not isinstance(body, dict):
        raise wrong_type(field, "a request object", body)
    url = record.get("request_url")
    notes: list[str] = []
    if isinstance(url, str) and "/chat/completions" not in url:
        if url.rstrip("/").endswith("/responses"):
            request, notes = chat_request_from_responses(body, field, ctx)
        else:
            raise RecordError(
                "request_url",
                UNSUPPORTED_ENDPOINT,
                f"{url[:80]!r}: only chat completions and responses calls can be replayed",
            )
    else:
        if body.get("model") is None and isinstance(record.get("ai_model"), str):
            body["model"] = record["ai_model"]
        request = check_chat_request(body, field, ctx)
    latency = float_or_none(record.get("response_time"))
    status = int_or_none(record.get("response_status_code", _dotted(record, "response", "status")))
    success = record.get("is_success")
    rbody = maybe_json(_dotted(record, "response", "body"), "response.body")
    failed = (status is not None and not 200 <= status < 300) or success in (0, False, "0")
    if failed:
        err = rbody.get("error") if isinstance(rbody, dict) else rbody
        logged = Logged(None, error_text(err, status))
    else:
        logged = logged_response(rbody, "response.body", latency)
    metadata = merge_metadata(
        (maybe_json(record.get("metadata"), "metadata"), "metadata"),
    )
    for key in (
        "trace_id",
        "ai_org",
        "ai_model",
        "cost",
        "cost_currency",
        "cache_status",
        "prompt_slug",
        "req_units",
        "res_units",
    ):
        if record.get(key) not in (None, ""):
            metadata[key] = record[key]
    if notes:
        metadata["conversion_notes"] = notes
    drop_filled_params(request, metadata, {}, "not a finite number")
    ex_id = record_id(record.get("id") or record.get("request_id"), "id")
    return Exchange(
        id=ex_id or ctx.default_id(),
        source=ctx.source(),
        timestamp=parse_timestamp(record.get("created_at"), "created_at"),
        request=request,
        response=logged.response,
        error=logged.error,
        metadata=metadata,
    )


FORMATS = (
    LogFormat(
        name="litellm",
        sniff=sniff_litellm,
        reader=read_litellm,
        description="LiteLLM StandardLoggingPayload (callbacks) and proxy /spend/logs rows",
        priority=18,
        sniff_file=csv_sniffer(lambda h: "call_type" in h and "request_id" in h and "spend" in h),
        read_file=csv_reader(read_litellm),
    ),
    LogFormat(
        name="portkey",
        sniff=sniff_portkey,
        reader=read_portkey,
        description="Portkey logs export (request.body/response.body, nested or dotted)",
        priority=18,
    ),
)
