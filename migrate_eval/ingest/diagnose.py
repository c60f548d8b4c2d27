"""Why nothing was read: the message every command shows when the logs gave no exchange.

:func:`explain_nothing_read` says, for each file, which format it was sniffed as (and its
role: a Batch output file, a side file of ``/messages`` pages or OTLP log records...), how many
of its records were skipped, the first reasons (file, line, field) and what to add to read
something: the file that is missing (a Batch input file for its output file, the
``/messages`` export for stored completions, the OTLP logs for event-based spans...), or the
export option that keeps the content (Helicone ``--include-body``, LiteLLM
``store_prompts_in_spend_logs``, OTel content capture).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from migrate_eval.core.errors import LineIssue, MigrateEvalError

#: How many skipped records the message quotes.
FIRST_REASONS = 5

# (text in a reason, what to add) - the hints readers already put in their reasons, said once.
_HINTS = (
    (
        "no matching batch input line",
        "read the batch input file (the .jsonl uploaded to the Batch API) together with its "
        "output and error files",
    ),
    (
        "read the messages export",
        "read the stored completions' /messages pages together with the completions export",
    ),
    (
        "no /messages page",
        "read the stored completions' /messages pages together with the completions export",
    ),
    (
        "no input items for",
        "read the /input_items pages (each with its response_id) together with the stored "
        "responses, or add input_items to each response",
    ),
    (
        "content capture was off",
        "read the OTLP logs export (resourceLogs) together with the traces, or capture "
        "content in the spans (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)",
    ),
    (
        "--include-body",
        "export from Helicone with the bodies (npx @helicone/export --include-body)",
    ),
    (
        "store_prompts_in_spend_logs",
        "set general_settings: store_prompts_in_spend_logs: true in the LiteLLM proxy "
        "(spend logs hold no prompts otherwise), or read its callback payloads",
    ),
    (
        "is not a model call",
        "export the model calls themselves (Langfuse GENERATION observations, LangSmith "
        "'llm' runs): only other kinds of records were found",
    ),
    ("a 'llm' run", "export LangSmith runs of run_type 'llm'"),
    ("add request.body", "include the request.body column in the Portkey export"),
)


def _hints(sniffed: Mapping[str, str], skipped: Sequence[LineIssue]) -> list[str]:
    out: list[str] = []
    roles = list(sniffed.values())
    if any("output/error file" in r for r in roles) and not any(r == "openai-batch" for r in roles):
        out.append(_HINTS[0][1])
    for issue in skipped:
        for needle, hint in _HINTS:
            if needle in issue.reason and hint not in out:
                out.append(hint)
    if any(r.startswith("openai-batch") and "output" not in r for r in roles) and not any(
        "output/error file" in r for r in roles
    ):
        out.append(
            "the batch input file alone holds no answers: read its output file too to compare "
            "against what OpenAI returned"
        )
    if sniffed and all("side file" in r for r in roles if r != "empty"):
        out.append(
            "only side files were given (pages that belong to records in another file): add "
            "the main export they belong to"
        )
    return out


def explain_nothing_read(
    files: Sequence[str | Path],
    skipped: Sequence[LineIssue],
    *,
    sniffed: Mapping[str, str] | None = None,
    format: str = "auto",
) -> str:
    """The message for a read that gave no exchange. ``sniffed`` (file -> format and role, as
    :attr:`LogStream.sniffed <migrate_eval.ingest.reader.LogStream.sniffed>` has it) is
    worked out again from the files when not given."""
    names = [str(f) for f in files]
    if sniffed is None:
        sniffed = _sniff(names, format)
    per_file = Counter(issue.file for issue in skipped)
    lines = [
        f"no exchanges could be read from {len(names)} file{'s' if len(names) != 1 else ''}"
        + (":" if names else " (no log files were given)")
    ]
    for name in names:
        role = sniffed.get(name, "not sniffed")
        count = per_file.get(name, 0)
        lines.append(
            f"  - {name}: read as {role}"
            + (f"; {count} record{'s' if count != 1 else ''} skipped" if count else "")
        )
    if skipped:
        lines.append("first reasons:")
        lines.extend(f"  - {issue}" for issue in skipped[:FIRST_REASONS])
        if len(skipped) > FIRST_REASONS:
            lines.append(f"  ... and {len(skipped) - FIRST_REASONS} more")
    elif names and all(sniffed.get(n) == "empty" for n in names):
        lines.append("every file is empty")
    hints = _hints(sniffed, skipped)
    if hints:
        lines.append("to read them:")
        lines.extend(f"  - {h}" for h in hints)
    return "\n".join(lines)


def _sniff(files: list[str], format: str) -> dict[str, str]:
    from migrate_eval.ingest.reader import stream_logs

    try:
        return dict(stream_logs(files, format=format).sniffed)
    except (MigrateEvalError, OSError, ValueError) as e:
        return dict.fromkeys(files, f"unreadable ({e})")
