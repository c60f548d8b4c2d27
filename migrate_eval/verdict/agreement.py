"""Agreement of the judge and the metrics with human labels, where the logs carry them.

Two sources of labels:

* **gold labels** (``Exchange.gold``): the scores frame's ``gold_agree`` column says whether the
  candidate's answer matches the exchange's gold label (normalised, like ``gold_match``). Per
  candidate and task, :func:`label_agreement` gives Cohen's kappa between that and each of the
  task's metrics (and the parity) thresholded at ``thresholds.pass_threshold``: does the metric
  pass the answers the label calls right?
* **end-user feedback** (``metadata["feedback"]``, see
  :func:`migrate_eval.score.judge.feedback_label`) on the logged answers: the rubric judge grades
  the logged answers of its controls; :func:`fill_feedback_kappa` turns the counts of feedback
  against the judge's view (``JudgeControls.feedback``) into ``feedback_kappa``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from migrate_eval.core.results import LabelAgreement, TaskInfo
from migrate_eval.score.scoring import GOLD_AGREE
from migrate_eval.verdict.stats import EPS, cohen_kappa


def fill_feedback_kappa(tasks: Sequence[TaskInfo]) -> None:
    """Set ``feedback_kappa`` of each task's judge controls that have feedback counts (in place)."""
    for task in tasks:
        for c in (task.judge_controls or {}).values():
            if not c.feedback:
                continue
            users: list[str] = []
            judge: list[str] = []
            for user_label, row in sorted(c.feedback.items()):
                for judge_label, count in sorted(row.items()):
                    users.extend([user_label] * count)
                    judge.extend([judge_label] * count)
            c.feedback_kappa = cohen_kappa(users, judge)


def label_agreement(
    task: TaskInfo,
    ok_idx: npt.NDArray[np.intp],
    column: Callable[[str], npt.NDArray[np.float64] | None],
    parity: npt.NDArray[np.float64],
    pass_threshold: float,
) -> LabelAgreement | None:
    """Kappa of each metric (and the parity) with the gold labels on the rows ``ok_idx``;
    None when none of them has a gold label. ``column`` gives a float column of the scores
    frame by name (None when absent)."""
    gold_col = column(GOLD_AGREE)
    if gold_col is None or ok_idx.size == 0:
        return None
    gold = gold_col[ok_idx]
    labelled = ~np.isnan(gold)
    if not labelled.any():
        return None
    values: dict[str, npt.NDArray[np.float64]] = {}
    for m in dict.fromkeys(task.metrics):
        col = column(m)
        if col is not None:
            values[m] = col[ok_idx]
    values["parity"] = parity[ok_idx]
    kappa: dict[str, float | None] = {}
    for name, v in values.items():
        both = labelled & ~np.isnan(v)
        if not both.any():
            kappa[name] = None
            continue
        human = ["pass" if g >= 0.5 else "fail" for g in gold[both]]
        metric = ["pass" if x >= pass_threshold - EPS else "fail" for x in v[both]]
        kappa[name] = cohen_kappa(human, metric)
    return LabelAgreement(n=int(np.count_nonzero(labelled)), kappa=kappa)
