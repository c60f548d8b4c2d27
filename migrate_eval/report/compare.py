"""``migrate-eval compare RUN_A RUN_B``: what changed between two runs (A = before, B = after).

Per candidate and task: parity before and after, the difference, whether it is significant
(when both runs report an interval: a two-sided z-test on the difference of the two means, the
standard error of each mean read off its interval, at the runs' confidence level), and the
verdict change. Regressions come first (a worse verdict, then a significant parity drop, then
the largest drops), then improvements, then the rest; tasks and candidates only one run has
are listed as new or removed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from statistics import NormalDist
from typing import Literal

from migrate_eval.core.records import StrictModel
from migrate_eval.core.results import CandidateResult, Interval, Results
from migrate_eval.core.run_folder import read_results
from migrate_eval.report._format import (
    VERDICT_SEVERITY,
    fmt_num,
    fmt_pct,
    is_number,
    one_line,
    verdict_label,
)
from migrate_eval.report.summary import md_escape

Change = Literal["regressed", "improved", "unchanged", "new", "removed"]


class Delta(StrictModel):
    """One candidate x task (``task`` None: the candidate overall) in both runs."""

    candidate: str
    task: str | None
    change: Change
    verdict_a: str | None
    verdict_b: str | None
    parity_a: Interval | None
    parity_b: Interval | None
    delta: float | None
    p_value: float | None
    significant: bool | None
    n_a: int | None = None
    n_b: int | None = None


class Comparison(StrictModel):
    run_a: str
    run_b: str
    suite_a: str
    suite_b: str
    gate_a: str
    gate_b: str
    confidence: float
    deltas: list[Delta]
    new_tasks: list[str]
    removed_tasks: list[str]
    new_candidates: list[str]
    removed_candidates: list[str]

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.change == "regressed"]


def load_results(path: str | os.PathLike[str]) -> Results:
    """A run folder's ``results.json`` (or the file itself)."""
    return read_results(Path(path))


def _se(iv: Interval, z: float) -> float | None:
    if not (is_number(iv.ci_low) and is_number(iv.ci_high)):
        return None
    return (float(iv.ci_high) - float(iv.ci_low)) / (2 * z)


def difference_test(
    a: Interval, b: Interval, confidence: float
) -> tuple[float | None, bool | None]:
    """p-value of ``b.mean - a.mean`` (normal approximation) and whether it is significant."""
    if not (is_number(a.mean) and is_number(b.mean)):
        return None, None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    se_a, se_b = _se(a, z), _se(b, z)
    if se_a is None or se_b is None:
        return None, None
    diff = float(b.mean) - float(a.mean)
    se = math.hypot(se_a, se_b)
    if se == 0:
        return (1.0, False) if diff == 0 else (0.0, True)
    p = 2 * (1 - NormalDist().cdf(abs(diff) / se))
    return p, p < 1 - confidence


def _classify(
    verdict_a: str | None, verdict_b: str | None, delta: float | None, significant: bool | None
) -> Change:
    if verdict_a is None:
        return "new"
    if verdict_b is None:
        return "removed"
    sa, sb = VERDICT_SEVERITY.get(verdict_a, 0), VERDICT_SEVERITY.get(verdict_b, 0)
    if sb > sa:
        return "regressed"
    if sb < sa:
        return "improved"
    if significant and delta is not None:
        return "regressed" if delta < 0 else "improved"
    return "unchanged"


def _delta(
    cand: str,
    task: str | None,
    a: tuple[str, Interval, int | None] | None,
    b: tuple[str, Interval, int | None] | None,
    confidence: float,
) -> Delta:
    pa, pb = (a[1] if a else None), (b[1] if b else None)
    delta = p = sig = None
    if pa is not None and pb is not None and is_number(pa.mean) and is_number(pb.mean):
        delta = float(pb.mean) - float(pa.mean)
        p, sig = difference_test(pa, pb, confidence)
    va, vb = (a[0] if a else None), (b[0] if b else None)
    return Delta(
        candidate=cand,
        task=task,
        change=_classify(va, vb, delta, sig),
        verdict_a=va,
        verdict_b=vb,
        parity_a=pa,
        parity_b=pb,
        delta=delta,
        p_value=p,
        significant=sig,
        n_a=a[2] if a else None,
        n_b=b[2] if b else None,
    )


