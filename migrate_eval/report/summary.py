"""``summary.md``: a short Markdown summary that fits a CI job summary (``$GITHUB_STEP_SUMMARY``).

The first line states the gate. The size is bounded whatever the number of tasks or
candidates (GitHub accepts at most 1 MiB per step): long tables are cut, with a note saying so.
Every name and message from the run is escaped, so that it cannot break a table or inject
Markdown or HTML.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from migrate_eval.core.outputs import write_text_atomic
from migrate_eval.core.results import AdaptationSummary, CandidateResult, Results, TaskResult
from migrate_eval.report._format import (
    VERDICT_SEVERITY,
    confidence_pct,
    fmt_interval,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_usd,
    gate_sentence,
    is_number,
    judge_controls_text,
    one_line,
    task_names,
    truncate,
    verdict_label,
)
from migrate_eval.report.decision import build_decision, cost_missing_reason

#: At most this many task rows in the task x candidate table.
MAX_TASK_ROWS = 30
#: At most this many candidate columns in the task x candidate table.
MAX_CANDIDATE_COLUMNS = 8
#: At most this many rows in the candidate table.
MAX_CANDIDATE_ROWS = 50
#: At most this many reasons listed.
MAX_REASONS = 20
#: Longest text kept in one table cell or reason.
MAX_CELL_CHARS = 160
#: Hard bound of the whole summary (characters); GitHub's limit is 1 MiB per step.
MAX_SUMMARY_CHARS = 60_000

VERDICT_ICONS: dict[str, str] = {
    "ready": "✅",
    "ready_with_caveats": "⚠️",
    "needs_evidence": "🔍",
    "not_ready": "❌",
    "cannot_judge": "❔",
}

# Markdown punctuation that can start emphasis, links, code, headings, strike-through, tables,
# plus the HTML specials (GitHub renders inline HTML in job summaries).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


#: Candidates given a line of their own under the decision (the table below has them all).
MAX_DECISION_LINES = 10


def md_escape(text: object, limit: int = MAX_CELL_CHARS) -> str:
    """Escape text for a Markdown table cell or a list item (one line, bounded length).

    Pipes, backticks, emphasis, link brackets, headings and HTML are neutralised; newlines
    become spaces. ``@`` is followed by a zero-width joiner so that names never mention users.
    """
    s = one_line(str(text), limit)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = s.replace("@", "@\u2060")
    # A line starting with these would become a list or a quote if the cell ever starts a line
    if s[:1] in ("-", "=") or s[:2] in ("1.",):
        s = "\\" + s
    return s


def _verdict_cell(verdict: str) -> str:
    return f"{VERDICT_ICONS.get(verdict, '')} {verdict_label(verdict)}".strip()


def _reason_text(code: str, message: str) -> str:
    return f"{md_escape(message)} (`{_code_span(code)}`)"


def _code_span(code: str) -> str:
    # codes are machine words; keep only safe characters so the code span can't be broken
    return re.sub(r"[^A-Za-z0-9._:-]", "_", code)[:60] or "reason"


def _cost_cell(c: CandidateResult) -> str:
    per_req, total = c.cost.per_request_usd, c.cost.total_usd
    if not is_number(per_req) and not is_number(total):
        return f"n/a ({md_escape(cost_missing_reason(c))})"
    if is_number(per_req) and is_number(total):
        return f"{fmt_usd(per_req)}/req ({fmt_usd(total)} total)"
    return f"{fmt_usd(per_req)}/req" if is_number(per_req) else f"{fmt_usd(total)} total"


def _monthly_cell(c: CandidateResult) -> str:
    """Projected monthly cost and its change against the logged OpenAI model's, when known."""
    monthly, base = c.cost.monthly_usd, c.cost.baseline_monthly_usd
    if monthly is None or not is_number(monthly):
        why = cost_missing_reason(c)
        return f"n/a ({md_escape(why)})" if why else "n/a"
    cell = f"{fmt_usd(monthly)}/month"
    if base is not None and is_number(base) and base > 0:
        change = (monthly - base) / base * 100
        text = ">+999%" if change > 999 else f"{'+' if change >= 0 else '-'}{abs(change):.0f}%"
        cell += f" ({text} vs OpenAI {fmt_usd(base)}/month)"
    if c.cost.servers is not None:  # self-hosted: how many servers the logged peak needs
        cell += f", {c.cost.servers} server{'s' if c.cost.servers != 1 else ''}"
        if c.cost.gpus is not None and c.cost.gpu:
            cell += f" ({c.cost.gpus} x {md_escape(c.cost.gpu, 40)})"
    return cell


