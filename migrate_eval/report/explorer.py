"""Evidence computed at render time: the exchange browser's data, charts, diffs, mismatches.

* :func:`exchange_blob` - the run's exchanges (every one up to :data:`MAX_BROWSER_EXCHANGES`)
  as one compact, columnar JSON document that the page embeds in a non-executed
  ``<script type="application/json">`` element; the page's own script paginates it client-side,
  so the HTML stays small (texts are cut to a per-run budget).
* :func:`histogram_svg` - a parity histogram as inline SVG (no chart library).
* :func:`word_diff` - a word-level diff of two texts (difflib), as escaped markup.
* :func:`confusion` and :func:`field_mismatches` - for classification, structured and tool-call
  tasks, computed from the scores, the logged exchanges and the candidates' answers.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from migrate_eval.core.records import Exchange, ReplayResult, Response
from migrate_eval.core.results import Results
from migrate_eval.report._format import last_user_message, tool_calls_json, visible_controls

#: Characters of logged content the exchange browser may embed in total (all texts together).
TEXT_BUDGET_CHARS = 14_000_000
#: Longest text embedded per field, whatever the budget.
MAX_BLOB_TEXT = 2000
#: Shortest cut applied on very large runs.
MIN_BLOB_TEXT = 24
#: Exchanges the browser embeds at most: a larger run shows, per task, its lowest-parity
#: exchanges and a seeded sample of the rest (all of them are in the run folder's datasets).
MAX_BROWSER_EXCHANGES = 50_000
#: ... and each task at least this many of its exchanges.
MIN_BROWSER_PER_TASK = 50
#: Histogram bins over [0, 1].
BINS = 10
#: At most this many labels in a confusion matrix (the rest are grouped as "(other)").
MAX_LABELS = 12
#: At most this many tokens on each side of a word diff.
MAX_DIFF_TOKENS = 1500


def shown_answer(resp: Response | None) -> str:
    """An answer as the report shows it, one text: text, refusal and tool calls (pretty JSON)
    (metrics read :func:`migrate_eval.score.text.answer_text`: what a user sees)."""
    if resp is None:
        return ""
    parts: list[str] = []
    if resp.text:
        parts.append(resp.text)
    if resp.refusal:
        parts.append(f"[refusal] {resp.refusal}")
    tc = tool_calls_json(resp)
    if tc is not None:
        parts.append(tc)
    return "\n".join(parts)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def text_limit(n_exchanges: int, n_candidates: int) -> int:
    """Characters kept per embedded text for a run of this size."""
    fields = max(1, n_exchanges * (2 + n_candidates))
    return int(min(MAX_BLOB_TEXT, max(MIN_BLOB_TEXT, TEXT_BUDGET_CHARS // fields)))


def _round(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, 3) if math.isfinite(v) else None


def exchange_blob(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
) -> tuple[str, int, int, int]:
    """The exchange browser's data as JSON safe to embed in HTML; also the text cut, the
    exchanges shown and the run's exchanges (more than shown above
    :data:`MAX_BROWSER_EXCHANGES`: :func:`_browsed`).

    Columnar: ``ids``, ``task`` (index into ``tasks``), ``user``, ``logged`` and, per candidate,
    ``parity``, ``status`` (index into ``statuses``) and ``answer``. ``<``, ``>``, ``&`` and the
    line separators are written as JSON escapes, so the text can never close its element.
    """
    data, limit, n, total = _blob_data(results, scores, exchanges, replays)
    return _blob_text(data), limit, n, total


def exchange_blob_utf8(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
) -> tuple[bytes | None, int, int, int]:
    """:func:`exchange_blob`'s text as UTF-8 bytes, never decoded (None where ``orjson``
    cannot write it: :func:`exchange_blob` then). As text it is the run's largest string, 4
    bytes a character in memory as soon as one answer has an emoji; as UTF-8 about 1."""
    data, limit, n, total = _blob_data(results, scores, exchanges, replays)
    return _blob_bytes(data), limit, n, total


def _blob_data(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
) -> tuple[dict[str, Any], int, int, int]:
    cand_names = [c.name for c in results.candidates]
    task_list = [t.name for t in results.tasks]
    # The run's scores as arrays (codes into their distinct values), never one Python object
    # a row: a million exchanges are two million rows (issue 17).
    if not scores.empty and {"exchange_id", "task", "candidate"}.issubset(scores.columns):
        row_ex, ex_ids = _str_codes(scores["exchange_id"])
        task_seen = _distinct_text(scores["task"])
        cand_seen = _distinct_text(scores["candidate"])
        parity_col = (
            pd.to_numeric(scores["parity"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            if "parity" in scores.columns
            else np.full(len(scores), np.nan)
        )
        status_col: pd.Series | None = scores["status"] if "status" in scores.columns else None
        # an exchange's task is that of its first row (codes first show in increasing order)
        first_row = np.flatnonzero(np.diff(np.maximum.accumulate(row_ex), prepend=-1))
        first_task, first_task_names = text_codes(scores["task"].iloc[first_row])
        ex_task = (
            np.asarray([task_seen.index(t) for t in first_task_names], dtype=np.intp)[first_task]
            if len(first_row)
            else np.zeros(0, dtype=np.intp)
        )
        del first_row, first_task
    else:
        row_ex = ex_task = np.zeros(0, dtype=np.intp)
        ex_ids = pd.Index([], dtype=object)
        task_seen, cand_seen = [], []
        parity_col = np.zeros(0)
        status_col = None
    for t in task_seen:
        if t not in task_list:
            task_list.append(str(t))
    for c in cand_seen:
        if c not in cand_names:
            cand_names.append(str(c))
    n_scored = len(ex_ids)
    # exchanges without a score row are still reachable (task "")
    listed = list(exchanges)
    if listed:
        known = ex_ids.get_indexer(listed) >= 0 if n_scored else np.zeros(len(listed), bool)
        extra: list[Any] = list(pd.unique(np.asarray(listed, dtype=object)[~known]))
        del known
    else:
        extra = []
    del listed
    if extra:
        if "" not in task_list:
            task_list.append("")
        no_task = task_seen.index("") if "" in task_seen else len(task_seen)
        ex_task = np.concatenate([ex_task, np.full(len(extra), no_task, dtype=np.intp)])
    total = n_scored + len(extra)

    def id_at(positions: np.ndarray) -> list[str]:
        """The ids at ``positions`` (ascending) of the run's exchange order."""
        scored = positions[positions < n_scored]
        out: list[str] = ex_ids.take(scored).tolist() if len(scored) else []
        out.extend(extra[i - n_scored] for i in positions[positions >= n_scored].tolist())
        return out

    if total > MAX_BROWSER_EXCHANGES:
        # worst value of an exchange: an error, an unsupported answer or no parity first
        value = parity_col.copy()
        value[np.isnan(value)] = -1.0
        if status_col is not None:
            value[~text_is(status_col, "ok")] = -1.0
        worst = np.full(total, 2.0)
        np.minimum.at(worst, row_ex, value)
        del value
        worst[n_scored:] = -1.0
        kept = _browsed(ex_task, worst, id_at)
        del worst
    else:
        kept = np.arange(total)
    ids = id_at(kept)
    n = len(ids)
    limit = text_limit(n, len(cand_names))

    task_index = {t: i for i, t in enumerate(task_list)}
    task_map = np.asarray(
        [task_index[str(t)] for t in task_seen] + ([task_index[""]] if extra else []),
        dtype=np.intp,
    )
    statuses = ["ok", "error", "unsupported", "missing"]
    status_index = {s: i for i, s in enumerate(statuses)}
    parity_rows = np.full((len(cand_names), n), np.nan)
    status_rows = np.full((len(cand_names), n), status_index["missing"], dtype=np.intp)
    # the rows of the kept exchanges, in the frame's order (a later row of the same exchange
    # and candidate wins, as it did)
    new_pos = np.full(total, -1, dtype=np.intp)
    new_pos[kept] = np.arange(n)
    pos = new_pos[row_ex]
    rows = np.flatnonzero(pos >= 0)
    del new_pos
    if len(rows):
        pos = pos[rows]
        cand_codes, cand_texts = text_codes(scores["candidate"].iloc[rows])
        cand_index = {c: i for i, c in enumerate(cand_names)}
        col = np.asarray([cand_index[str(c)] for c in cand_texts], dtype=np.intp)[cand_codes]
        if status_col is not None:
            st, st_texts = text_codes(status_col.iloc[rows])
            for s in st_texts:  # new statuses in the order they first show
                if s not in status_index:
                    status_index[s] = len(statuses)
                    statuses.append(s)
            status_map = np.asarray([status_index[s] for s in st_texts], dtype=np.intp)
        else:
            st, status_map = np.zeros(len(rows), dtype=np.intp), np.zeros(1, dtype=np.intp)
        last = ~pd.Series(pos * len(cand_names) + col).duplicated(keep="last").to_numpy()
        parity_rows[col[last], pos[last]] = np.round(parity_col[rows[last]], 3)
        status_rows[col[last], pos[last]] = status_map[st[last]]
    del pos, rows
    parity = [[None if p != p else p for p in row.tolist()] for row in parity_rows]  # NaN: None
    status = [row.tolist() for row in status_rows]

    resolve = getattr(exchanges, "resolve", None)
    if resolve is not None:  # a run on disk: the positions of these ids only, in one pass
        resolve(ids)
    user: list[str] = []
    logged: list[str] = []
    answers: list[list[str]] = [[] for _ in cand_names]
    for ex_id in ids:
        ex = exchanges.get(ex_id)
        if ex is None:
            user.append("")
            logged.append("(not in this run folder)")
        else:
            user.append(_cut(last_user_message(ex) or "", limit))
            logged.append(
                _cut(shown_answer(ex.response) if ex.response else (ex.error or ""), limit)
            )
        for ci, cname in enumerate(cand_names):
            rep = replays.get((ex_id, cname))
            if rep is None:
                answers[ci].append("")
            elif rep.response is not None:
                answers[ci].append(_cut(shown_answer(rep.response), limit))
            else:
                answers[ci].append(_cut(f"[error] {rep.error or ''}", limit))

    data: dict[str, Any] = {
        "candidates": cand_names,
        "tasks": task_list,
        "statuses": statuses,
        "text_limit": limit,
        "ids": ids,
        "task": task_map[ex_task[kept]].tolist() if n else [],
        "user": user,
        "logged": logged,
        "parity": parity,
        "status": status,
        "answer": answers,
    }
    return data, limit, n, total