_ORDER: dict[str, int] = {"regressed": 0, "removed": 1, "new": 2, "improved": 3, "unchanged": 4}


def _sort_key(d: Delta) -> tuple[int, int, int, float, str, str]:
    worse = VERDICT_SEVERITY.get(d.verdict_b or "", 0) - VERDICT_SEVERITY.get(d.verdict_a or "", 0)
    return (
        _ORDER[d.change],
        -worse,
        0 if d.significant else 1,
        d.delta if d.delta is not None else 0.0,
        d.candidate,
        d.task or "",
    )


def compare_results(a: Results, b: Results, *, name_a: str = "A", name_b: str = "B") -> Comparison:
    """Everything that changed from run ``a`` to run ``b``."""
    conf_raw = b.thresholds.get("confidence", a.thresholds.get("confidence", 0.95))
    confidence = float(conf_raw) if is_number(conf_raw) and 0 < conf_raw < 1 else 0.95
    ca: dict[str, CandidateResult] = {c.name: c for c in a.candidates}
    cb: dict[str, CandidateResult] = {c.name: c for c in b.candidates}
    deltas: list[Delta] = []
    for name in list(ca) + [n for n in cb if n not in ca]:
        xa, xb = ca.get(name), cb.get(name)
        deltas.append(
            _delta(
                name,
                None,
                (xa.verdict, xa.parity, None) if xa else None,
                (xb.verdict, xb.parity, None) if xb else None,
                confidence,
            )
        )
        ta = {t.task: t for t in xa.tasks} if xa else {}
        tb = {t.task: t for t in xb.tasks} if xb else {}
        for task in list(ta) + [t for t in tb if t not in ta]:
            ra, rb = ta.get(task), tb.get(task)
            deltas.append(
                _delta(
                    name,
                    task,
                    (ra.verdict, ra.parity, ra.n) if ra else None,
                    (rb.verdict, rb.parity, rb.n) if rb else None,
                    confidence,
                )
            )
    deltas.sort(key=_sort_key)
    tasks_a = [t.name for t in a.tasks]
    tasks_b = [t.name for t in b.tasks]
    return Comparison(
        run_a=name_a,
        run_b=name_b,
        suite_a=a.suite,
        suite_b=b.suite,
        gate_a=a.gate,
        gate_b=b.gate,
        confidence=confidence,
        deltas=deltas,
        new_tasks=[t for t in tasks_b if t not in tasks_a],
        removed_tasks=[t for t in tasks_a if t not in tasks_b],
        new_candidates=[c for c in cb if c not in ca],
        removed_candidates=[c for c in ca if c not in cb],
    )


def compare_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str]) -> Comparison:
    """Compare two run folders (or ``results.json`` files)."""
    return compare_results(
        load_results(run_a), load_results(run_b), name_a=str(run_a), name_b=str(run_b)
    )


# --------------------------------------------------------------------------- rendering


def _signed(x: float | None) -> str:
    return f"{x:+.3f}" if x is not None and is_number(x) else "n/a"


def _sig(d: Delta) -> str:
    if d.significant is None:
        return "-"
    p = f"p={d.p_value:.3f}" if d.p_value is not None else ""
    return f"yes ({p})" if d.significant else f"no ({p})"


def _verdicts(d: Delta) -> str:
    a = verdict_label(d.verdict_a) if d.verdict_a else "-"
    b = verdict_label(d.verdict_b) if d.verdict_b else "-"
    return a if a == b else f"{a} -> {b}"


def _mean(iv: Interval | None) -> str:
    return fmt_num(iv.mean) if iv is not None else "-"


