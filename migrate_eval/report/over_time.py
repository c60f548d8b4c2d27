"""The "Over time" section of a watch's report and its drift lines in ``summary.md``.

Reads the run history (:mod:`migrate_eval.verdict.history`): per (candidate, task), parity over
the runs and watches of the suite as an inline SVG line (the same single, offline file), drift
events marked, model fingerprint changes listed. Every text is escaped.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from migrate_eval.core.outputs import write_text_atomic

#: At most this many points per trend line (the most recent ones).
MAX_POINTS = 200
_W, _H, _PAD = 320, 80, 6


def _svg(values: list[float | None], drift: list[bool], label: str) -> str:
    pts = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    n = max(1, len(values) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (_PAD + i * (_W - 2 * _PAD) / n, _H - _PAD - v * (_H - 2 * _PAD))

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in pts))
    marks = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#c0392b"><title>drift</title></circle>'
        for (i, v) in pts
        if drift[i]
        for x, y in [xy(i, v)]
    )
    return (
        f'<svg role="img" aria-label="{html.escape(label)}" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="none" stroke="#ddd"/>'
        f'<polyline points="{line}" fill="none" stroke="#2c6fbb" stroke-width="1.5"/>'
        f"{marks}</svg>"
    )


def over_time_html(history: pd.DataFrame) -> str:
    """The section: one trend per (candidate, task) of ``history`` (one suite's records)."""
    if not len(history):
        return ""
    parts = [
        '<section id="over-time"><h2>Over time</h2>',
        "<p>Parity of each task in every run and watch of this suite (the run history); "
        "red dots: drift flagged against the previous watch.</p>",
    ]
    for (cand, task), g in history.groupby(["candidate", "task"], sort=True):
        g = g.tail(MAX_POINTS)
        values = [None if pd.isna(v) else float(v) for v in g["parity"]]
        drift = [bool(d) if not pd.isna(d) else False for d in g["drift"]]
        label = f"{cand} / {task}: parity over {len(g)} runs"
        last = values[-1]
        parts.append(
            f"<div class='trend'><h3>{html.escape(str(cand))} / {html.escape(str(task))}</h3>"
            f"{_svg(values, drift, label)}"
            f"<p>{len(g)} runs, last parity "
            f"{'-' if last is None else f'{last:.3f}'}, drift flagged {sum(drift)} times</p></div>"
        )
    changes = history[history["fingerprint_changed"].fillna(False).astype(bool)]
    if len(changes):
        parts.append("<h3>Model fingerprint changes</h3><ul>")
        for r in changes.itertuples():
            fp = _fingerprint_text(r.response_models, r.system_fingerprints, r.version_headers)
            parts.append(
                f"<li>{html.escape(str(r.created))}: {html.escape(str(r.candidate))} / "
                f"{html.escape(str(r.task))} now answers as {html.escape(fp)}</li>"
            )
        parts.append("</ul>")
    parts.append("</section>")
    return "".join(parts)


def _fingerprint_text(models: Any, fingerprints: Any, headers: Any) -> str:
    """``model system_fingerprint [version headers]`` for display (empty parts left out)."""
    parts = [str(v) for v in (models, fingerprints) if isinstance(v, str) and v]
    if isinstance(headers, str) and headers:
        parts.append(f"[{headers}]")
    return " ".join(parts)


def add_over_time(report_path: Path, history: pd.DataFrame) -> None:
    """Insert the section into a rendered ``report.html`` (before the end of its main part)."""
    section = over_time_html(history)
    if not section or not report_path.is_file():
        return
    text = report_path.read_text(encoding="utf-8")
    marker = "</main>"
    at = text.rfind(marker)
    if at < 0:
        return
    write_text_atomic(report_path, text[:at] + section + text[at:])


def drift_markdown(rows: pd.DataFrame) -> str:
    """``summary.md`` lines for one watch's records: drift events and fingerprint changes."""
    lines = ["", "## Drift (against the previous watch)", ""]
    events = 0
    for r in rows.to_dict("records"):
        p = "" if pd.isna(r["drift_p"]) else f" (p_holm={r['drift_p']:.4f})"
        if r["drift"] is True:
            lines.append(
                f"- DRIFT: {r['candidate']} / {r['task']}: parity now {r['parity']:.3f}{p}"
            )
            events += 1
        if r["fingerprint_changed"] is True:
            fp = _fingerprint_text(
                r["response_models"], r["system_fingerprints"], r.get("version_headers")
            )
            lines.append(f"- fingerprint changed: {r['candidate']} / {r['task']}: now {fp}")
            events += 1
    if not events:
        lines.append("- no drift, no fingerprint change")
    return "\n".join(lines) + "\n"


def add_drift_lines(summary_path: Path, rows: pd.DataFrame) -> None:
    if summary_path.is_file():
        text = summary_path.read_text(encoding="utf-8")
        write_text_atomic(summary_path, text.rstrip("\n") + "\n" + drift_markdown(rows))
