"""``openai-batch``: OpenAI Batch API input files, joined with their output files.

Input lines (``BatchRequestInput``)::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

The ``custom_id`` is the exchange id. ``/v1/chat/completions`` bodies are Chat Completions
requests; ``/v1/responses`` bodies are converted (see :mod:`migrate_eval.ingest.responses_api`);
any other endpoint (embeddings, completions...) is a skipped line naming ``url``. An input file
read alone gives exchanges without a logged response.

Output lines (``BatchRequestOutput``, from the output file or the error file)::

    {"id": "batch_req_1", "custom_id": "req-1",
     "response": {"status_code": 200, "request_id": "req_abc", "body": {...}}, "error": null}

are joined with the input lines on ``custom_id`` by :func:`~migrate_eval.ingest.read_logs` when
it is given both files. When output files are given, an input line none of them answers is a
logged failure (``error`` set: the batch's error file holds it, or the batch expired). A line with ``error``, or with a non-2xx ``status_code``, gives an
exchange whose ``error`` is set (a logged error: kept and counted, not skipped). The
``response.request_id`` is kept in ``metadata["request_id"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migrate_eval.core.records import Exchange
from migrate_eval.ingest._common import (
    MISSING_FIELD,
    UNSUPPORTED_ENDPOINT,
    WRONG_FORMAT,
    LineContext,
    Logged,
    RecordError,
    check_chat_request,
    error_text,
    merge_metadata,
    parse_timestamp,
    wrong_type,
)
from migrate_eval.ingest._responses import http_wrapper
from migrate_eval.ingest.registry import LogFormat
from migrate_eval.ingest.responses_api import chat_request_from_responses

NAME = "openai-batch"


def is_input(record: dict[str, Any]) -> bool:
    return "custom_id" in record and "body" in record


def is_output(record: dict[str, Any]) -> bool:
    return (
        "custom_id" in record
        and "body" not in record
        and ("response" in record or "error" in record)
    )


def sniff(record: dict[str, Any]) -> bool:
    return "custom_id" in record and ("body" in record or "response" in record or "error" in record)


def _custom_id(record: dict[str, Any]) -> str:
    cid = record.get("custom_id")
    if not isinstance(cid, str):
        if cid is None:
            raise RecordError("custom_id", MISSING_FIELD, "a batch line needs a custom_id")
        raise wrong_type("custom_id", "a string", cid)
    if not cid:
        raise RecordError("custom_id", MISSING_FIELD, "the custom_id is empty")
    return cid


def _endpoint(url: str) -> str | None:
    path = url.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions") or path == "chat/completions":
        return "chat"
    if path.endswith("/responses") or path == "responses":
        return "responses"
    return None


def read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    """Read one batch *input* line (an exchange with no response yet)."""
    if is_output(record):
        raise RecordError(
            "response",
            WRONG_FORMAT,
            "a batch output line in a file of batch input lines (give output files as files of their own)",
        )
    cid = _custom_id(record)
    url = record.get("url")
    if not isinstance(url, str):
        if url is None:
            raise RecordError("url", MISSING_FIELD, "a batch input line needs a url")
        raise wrong_type("url", "a string", url)
    body = record.get("body")
    if not isinstance(body, dict):
        if body is None:
            raise RecordError("body", MISSING_FIELD, "a batch input line needs a body")
        raise wrong_type("body", "a request object", body)
    endpoint = _endpoint(url)
    metadata: dict[str, Any]
    if endpoint == "chat":
        request = check_chat_request(body, "body", ctx)
        metadata = merge_metadata((request.get("metadata"), "body.metadata"))
    elif endpoint == "responses":
        request, notes = chat_request_from_responses(body, "body", ctx)
        metadata = merge_metadata((request.get("metadata"), "body.metadata"))
        metadata["endpoint"] = "/v1/responses"
        if notes:
            metadata["conversion_notes"] = notes
    else:
        raise RecordError(
            "url",
            UNSUPPORTED_ENDPOINT,
            f"{url[:80]!r}: only /v1/chat/completions and /v1/responses requests can be replayed",
        )
    return Exchange(id=cid, source=ctx.source(), request=request, metadata=metadata)


@dataclass(slots=True)
class BatchOutput:
    """One output line, normalised and waiting for its input line."""

    file: str
    line: int
    custom_id: str
    logged: Logged | None = None
    timestamp: datetime | None = None
    request_id: str | None = None
    problem: RecordError | None = None


def read_output(record: dict[str, Any], ctx: LineContext) -> BatchOutput:
    """Read one batch *output* line. A line without a usable custom_id raises RecordError; a
    line whose response is malformed is returned with ``problem`` set, so that its input line
    can be reported against it."""
    cid = _custom_id(record)
    out = BatchOutput(file=ctx.file, line=ctx.line, custom_id=cid)
    try:
        response = record.get("response")
        err = record.get("error")
        if response is not None and not isinstance(response, dict):
            raise wrong_type("response", "an object", response)
        if err:
            status = response.get("status_code") if response else None
            out.logged = Logged(None, error_text(err, status if isinstance(status, int) else None))
        elif response is None:
            raise RecordError(
                "response", MISSING_FIELD, "a batch output line needs a 'response' or an 'error'"
            )
        else:
            if "body" not in response:
                raise RecordError("response.body", MISSING_FIELD, "the batch response has no body")
            out.logged = http_wrapper(response, "response")
            request_id = response.get("request_id")
            out.request_id = request_id if isinstance(request_id, str) else None
            if out.logged.created is not None:
                out.timestamp = parse_timestamp(out.logged.created, "response.body.created")
    except RecordError as e:
        out.problem = e
    return out


def apply_output(exchange: Exchange, out: BatchOutput) -> None:
    """Attach a joined output line's response (or logged error) to its input line's exchange."""
    logged = out.logged
    if logged is None:
        return
    exchange.response = logged.response
    exchange.error = logged.error
    if out.timestamp is not None:
        exchange.timestamp = out.timestamp
    if logged.other_choices:
        exchange.metadata["other_choices"] = logged.other_choices
    if out.request_id:
        exchange.metadata["request_id"] = out.request_id


def no_output(exchange: Exchange, output_files: list[str]) -> None:
    """An input line that none of the output/error files read answers: the batch gave no
    answer for it (its line is in an error file not given, or the batch expired or was
    cancelled before it ran). A logged failure, never an exchange with a baseline."""
    exchange.response = None
    exchange.error = (
        "no batch output line for this custom_id in "
        f"{', '.join(output_files)}: the request failed or never ran (its line is in the "
        "batch's error file: read the error file too)"
    )
    exchange.metadata["batch_missing_output"] = True


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="OpenAI Batch API input files, joined with their output/error files on custom_id",
    priority=10,
)