def hardware_lines(cands: list[CandidateResult]) -> list[str]:
    """The hardware fit of self-hosted candidates (docs/self-hosting.md), when any has one."""
    fitted = [c for c in cands if c.hardware is not None]
    if not fitted:
        return []
    out = ["## Hardware fit", ""]
    for c in fitted:
        assert c.hardware is not None
        text = "; ".join([c.hardware.summary(), *c.hardware.notes])
        out.append(f"- **{md_escape(c.name)}**: {md_escape(text, 600)}")
        if c.cost.throughput_tokens_per_s is not None and c.cost.throughput_rps is not None:
            out.append(
                f"  measured {c.cost.throughput_rps:.3g} req/s, "
                f"{c.cost.throughput_tokens_per_s:.3g} answer tokens/s per server"
            )
    out.append("")
    return out


def _task_severity(name: str, candidates: list[CandidateResult]) -> tuple[int, float, str]:
    worst, lowest = 0, 2.0
    for c in candidates:
        tr = next((t for t in c.tasks if t.task == name), None)
        if tr is None:
            continue
        worst = max(worst, VERDICT_SEVERITY.get(tr.verdict, 0))
        if tr.parity.mean is not None and is_number(tr.parity.mean):
            lowest = min(lowest, tr.parity.mean)
    return (-worst, lowest, name)


def _task_cell(tr: TaskResult | None) -> str:
    if tr is None:
        return "-"
    parity = fmt_num(tr.parity.mean)
    return f"{parity} (n={tr.n}) {_verdict_cell(tr.verdict)}"


