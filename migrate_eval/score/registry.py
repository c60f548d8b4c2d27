"""The metric registry: what a metric is, how it is named and how a name is resolved.

A metric is a plain function ``(ctx: MetricContext) -> float | None``. It returns a value in
[0, 1] (higher = the candidate's answer is closer to the logged reference) or None when it does
not apply to that exchange (for example ``json_schema_valid`` when the request carried no
schema). None values are left out of the exchange's parity, they are not zeros.

Names are resolved by :func:`get_metric`, in this order:

1. metrics registered with :func:`register_metric` (the built-ins, and any module that was
   imported and used the decorator);
2. entry points in the group ``migrate_eval.metrics`` (``name = "package.module:function"``),
   which is how a package ships metrics;
3. ``module:function`` names, importing ``module`` and reading ``function`` from it, which is how
   a suite names a team's own metric.

Any failure (unknown name, import error, missing attribute, not callable) raises
:class:`~migrate_eval.core.errors.ConfigError` naming the metric.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.plugins import Registry, did_you_mean, import_target
from migrate_eval.core.records import Exchange, OutputKind, Response
from migrate_eval.core.results import TaskInfo
from migrate_eval.score._json import parse_json_answer

ENTRY_POINT_GROUP = "migrate_eval.metrics"


@dataclass(frozen=True)
class MetricContext:
    """Everything a metric may look at for one (exchange, candidate) pair.

    ``reference`` is the logged OpenAI answer (``exchange.response``), ``candidate`` is what the
    candidate answered, ``task`` the exchange's task. ``exchange.gold`` carries a gold label
    where the log has one. The parsed-JSON views are computed once per pair and shared by the
    metrics that need them.
    """

    exchange: Exchange
    reference: Response
    candidate: Response
    task: TaskInfo

    @cached_property
    def reference_json(self) -> tuple[bool, Any]:
        """``(ok, value)``: the reference's text parsed as JSON (see :func:`parse_json_answer`)."""
        return parse_json_answer(self.reference.text)

    @cached_property
    def candidate_json(self) -> tuple[bool, Any]:
        """``(ok, value)``: the candidate's text parsed as JSON (see :func:`parse_json_answer`)."""
        return parse_json_answer(self.candidate.text)


MetricFn = Callable[[MetricContext], float | None]

PrepareFn = Callable[[Sequence[MetricContext]], None]
"""Optional batch hook of a built-in metric: called once with every pair the metric will score,
before any of them is scored, so that it can batch expensive work (embedding texts, calling a
judge). The metric function still returns each pair's value; it reads what ``prepare`` computed."""


@dataclass(frozen=True)
class MetricInfo:
    """A metric and what is known about it."""

    name: str
    func: MetricFn
    kinds: tuple[OutputKind, ...]
    """Output kinds the metric is meant for; empty means any."""
    description: str
    prepare: PrepareFn | None = None
    """Batch hook (see :data:`PrepareFn`); None for plain metrics."""


_REGISTRY: dict[str, MetricInfo] = {}
_RESOLVED: dict[str, MetricInfo] = {}


def register_metric(
    name: str,
    *,
    kinds: tuple[OutputKind, ...] = (),
    description: str,
    prepare: PrepareFn | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Register a metric under ``name`` (decorator). The function is returned unchanged.

    Registering a different function under a name already taken raises ``ValueError``;
    registering the same function again (a module imported twice) is a no-op.
    """
    if not name or ":" in name:
        raise ValueError(f"metric name {name!r}: use a non-empty name without ':'")

    def decorate(func: MetricFn) -> MetricFn:
        old = _REGISTRY.get(name)
        if old is not None and _qualname(old.func) != _qualname(func):
            raise ValueError(f"metric {name!r} is already registered by {_qualname(old.func)}")
        _REGISTRY[name] = MetricInfo(
            name=name, func=func, kinds=tuple(kinds), description=description, prepare=prepare
        )
        return func

    return decorate


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"


def _describe(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _check_callable(name: str, obj: Any, where: str) -> MetricInfo:
    if not callable(obj):
        raise ConfigError(f"metric {name!r}: {where} is a {type(obj).__name__}, not a function")
    registered = next((m for m in _REGISTRY.values() if m.func is obj), None)
    kinds = registered.kinds if registered else ()
    description = registered.description if registered else _describe(obj)
    return MetricInfo(name=name, func=obj, kinds=kinds, description=description)


def _check_entry_point(name: str, obj: object) -> MetricInfo:
    if not callable(obj):
        raise TypeError(f"is a {type(obj).__name__}, not a function")
    return _check_callable(name, obj, "entry point")


#: Metrics that packages declare in the ``migrate_eval.metrics`` entry-point group: the plugin
#: policy every registry shares (core/plugins.py): built-in names win, a plugin that fails is
#: an error when a suite names it and is left out (with a warning) when metrics are listed.
ENTRY_POINTS: Registry[MetricInfo] = Registry(
    "metric", ENTRY_POINT_GROUP, _check_entry_point, logger=logging.getLogger(__name__)
)


def _from_entry_point(name: str) -> MetricInfo | None:
    if name in _REGISTRY or name not in ENTRY_POINTS:
        return None
    return ENTRY_POINTS.get(name)


def _from_import_path(name: str) -> MetricInfo:
    obj = import_target(name, feature=f"metric {name!r}", noun="function")
    return _check_callable(name, obj, f"{name!r}")


def get_metric(name: str) -> MetricInfo:
    """Resolve a metric name (registered name, entry point, or ``module:function``).

    Raises :class:`ConfigError` naming the metric when it cannot be resolved.
    """
    info = _REGISTRY.get(name) or _RESOLVED.get(name)
    if info is not None:
        return info
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"metric {name!r}: the name is empty")
    found = _from_entry_point(name)
    if found is None:
        if ":" not in name:
            names = set(_REGISTRY) | set(ENTRY_POINTS.names())
            known = ", ".join(sorted(_REGISTRY))
            raise ConfigError(
                f"unknown metric {name!r}{did_you_mean(name, names)}: not a built-in metric "
                f"({known}), not an entry point in group {ENTRY_POINT_GROUP!r}, and not a "
                "'module:function' name"
            )
        found = _from_import_path(name)
    _RESOLVED[name] = found
    return found


def list_metrics(*, include_entry_points: bool = True) -> list[MetricInfo]:
    """Registered metrics (and, by default, those that packages declare as entry points and
    that load), by name."""
    out = dict(_REGISTRY)
    if include_entry_points:
        for name, info in ENTRY_POINTS.load_all().items():
            out.setdefault(name, info)
    return [out[k] for k in sorted(out)]


def apply_metric_weights(tasks: Iterable[TaskInfo], specs: Iterable[Any]) -> None:
    """Copy each suite task's ``metric_weights`` onto the task of the same name (in place)."""
    weights = {
        spec.name: spec.metric_weights for spec in specs if getattr(spec, "metric_weights", None)
    }
    for t in tasks:
        if t.name in weights:
            t.metric_weights = dict(weights[t.name])