def text_is(column: pd.Series, text: str) -> np.ndarray:
    """Where ``column.astype(str) == text``, without a text copy of a column of texts."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):  # the scores' labels: compared on the categories
        same = np.append(np.asarray(dtype.categories.astype(str) == text, dtype=bool), False)
        return same[column.cat.codes.to_numpy()]  # code -1 (missing): the False at the end
    if not isinstance(dtype, pd.StringDtype) and pd.api.types.infer_dtype(
        column, skipna=True
    ) not in ("string", "empty"):
        column = column.astype(str)
    return np.asarray((column == text).to_numpy(dtype=bool, na_value=False), dtype=bool)


def _distinct_text(column: pd.Series) -> list[Any]:
    """The distinct values of ``column.astype(str)``, in the order they first show."""
    return list(dict.fromkeys(pd.Index(pd.unique(column)).astype(str).tolist()))


def text_codes(column: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """``column.astype(str)`` as codes into its distinct values, in the order they first show
    (a column of few distinct values)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    texts = pd.Index(uniques).astype(str).tolist()
    distinct = list(dict.fromkeys(texts))
    if len(distinct) == len(texts):
        return np.asarray(codes, dtype=np.intp), texts
    where = {t: i for i, t in enumerate(distinct)}
    return np.asarray([where[t] for t in texts], dtype=np.intp)[codes], distinct