def render_summary_md(results: Results) -> str:
    """The Markdown text of ``summary.md``."""
    out: list[str] = []
    out.append(f"# migrate-eval: {gate_sentence(results)}")
    out.append("")
    if results.simulated:
        out.append(
            "> [!WARNING]\n> **SIMULATED DATA**: this run uses simulated traffic or answers; "
            "it is not evidence for a real migration decision."
        )
        out.append("")
    out.append(
        f"Suite **{md_escape(results.suite)}** · gate **{results.gate.upper()}** "
        f"(exit code {results.exit_code}) · {len(results.tasks)} task(s) · "
        f"{results.ingest.exchanges:,} exchange(s) · migrate-eval {md_escape(results.tool_version)}"
    )
    out.append("")

    # The decision in words before the tables (the gate above is what CI reads).
    decision = build_decision(results, logged_p50=None)
    out.append(f"**Decision:** {md_escape(decision.sentence, 1000)}")
    out.append("")
    for d in decision.candidates[:MAX_DECISION_LINES]:
        line = f"- **{md_escape(d.name)}** ({_verdict_cell(d.verdict)}): {md_escape(d.takes)}; "
        line += f"{md_escape(d.cost)}. How sure: {md_escape(d.sure)}."
        out.append(line)
        for b in d.blockers:
            out.append(f"  - {md_escape(b, 400)}")
        if d.blockers_more:
            out.append(f"  - … and {d.blockers_more} more")
    if len(decision.candidates) > MAX_DECISION_LINES:
        out.append(f"- … and {len(decision.candidates) - MAX_DECISION_LINES} more candidate(s)")
    if decision.prices:
        out.append("")
        out.append(f"_{md_escape(decision.prices, 600)}_")
    out.append("")

    # Candidates
    conf = confidence_pct(results)
    cands = list(results.candidates)
    out.append("## Candidates")
    out.append("")
    listed = cands[:MAX_CANDIDATE_ROWS]
    # optional columns, shown when at least one candidate has the figure
    with_noise = any(c.noise_floor is not None and is_number(c.noise_floor) for c in listed)
    with_monthly = any(
        c.cost.monthly_usd is not None and is_number(c.cost.monthly_usd) for c in listed
    )
    header = f"| Candidate | Verdict | Parity [{conf} CI] |"
    header += " Noise floor |" if with_noise else ""
    header += " Error rate | p95 latency | Cost |"
    header += " Monthly cost |" if with_monthly else ""
    out.append(header)
    out.append("|---" * (header.count("|") - 1) + "|")
    for c in listed:
        name = md_escape(c.name)
        model = md_escape(f"{c.provider}:{c.model}", 80)
        row = f"| **{name}** ({model}) | {_verdict_cell(c.verdict)} | {fmt_interval(c.parity)} |"
        row += f" {fmt_num(c.noise_floor)} |" if with_noise else ""
        row += f" {fmt_pct(c.errors.rate)} | {fmt_ms(c.latency.p95_ms)} | {_cost_cell(c)} |"
        row += f" {_monthly_cell(c)} |" if with_monthly else ""
        out.append(row)
    if len(cands) > MAX_CANDIDATE_ROWS:
        out.append("")
        out.append(
            f"_{len(cands) - MAX_CANDIDATE_ROWS} more candidate(s) not shown; see report.html._"
        )
    out.append("")
    out.extend(hardware_lines(listed))

    # Task x candidate
    names = task_names(results)
    if names and cands:
        shown_cands = cands[:MAX_CANDIDATE_COLUMNS]
        ordered = sorted(names, key=lambda n: _task_severity(n, cands))
        shown = ordered[:MAX_TASK_ROWS]
        out.append("## Tasks")
        out.append("")
        if len(names) > MAX_TASK_ROWS:
            out.append(f"Worst {MAX_TASK_ROWS} of {len(names)} tasks first.")
            out.append("")
        out.append("| Task | " + " | ".join(md_escape(c.name, 60) for c in shown_cands) + " |")
        out.append("|---|" + "---|" * len(shown_cands))
        for n in shown:
            cells = [
                _task_cell(next((t for t in c.tasks if t.task == n), None)) for c in shown_cands
            ]
            out.append(f"| {md_escape(n)} | " + " | ".join(cells) + " |")
        notes: list[str] = []
        if len(names) > MAX_TASK_ROWS:
            notes.append(f"{len(names) - MAX_TASK_ROWS} more task(s) not shown")
        if len(cands) > MAX_CANDIDATE_COLUMNS:
            notes.append(f"{len(cands) - MAX_CANDIDATE_COLUMNS} more candidate(s) not shown")
        if notes:
            out.append("")
            out.append(f"_Truncated: {'; '.join(notes)}. See report.html for everything._")
        out.append("")
        out.append(
            "Cells: parity (mean of the task's metrics per exchange), scored exchanges, verdict."
        )
        out.append("")

    judged = [(t.name, jc) for t in results.tasks for jc in (t.judge_controls or {}).values()]
    if judged:
        out.append("## Judge controls")
        out.append("")
        for name, jc in judged[:MAX_TASK_ROWS]:
            out.append(f"- {md_escape(name)}: {md_escape(judge_controls_text(jc), 400)}")
        out.append("")

    agreement = [
        (c.name, tr.task, tr.label_agreement)
        for c in cands
        for tr in c.tasks
        if tr.label_agreement is not None
    ]
    if agreement:
        out.append("## Agreement with gold labels")
        out.append("")
        for cand, task, la in agreement[:MAX_TASK_ROWS]:
            figures = ", ".join(f"{m} {fmt_num(k, 2)}" for m, k in la.kappa.items())
            out.append(
                f"- **{md_escape(cand, 60)}** / {md_escape(task, 80)}: Cohen's kappa with the "
                f"gold labels ({la.n} exchanges): {md_escape(figures, 400)}"
            )
        out.append("")
    out.extend(dropped_params_lines(cands))

    # Reasons
    reasons: list[str] = []
    for c in sorted(cands, key=lambda c: -VERDICT_SEVERITY.get(c.verdict, 0)):
        task_prefixes = tuple(f"{t.task}: " for t in c.tasks)
        for r in c.reasons:
            if task_prefixes and r.message.startswith(task_prefixes):
                continue  # listed below with its task
            reasons.append(f"- **{md_escape(c.name, 60)}**: {_reason_text(r.code, r.message)}")
    task_reasons: list[tuple[int, str]] = []
    for c in cands:
        for tr in c.tasks:
            if tr.verdict == "ready":
                continue
            for r in tr.reasons:
                task_reasons.append(
                    (
                        -VERDICT_SEVERITY.get(tr.verdict, 0),
                        f"- **{md_escape(c.name, 60)}** / {md_escape(tr.task, 80)}: "
                        f"{_reason_text(r.code, r.message)}",
                    )
                )
    # worst verdicts first; the sort is stable, so candidates and tasks keep the run's order
    reasons.extend(line for _, line in sorted(task_reasons, key=lambda x: x[0]))
    if reasons:
        out.append("## Top reasons")
        out.append("")
        out.extend(reasons[:MAX_REASONS])
        if len(reasons) > MAX_REASONS:
            out.append(f"- _… and {len(reasons) - MAX_REASONS} more; see report.html._")
        out.append("")

    if results.adaptation is not None:
        out.extend(adaptation_lines(results.adaptation))
        out.append("")

    ing = results.ingest
    skipped = f", {ing.skipped:,} skipped" if ing.skipped else ""
    out.append(
        f"_Ingested {ing.lines_read:,} line(s) into {ing.exchanges:,} exchange(s){skipped}. "
        f"{_redaction_sentence(results)}Reproduce: `{_command_span(results.command)}`_"
    )
    text = "\n".join(out) + "\n"
    return _bound(text)


