"""Instruction-following parity with lm-eval's IFEval checkers (``lm_eval.tasks.ifeval``).

An exchange declares the verifiable instructions its prompt gives in its metadata, under
``ifeval`` (or ``instructions``): a list of ``{"id": "<instruction id>", "kwargs": {...}}``
with IFEval's instruction ids (``length_constraints:number_words``, ``change_case:english_lowercase``,
``detectable_format:json_format``, ...). ``ifeval_match`` checks every instruction against both
answers and scores the share of the instructions the logged answer follows that the candidate
follows too (n/a when the exchange declares none, or the logged answer follows none of them).

Offline: lm-eval's module downloads NLTK's ``punkt_tab`` data when it is imported and the data is
missing. migrate-eval never lets it download: when the data is absent, the module is imported
with downloading disabled, every checker that does not tokenise sentences works as usual, and
the few that do (``length_constraints:number_sentences``) raise :class:`UserError` on
that exchange (reported per exchange, the run goes on). Install the data once with
``python -m nltk.downloader punkt_tab punkt`` where a network is allowed, or point
``NLTK_DATA`` at a copy. The checkers also need ``langdetect`` and ``immutabledict`` (extra
``ifeval``).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from functools import cache
from typing import Any

from migrate_eval.core.errors import ConfigError, MissingExtraError, UserError
from migrate_eval.score.registry import MetricContext, register_metric
from migrate_eval.score.text import answer_text


def punkt_available() -> bool:
    """Whether NLTK's ``punkt_tab`` sentence tokenizer data is installed locally."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        return False
    return True


@cache
def instruction_registry() -> dict[str, Any]:
    """lm-eval's ``INSTRUCTION_DICT`` (instruction id -> checker class), imported without downloads."""
    try:
        import immutabledict  # noqa: F401
        import langdetect  # noqa: F401
        import nltk
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            e.name or "langdetect", "ifeval", "instruction-following checks"
        ) from e
    original = nltk.download

    def no_download(*args: Any, **kwargs: Any) -> bool:
        return False

    nltk.download = no_download
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # lm-eval prints "Downloaded punkt_tab" even when nothing was downloaded.
            warnings.simplefilter("ignore")
            from lm_eval.tasks.ifeval import instructions_registry
    finally:
        nltk.download = original
    return dict(instructions_registry.INSTRUCTION_DICT)


def parse_instructions(metadata: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ``(id, kwargs)`` instructions an exchange's metadata declares (module docstring)."""
    raw = metadata.get("ifeval", metadata.get("instructions"))
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("metadata 'ifeval' must be a list of {id, kwargs} objects")
    out: list[tuple[str, dict[str, Any]]] = []
    for item in raw:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, dict) and isinstance(item.get("id"), str):
            kwargs = item.get("kwargs") or {}
            if not isinstance(kwargs, dict):
                raise ConfigError(f"instruction {item['id']!r}: kwargs must be an object")
            out.append((item["id"], kwargs))
        else:
            raise ConfigError(f"instruction {item!r}: expected a string id or {{id, kwargs}}")
    return out


def follows(instruction_id: str, kwargs: dict[str, Any], prompt: str, response: str) -> bool:
    """Whether ``response`` follows one IFEval instruction (lm-eval's strict check)."""
    registry = instruction_registry()
    cls = registry.get(instruction_id)
    if cls is None:
        raise ConfigError(f"unknown IFEval instruction id {instruction_id!r}")
    checker = cls(instruction_id)
    checker.build_description(**{k: v for k, v in kwargs.items() if v is not None})
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=prompt)
    if not response.strip():
        return False
    try:
        return bool(checker.check_following(response))
    except LookupError as e:
        raise UserError(
            f"instruction {instruction_id!r} needs NLTK's punkt_tab data, which is not installed "
            "(migrate-eval never downloads at run time): run 'python -m nltk.downloader punkt_tab "
            "punkt' where a network is allowed, or set NLTK_DATA"
        ) from e


def _prompt(ctx: MetricContext) -> str:
    return ctx.exchange.request.last_user_text


@register_metric(
    "ifeval_match",
    kinds=("free_text",),
    description="Share of the declared IFEval instructions the logged answer follows that the "
    "candidate follows too (lm-eval's checkers); n/a without instructions.",
)
def ifeval_match(ctx: MetricContext) -> float | None:
    instructions = parse_instructions(ctx.exchange.metadata)
    if not instructions:
        return None
    prompt = _prompt(ctx)
    ref, cand = answer_text(ctx.reference), answer_text(ctx.candidate)
    kept = total = 0
    for iid, kwargs in instructions:
        if follows(iid, kwargs, prompt, ref):
            total += 1
            kept += follows(iid, kwargs, prompt, cand)
    return kept / total if total else None