def _str_codes(column: pd.Series) -> tuple[np.ndarray, Any]:
    """``column.astype(str)`` as codes into its distinct values (in the order they first
    show): the codes an array, the values an Index (a list where they had to be merged:
    two values of the same text), no text made a row."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    codes = np.asarray(codes, dtype=np.intp)
    if isinstance(column.dtype, pd.StringDtype) or pd.api.types.infer_dtype(
        uniques, skipna=True
    ) in ("string", "empty"):
        return codes, uniques
    names = pd.Index(uniques).astype(str)
    merged, first = pd.factorize(names, use_na_sentinel=False)
    if len(first) == len(names):
        return codes, names
    return np.asarray(merged, dtype=np.intp)[codes], first


#: Bytes of an id's SHA-256 that order the seeded sample (at most 8; the whole digest decides
#: between ids whose first bytes are the same).
_HASH_PREFIX = 8
#: Ids hashed at a time (each one a Python string only while it is hashed).
_HASH_CHUNK = 65_536


def _digest(ex_id: str) -> bytes:
    return hashlib.sha256(ex_id.encode("utf-8")).digest()


def _hash_prefixes(positions: np.ndarray, id_at: Callable[[np.ndarray], list[str]]) -> np.ndarray:
    """The first :data:`_HASH_PREFIX` bytes of the SHA-256 of the ids at ``positions``, as
    unsigned integers (ordered as the digests are)."""
    out = np.empty(len(positions), dtype=np.uint64)
    for at in range(0, len(positions), _HASH_CHUNK):
        chunk = id_at(positions[at : at + _HASH_CHUNK])
        out[at : at + len(chunk)] = np.fromiter(
            (int.from_bytes(_digest(e)[:_HASH_PREFIX], "big") for e in chunk),
            dtype=np.uint64,
            count=len(chunk),
        )
    return out


def _browsed(
    task: np.ndarray, worst: np.ndarray, id_at: Callable[[np.ndarray], list[str]]
) -> np.ndarray:
    """The positions (ascending) of at most :data:`MAX_BROWSER_EXCHANGES` of the run's
    exchanges, ``task`` and ``worst`` (lowest value of its rows: -1 for an error or no parity)
    given per exchange in the run's order: each task gets a share of the browser in proportion
    to its exchanges (at least a few), half of it its lowest-parity exchanges (the first in the
    run's order among equals) and half a seeded sample of the rest (what the task looks like),
    chosen by the SHA-256 of the id so that the same run always shows the same exchanges."""
    total, cap = len(task), MAX_BROWSER_EXCHANGES
    kept = np.zeros(total, dtype=bool)
    order = np.lexsort((worst, task))  # by task, then worst value, then position (stable)
    edges = np.flatnonzero(np.diff(task[order])) + 1
    for members in np.split(order, edges):
        m = len(members)
        quota = min(m, max(MIN_BROWSER_PER_TASK, cap * m // total))
        if quota == m:
            kept[members] = True
            continue
        low = quota // 2
        kept[members[:low]] = True
        need = quota - low
        if need <= 0:
            continue
        rest = np.sort(members[low:])
        prefix = _hash_prefixes(rest, id_at)
        by_hash = np.argsort(prefix, kind="stable")
        chosen = by_hash[:need]
        tied = np.flatnonzero(prefix == prefix[by_hash[need - 1]])
        if len(tied) > 1:  # equal first bytes across the cut: the whole digests decide
            below = chosen[prefix[chosen] != prefix[by_hash[need - 1]]]
            tied_ids = id_at(rest[tied])
            by_digest = sorted(range(len(tied)), key=lambda i: _digest(tied_ids[i]))
            chosen = np.concatenate([below, tied[by_digest[: need - len(below)]]])
        kept[rest[chosen]] = True
    return np.flatnonzero(kept)


#: What :func:`embed_json` replaces, as UTF-8 bytes (ASCII bytes never occur inside the bytes
#: of another character, so replacing bytes replaces exactly those characters).
_EMBED_BYTES = [
    (b"&", b"\\u0026"),
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
]


def _blob_bytes(data: Any) -> bytes | None:
    """``embed_json(json.dumps(data, ensure_ascii=False, separators=(",", ":")))`` as UTF-8,
    the same text for the blob's values (strings, ints, floats rounded to 3 decimals, None),
    written by ``orjson`` and escaped as bytes: ``json.dumps`` held one string per token until
    it joined them, and each ``str.replace`` made a copy of the run's largest string (its peak
    memory at 10,000 exchanges). None for what ``orjson`` refuses (a lone surrogate, an
    integer beyond 64 bits)."""
    import orjson

    try:
        raw = orjson.dumps(data)
    except TypeError:
        return None
    for char, escaped in _EMBED_BYTES:
        raw = raw.replace(char, escaped)
    return raw


def _blob_text(data: Any) -> str:
    """:func:`_blob_bytes` decoded (once), or ``json.dumps``'s text where ``orjson`` fails."""
    raw = _blob_bytes(data)
    if raw is None:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return embed_json(text)
    return raw.decode()