def dropped_text(tr: TaskResult) -> str:
    """``temperature dropped on 50 of 50, seed dropped on 50 of 50`` ("" when none was)."""
    return ", ".join(
        f"{name} dropped on {count:,} of {tr.n_total:,}"
        for name, count in (tr.dropped_params or {}).items()
    )


def dropped_params_lines(cands: list[CandidateResult]) -> list[str]:
    """The "Parameters dropped" section (empty when no candidate dropped any)."""
    lines = [
        f"- **{md_escape(c.name, 60)}** / {md_escape(tr.task, 80)}: {dropped_text(tr)}"
        for c in cands
        for tr in c.tasks
        if tr.dropped_params
    ]
    if not lines:
        return []
    head = [
        "## Parameters dropped",
        "",
        "Sampling parameters and other soft fields the candidate's API has no equivalent for "
        "were removed before sending (the answers stay comparable; `--strict-params` refuses "
        "these requests instead).",
        "",
    ]
    more = [f"- _… and {len(lines) - MAX_REASONS} more; see report.html._"]
    return [*head, *lines[:MAX_REASONS], *(more if len(lines) > MAX_REASONS else []), ""]


def _redaction_sentence(results: Results) -> str:
    """What a privacy reviewer needs from the CI summary: was logged content redacted before
    it went to the candidates? (Empty for results that do not say.)"""
    r = getattr(results, "redaction", None)
    if r is None:
        return ""
    if not r.enabled:
        profile = getattr(results, "profile", None)
        pii = getattr(profile, "pii", None)
        held = ""
        if pii is not None and pii.exchanges_with_pii:
            kinds = ", ".join(f"{k} {v:,}" for k, v in list(pii.by_kind.items())[:6])
            sample = "a sample of " if pii.sampled else ""
            held = (
                f"; the logs hold personal data or secrets in {pii.exchanges_with_pii:,} of "
                f"{sample}{pii.examined:,} exchange(s) examined ({kinds})"
            )
        return f"PII redaction was off: candidates got the logged content as logged{held}. "
    names = (
        " Person names were looked for by heuristics only (modest recall: some reached the "
        "candidates)."
        if getattr(r, "names", None) == "heuristic"
        else ""
    )
    return (
        f"PII redaction was on: {r.values:,} value(s) replaced in {r.exchanges_affected:,} of "
        f"{r.exchanges:,} exchange(s) before replay.{names} "
    )


