"""A failed logged call is an exchange with ``error`` set and no answer, whatever the format
and whichever path reads it (issue 14, section 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate_eval.ingest import ingest_to_dataset, iter_exchanges, read_logs
from tests.ingest.helpers import write_jsonl

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("pure", [False, True])
def test_a_proxy_line_with_an_error_beside_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pure: bool
) -> None:
    # What an OpenAI-compatible proxy logs for a failed call: the request, no response, the
    # error and its HTTP status (the shape of LiteLLM's and Helicone's raw request logs).
    if pure:
        monkeypatch.setenv("MIGRATE_EVAL_PURE_PYTHON", "1")
    lines = [
        {"id": "a", "request": REQUEST, "response": None, "error": None},
        {
            "id": "b",
            "request": REQUEST,
            "response": None,
            "error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"},
            "status_code": 429,
        },
        {"id": "c", "request": REQUEST, "error": "upstream timed out"},
    ]
    path = write_jsonl(tmp_path / "proxy.jsonl", lines)
    result = read_logs([path])
    by_id = {ex.id: ex for ex in result.exchanges}
    assert by_id["a"].error is None
    assert by_id["b"].error == "HTTP 429: rate_limit_exceeded: Rate limit reached"
    assert by_id["c"].error == "upstream timed out" and by_id["c"].response is None
    assert result.logged_errors == 2
    ds, _summary = ingest_to_dataset([path], tmp_path / "cache")
    assert {ex.id: ex.error for ex in iter_exchanges(ds)} == {
        ex.id: ex.error for ex in result.exchanges
    }
