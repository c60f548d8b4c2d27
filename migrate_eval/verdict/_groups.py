"""Rows of the scores frame by (candidate, task), shared by the verdict and the run history."""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd


def pair_positions(scores: pd.DataFrame) -> dict[tuple[str, str], npt.NDArray[np.intp]]:
    """The positions of each (candidate, task)'s rows in ``scores``, in frame order: one
    grouping over codes, no text or list made a row."""
    positions: dict[tuple[str, str], npt.NDArray[np.intp]] = {}
    if len(scores):
        for key, pos in scores.groupby(["candidate", "task"], sort=False).indices.items():
            cand_name, task_name = cast(tuple[str, str], key)
            positions[(str(cand_name), str(task_name))] = np.asarray(pos, dtype=np.intp)
    return positions
