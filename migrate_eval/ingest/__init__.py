"""Ingest: read logged OpenAI traffic, whatever tool wrote it, into
:class:`~migrate_eval.core.records.Exchange` records.

>>> from migrate_eval.ingest import read_logs
>>> result = read_logs(["logs/"])            # doctest: +SKIP
>>> result.summary().skipped_by_reason       # doctest: +SKIP

Built-in formats: ``chat-jsonl`` (request/response pairs), ``openai-batch`` (Batch API input
files joined with their output files), ``finetune-chat`` (fine-tuning chat JSONL),
``openai-stored-completions``, ``openai-responses``, ``otel-genai`` (OTLP JSON spans),
``langfuse``, ``helicone``, ``langsmith``, ``openpipe`` and ``table`` (CSV/Parquet); see
docs/formats.md. Logs too large for memory go to an Arrow-backed dataset with
:func:`ingest_to_dataset`. Others can be added with :func:`register_format` or the ``migrate_eval.log_formats`` entry point.
"""

from migrate_eval.ingest._common import LineContext, RecordError
from migrate_eval.ingest.dataset import exchange_from_row, ingest_to_dataset, iter_exchanges
from migrate_eval.ingest.diagnose import explain_nothing_read
from migrate_eval.ingest.reader import (
    IngestResult,
    LogStream,
    expand_paths,
    read_logs,
    stream_logs,
)
from migrate_eval.ingest.registry import (
    LogFormat,
    available_formats,
    get_format,
    register_format,
    unregister_format,
)

__all__ = [
    "IngestResult",
    "LineContext",
    "LogFormat",
    "LogStream",
    "RecordError",
    "available_formats",
    "exchange_from_row",
    "expand_paths",
    "explain_nothing_read",
    "get_format",
    "ingest_to_dataset",
    "iter_exchanges",
    "read_logs",
    "register_format",
    "stream_logs",
    "unregister_format",
]
