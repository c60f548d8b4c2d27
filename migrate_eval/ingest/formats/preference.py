"""``openai-preference``: OpenAI preference (DPO) fine-tuning files.

One example a line (Source: OpenAI API reference, "The input format for fine-tuning: the
preference input" / ``FineTunePreferenceRequestInput`` in openai/openai-openapi)::

    {"input": {"messages": [...], "tools": [...], "parallel_tool_calls": true},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

``input`` is the prompt (read as ``finetune-chat`` reads its messages); the last message of
``preferred_output`` is the reference answer; ``non_preferred_output`` is kept in the metadata
(``non_preferred_output``) so a metric can check the candidate does not give the rejected
answer. Without this format the lines were taken for ``{input, output}`` request logs with no
answer.
"""

from __future__ import annotations

from typing import Any

from migrate_eval.core.records import Exchange
from migrate_eval.ingest._common import MISSING_FIELD, LineContext, RecordError, wrong_type
from migrate_eval.ingest.registry import LogFormat, get_format

NAME = "openai-preference"


def sniff(record: dict[str, Any]) -> bool:
    return isinstance(record.get("input"), dict) and "preferred_output" in record


def read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    prompt = record["input"]
    messages = prompt.get("messages")
    if not isinstance(messages, list):
        raise wrong_type("input.messages", "an array of messages", messages)
    preferred = record.get("preferred_output")
    if not isinstance(preferred, list) or not preferred:
        if preferred is None:
            raise RecordError("preferred_output", MISSING_FIELD, "no preferred answer")
        raise wrong_type("preferred_output", "a non-empty array of assistant messages", preferred)
    rejected = record.get("non_preferred_output")
    if rejected is not None and not isinstance(rejected, list):
        raise wrong_type("non_preferred_output", "an array of assistant messages", rejected)
    example = {k: v for k, v in prompt.items() if k != "messages"}
    example["messages"] = [*messages, preferred[-1]]
    try:
        # through the registry: formats do not import each other
        exchange = get_format("finetune-chat").reader(example, ctx)
    except RecordError as e:
        n = len(messages)
        if e.field.startswith(f"messages[{n}]"):
            e.field = e.field.replace(f"messages[{n}]", f"preferred_output[{len(preferred) - 1}]")
        elif e.field.startswith("messages"):
            e.field = "input." + e.field
        else:
            e.field = "input." + e.field if e.field else "input"
        raise
    if rejected:
        exchange.metadata["non_preferred_output"] = rejected
    exchange.metadata["fine_tuning"] = "preference"
    return exchange


FORMAT = LogFormat(
    name=NAME,
    sniff=sniff,
    reader=read,
    description="OpenAI preference (DPO) fine-tuning JSONL (input, preferred_output)",
    priority=16,
)
