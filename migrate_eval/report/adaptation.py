"""The "Prompt adaptation" section of ``report.html`` (``Results.adaptation``, docs/adapt.md).

Per task and candidate: the outcome in words, parity before and after on the same held-out
exchanges with the paired test, the verdicts by the run's bar, what the adapted request changes,
the cost of the attempt and the diff a developer can paste. Only view models here: the template
escapes every text (the diff too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate_eval.core.results import AdaptationSummary
from migrate_eval.report._format import fmt_num, truncate
from migrate_eval.report.summary import ADAPTATION_OUTCOMES

#: At most this many characters of one diff on the page (the whole one is in adaptation.json).
MAX_DIFF_CHARS = 20_000
#: At most this many task/candidate rows.
MAX_ROWS = 200


@dataclass
class AdaptationRow:
    candidate: str
    task: str
    anchor: str | None
    outcome: str
    outcome_css: str
    verdict_before: str | None
    verdict_after: str | None
    parity_before: str
    parity_after: str
    difference: str
    p_value: str
    n_held_out: int
    changes: str
    rounds: int
    cost: str
    reason: str
    diff: str
    diff_cut: int


@dataclass
class AdaptationView:
    settings: str
    rows: list[AdaptationRow] = field(default_factory=list)
    more: int = 0


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def adaptation_view(
    adaptation: AdaptationSummary | None, anchors: dict[str, str] | None = None
) -> AdaptationView | None:
    """The section, or None when the run was not adapted."""
    if adaptation is None:
        return None
    a = adaptation
    settings = (
        f"Each not-ready task's exchanges were split (seed {a.seed}) into an adaptation set and a "
        f"held-out set ({a.held_out_fraction:.0%}); the optimiser saw adaptation-set failures "
        f"only, in up to {a.rounds} round(s), and the best proposal was replayed once on the "
        "held-out set and judged by the run's bar. A gain is reliable when the one-sided paired "
        f"Wilcoxon test gives p < {a.alpha:g}; within noise it is \u201cno reliable gain\u201d. "
        f"{a.planned_requests} requests were planned"
        + (f" (budget {a.budget})" if a.budget is not None else "")
        + f"; the full record is in {a.details}."
    )
    rows: list[AdaptationRow] = []
    for r in a.results[:MAX_ROWS]:
        diff, cut = truncate(r.prompt_diff, MAX_DIFF_CHARS)
        paired = r.paired
        cost = f"{r.cost.optimiser_requests} optimiser + {r.cost.candidate_requests} candidate"
        cost += f" requests ({r.cost.cached} cached)"
        if r.cost.cost_usd is not None:
            cost += f", ${r.cost.cost_usd:.4f}"
        rows.append(
            AdaptationRow(
                candidate=r.candidate,
                task=r.task,
                anchor=(anchors or {}).get(r.task),
                outcome=ADAPTATION_OUTCOMES.get(r.outcome, r.outcome),
                outcome_css="adapt-" + r.outcome.replace("_", "-"),
                verdict_before=r.verdict_before,
                verdict_after=r.verdict_after,
                parity_before=fmt_num(r.parity_before),
                parity_after=fmt_num(r.parity_after),
                difference=fmt_num(paired.mean_difference) if paired is not None else "n/a",
                p_value=_p(paired.wilcoxon_p) if paired is not None else "n/a",
                n_held_out=r.n_held_out,
                changes=", ".join(r.changes) or "none",
                rounds=r.rounds,
                cost=cost,
                reason=r.reason or "",
                diff=diff,
                diff_cut=cut,
            )
        )
    return AdaptationView(settings=settings, rows=rows, more=max(0, len(a.results) - MAX_ROWS))


__all__ = ["AdaptationRow", "AdaptationView", "adaptation_view"]