def embed_json(text: str) -> str:
    """JSON text that is safe inside an HTML ``<script type="application/json">`` element."""
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


# --------------------------------------------------------------------------- charts


def histogram(values: Sequence[float] | np.ndarray) -> list[int]:
    """Counts of parity values in ``BINS`` equal bins over [0, 1] (1.0 in the last bin)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    counts, _ = np.histogram(np.clip(arr, 0.0, 1.0), bins=BINS, range=(0.0, 1.0))
    return [int(c) for c in counts]


def histogram_svg(counts: Sequence[int], title: str, *, threshold: float | None = None) -> Markup:
    """An inline SVG bar chart of a parity histogram; ``title`` is escaped."""
    width, height, pad = 240, 90, 14
    inner_w, inner_h = width - 2, height - pad - 2
    top = max(counts) if counts and max(counts) > 0 else 1
    bw = inner_w / max(1, len(counts))
    parts = [
        f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, c in enumerate(counts):
        h = 0.0 if c == 0 else max(1.0, inner_h * c / top)
        x = 1 + i * bw
        lo, hi = i / len(counts), (i + 1) / len(counts)
        cls = "hb-low" if hi <= 0.5 else ("hb-mid" if hi <= 0.8 else "hb-high")
        parts.append(
            f'<rect class="{cls}" x="{x:.1f}" y="{1 + inner_h - h:.1f}" width="{bw - 1:.1f}" '
            f'height="{h:.1f}"><title>parity {lo:.1f}-{hi:.1f}: {c}</title></rect>'
        )
    if threshold is not None and math.isfinite(threshold):
        tx = 1 + inner_w * min(max(threshold, 0.0), 1.0)
        parts.append(
            f'<line class="hist-threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="1" y2="{1 + inner_h}"/>'
        )
    parts.append(
        f'<text x="1" y="{height - 2}" class="hist-axis">0</text>'
        f'<text x="{width / 2:.0f}" y="{height - 2}" class="hist-axis" text-anchor="middle">0.5</text>'
        f'<text x="{width - 1}" y="{height - 2}" class="hist-axis" text-anchor="end">1</text>'
        "</svg>"
    )
    return Markup("".join(parts))


# --------------------------------------------------------------------------- diff

_TOKEN_RE = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> tuple[Markup, Markup]:
    """Word-level diff: ``a`` with removed words in ``<del>``, ``b`` with added ones in ``<ins>``.

    Every piece of text is escaped (and control characters made visible).
    """
    ta = _TOKEN_RE.findall(a)[:MAX_DIFF_TOKENS]
    tb = _TOKEN_RE.findall(b)[:MAX_DIFF_TOKENS]
    sm = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
    left: list[str] = []
    right: list[str] = []

    def esc(tokens: Sequence[str]) -> str:
        return str(escape(visible_controls("".join(tokens))))

    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            left.append(esc(ta[i1:i2]))
            right.append(esc(tb[j1:j2]))
            continue
        if i2 > i1:
            left.append(f"<del>{esc(ta[i1:i2])}</del>")
        if j2 > j1:
            right.append(f"<ins>{esc(tb[j1:j2])}</ins>")
    out_l, out_r = "".join(left), "".join(right)
    for ch, ref in (("\u2028", "&#x2028;"), ("\u2029", "&#x2029;")):
        out_l, out_r = out_l.replace(ch, ref), out_r.replace(ch, ref)
    return Markup(out_l), Markup(out_r)


# --------------------------------------------------------------------------- confusion, fields


@dataclass
class Confusion:
    labels: list[str]
    counts: list[list[int]]  # rows: logged label, columns: candidate label
    n: int
    agreement: float | None


def _label(resp: Response | None) -> str:
    if resp is None:
        return "(no answer)"
    text = (resp.text or "").strip()
    if not text and resp.tool_calls:
        text = resp.tool_calls[0].name
    return text[:60] if text else "(empty)"


def confusion(
    ids: Sequence[str],
    candidate: str,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
) -> Confusion | None:
    """Logged label x candidate label counts over the given exchanges (None when empty)."""
    pairs: list[tuple[str, str]] = []
    for ex_id in ids:
        ex = exchanges.get(ex_id)
        rep = replays.get((ex_id, candidate))
        if ex is None or ex.response is None or rep is None or rep.response is None:
            continue
        pairs.append((_label(ex.response), _label(rep.response)))
    if not pairs:
        return None
    freq = Counter(lbl for pair in pairs for lbl in pair)
    top = [lbl for lbl, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))]
    labels = sorted(top[:MAX_LABELS])
    other = len(top) > MAX_LABELS
    if other:
        labels.append("(other)")
    index = {lbl: i for i, lbl in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for a, b in pairs:
        ia = index.get(a, len(labels) - 1)
        ib = index.get(b, len(labels) - 1)
        counts[ia][ib] += 1
    agree = sum(1 for a, b in pairs if a == b) / len(pairs)
    return Confusion(labels=labels, counts=counts, n=len(pairs), agreement=agree)


def _json_obj(text: str | None) -> Any:
    if not text:
        return None
    t = text.strip()
    if t.startswith("```"):
        t = t.strip("`")
        t = t[4:] if t.startswith("json") else t
    try:
        return json.loads(t)
    except ValueError:
        return None


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    if isinstance(value, dict) and depth < 3:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out or {prefix or "(root)": value}
    return {prefix or "(root)": value}


@dataclass
class FieldMismatch:
    field: str
    mismatches: int
    compared: int

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0


def field_mismatches(
    output: str,
    ids: Sequence[str],
    candidate: str,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    *,
    limit: int = 15,
) -> list[FieldMismatch]:
    """Which JSON fields (structured) or tool-call parts (tool calls) differ most often."""
    mism: Counter[str] = Counter()
    compared: Counter[str] = Counter()
    for ex_id in ids:
        ex = exchanges.get(ex_id)
        rep = replays.get((ex_id, candidate))
        if ex is None or ex.response is None or rep is None or rep.response is None:
            continue
        if output == "tool_call":
            a_calls = ex.response.tool_calls or []
            b_calls = rep.response.tool_calls or []
            compared["tool name"] += 1
            if sorted(c.name for c in a_calls) != sorted(c.name for c in b_calls):
                mism["tool name"] += 1
            compared["number of calls"] += 1
            if len(a_calls) != len(b_calls):
                mism["number of calls"] += 1
            b_by_name = {c.name: c for c in b_calls}
            for call in a_calls:
                other = b_by_name.get(call.name)
                a_args = _flatten(call.parsed_arguments if call.arguments_valid_json else {})
                b_args = (
                    _flatten(other.parsed_arguments)
                    if other is not None and other.arguments_valid_json
                    else {}
                )
                for key in set(a_args) | set(b_args):
                    name = f"{call.name}({key})"
                    compared[name] += 1
                    if a_args.get(key, _MISSING) != b_args.get(key, _MISSING):
                        mism[name] += 1
        else:
            a = _json_obj(ex.response.text)
            if not isinstance(a, dict):
                continue
            b = _json_obj(rep.response.text)
            compared["(valid JSON)"] += 1
            if b is None:
                mism["(valid JSON)"] += 1
            fa = _flatten(a)
            fb = _flatten(b) if isinstance(b, dict) else {}
            for key in set(fa) | set(fb):
                compared[key] += 1
                if fa.get(key, _MISSING) != fb.get(key, _MISSING):
                    mism[key] += 1
    rows = [FieldMismatch(k, mism[k], compared[k]) for k in compared if mism[k]]
    rows.sort(key=lambda r: (-r.mismatches, r.field))
    return rows[:limit]


_MISSING = object()


__all__ = [
    "Confusion",
    "FieldMismatch",
    "confusion",
    "embed_json",
    "exchange_blob",
    "exchange_blob_utf8",
    "field_mismatches",
    "histogram",
    "histogram_svg",
    "shown_answer",
    "text_codes",
    "text_is",
    "text_limit",
    "word_diff",
]