def _headline(c: Comparison) -> str:
    n_reg = len(c.regressions)
    n_imp = sum(1 for d in c.deltas if d.change == "improved")
    gate = c.gate_a.upper() if c.gate_a == c.gate_b else f"{c.gate_a.upper()} -> {c.gate_b.upper()}"
    return f"{n_reg} regression(s), {n_imp} improvement(s); gate {gate}"


def render_text(c: Comparison, *, all_rows: bool = False) -> str:
    """A plain-text table: regressions first; unchanged rows only with ``all_rows``."""
    rows = [d for d in c.deltas if all_rows or d.change != "unchanged"]
    lines = [f"compare {c.run_a} -> {c.run_b}: {_headline(c)}"]
    conf = fmt_pct(c.confidence, 0)
    header = (
        "change",
        "candidate",
        "task",
        "parity A",
        "parity B",
        "delta",
        f"signif. ({conf})",
        "verdict",
    )
    table = [header] + [
        (
            d.change,
            one_line(d.candidate, 30),
            one_line(d.task, 40) if d.task is not None else "(overall)",
            _mean(d.parity_a),
            _mean(d.parity_b),
            _signed(d.delta),
            _sig(d),
            _verdicts(d),
        )
        for d in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
    if not rows:
        lines.append("no change in any verdict and no significant parity change")
    for label, items in (
        ("new tasks", c.new_tasks),
        ("removed tasks", c.removed_tasks),
        ("new candidates", c.new_candidates),
        ("removed candidates", c.removed_candidates),
    ):
        if items:
            lines.append(f"{label}: {', '.join(one_line(x, 60) for x in items)}")
    unchanged = sum(1 for d in c.deltas if d.change == "unchanged")
    if unchanged and not all_rows:
        lines.append(f"{unchanged} unchanged row(s) not shown (--all shows them)")
    return "\n".join(lines) + "\n"


def render_markdown(c: Comparison, *, all_rows: bool = False) -> str:
    """The comparison as Markdown (for a pull-request comment or a job summary)."""
    rows = [d for d in c.deltas if all_rows or d.change != "unchanged"]
    icon = {"regressed": "🔻", "improved": "🔺", "new": "🆕", "removed": "➖", "unchanged": "·"}
    out = [f"# migrate-eval compare: {_headline(c)}", ""]
    out.append(f"`{md_escape(c.run_a, 200)}` → `{md_escape(c.run_b, 200)}`")
    out.append("")
    if rows:
        out.append(
            f"| | Candidate | Task | Parity A | Parity B | Δ | Significant ({fmt_pct(c.confidence, 0)}) | Verdict |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for d in rows[:200]:
            out.append(
                f"| {icon[d.change]} {d.change} | {md_escape(d.candidate, 60)} | "
                f"{md_escape(d.task, 80) if d.task is not None else '_(overall)_'} | "
                f"{_mean(d.parity_a)} | {_mean(d.parity_b)} | {_signed(d.delta)} | {_sig(d)} | "
                f"{md_escape(_verdicts(d))} |"
            )
        if len(rows) > 200:
            out.append("")
            out.append(f"_{len(rows) - 200} more row(s) not shown._")
    else:
        out.append("No change in any verdict and no significant parity change.")
    out.append("")
    for label, items in (
        ("New tasks", c.new_tasks),
        ("Removed tasks", c.removed_tasks),
        ("New candidates", c.new_candidates),
        ("Removed candidates", c.removed_candidates),
    ):
        if items:
            out.append(f"**{label}:** {', '.join(md_escape(x, 80) for x in items)}")
            out.append("")
    return "\n".join(out)


def render_json(c: Comparison) -> str:
    data = c.model_dump(mode="json")
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


__all__ = [
    "Comparison",
    "Delta",
    "compare_results",
    "compare_runs",
    "difference_test",
    "load_results",
    "render_json",
    "render_markdown",
    "render_text",
]
