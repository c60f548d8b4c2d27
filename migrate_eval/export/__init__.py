"""Exports of a suite's traffic to other evaluation tools (``migrate-eval export ...``)."""

from __future__ import annotations

from migrate_eval.export.lmeval import ExportedTask, export_lm_eval, render_prompt

__all__ = ["ExportedTask", "export_lm_eval", "render_prompt"]