def _command_span(command: str) -> str:
    # a code span can't contain its own delimiter or a newline; keep it one bounded line
    return one_line(command, 300).replace("`", "'")


def _bound(text: str) -> str:
    if len(text) <= MAX_SUMMARY_CHARS:
        return text
    cut = text.rfind("\n", 0, MAX_SUMMARY_CHARS - 200)
    return text[: max(cut, 0)] + "\n\n_Summary truncated; see report.html for everything._\n"


#: The outcome of an adaptation, in words (``summary.md``, ``report.html``, the CLI).
ADAPTATION_OUTCOMES = {
    "ready_after_adaptation": "ready after adaptation",
    "no_reliable_gain": "no reliable gain",
    "not_ready_after_adaptation": "not ready after adaptation",
    "not_adapted": "not adapted",
}
#: At most this many characters of one prompt diff in ``summary.md`` (report.html has it all).
MAX_DIFF_CHARS = 2000


def _p_text(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def adaptation_lines(adaptation: AdaptationSummary) -> list[str]:
    """The "Prompt adaptation" section: one line per task and candidate, then each diff."""
    lines = ["## Prompt adaptation", ""]
    lines.append(
        f"Held-out share {adaptation.held_out_fraction:g}, up to {adaptation.rounds} round(s), "
        f"a gain is reliable below p={adaptation.alpha:g} (details: `{adaptation.details}`)."
    )
    lines.append("")
    for r in adaptation.results:
        where = f"**{md_escape(r.candidate, 60)}** / {md_escape(r.task, 80)}"
        outcome = ADAPTATION_OUTCOMES.get(r.outcome, r.outcome)
        if r.outcome == "not_adapted":
            lines.append(f"- {where}: {outcome} ({md_escape(r.reason or '', 300)})")
            continue
        before = "n/a" if r.parity_before is None else f"{r.parity_before:.3f}"
        after = "n/a" if r.parity_after is None else f"{r.parity_after:.3f}"
        p = r.paired.wilcoxon_p if r.paired is not None else None
        cost = r.cost.optimiser_requests + r.cost.candidate_requests
        money = "" if r.cost.cost_usd is None else f", ${r.cost.cost_usd:.4f}"
        changes = ", ".join(r.changes) or "nothing"
        lines.append(
            f"- {where}: **{outcome}**; held-out parity {before} -> {after} "
            f"(n={r.n_held_out}, paired p={_p_text(p)}); verdict {r.verdict_before} -> "
            f"{r.verdict_after}; changes: {md_escape(changes, 300)}; {r.rounds} round(s), "
            f"{cost} requests ({r.cost.cached} cached){money}"
        )
    for r in adaptation.results:
        if not r.prompt_diff:
            continue
        diff, cut = truncate(r.prompt_diff, MAX_DIFF_CHARS)
        fence = "`" * max(3, _longest_backtick_run(diff) + 1)
        lines.append("")
        lines.append(f"Diff for {md_escape(r.candidate, 60)} / {md_escape(r.task, 80)}:")
        lines.append("")
        lines.append(f"{fence}diff")
        lines.append(diff.rstrip("\n") + ("\n… (cut; report.html has it all)" if cut else ""))
        lines.append(fence)
    return lines


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest


def write_summary_md(results: Results, path: str | os.PathLike[str]) -> None:
    """Write ``summary.md`` (UTF-8); its first line states the gate outcome."""
    write_text_atomic(Path(path), render_summary_md(results))


__all__ = ["adaptation_lines", "md_escape", "render_summary_md", "write_summary_md"]
