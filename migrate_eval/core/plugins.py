"""One registry pattern for log formats, providers and metrics, and one plugin policy.

A :class:`Registry` holds named objects of one kind. Each name is either registered with its
object, or lazily, as a ``"module:attribute"`` target imported on first use (with the optional
packages it needs). Packages add plugins through an entry-point group. The policy, the same for
every kind:

* built-in and explicitly registered names win: an entry point whose name is taken is left out,
  with a logged warning;
* a lazy target whose optional package is missing raises
  :class:`~migrate_eval.core.errors.MissingExtraError` with the ``pip install`` command;
* a target or entry point that cannot be imported raises :class:`ConfigError` naming it when
  it is asked for by name, and is left out with a logged warning when every entry is listed;
* an unknown name raises :class:`ConfigError` listing the known names, with a "did you mean".

The registry checks each loaded object with the ``check`` function it was built with (which
may also convert it, e.g. call a factory).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from migrate_eval.core.errors import ConfigError, MissingExtraError

T = TypeVar("T")
logger = logging.getLogger("migrate_eval.plugins")


@dataclass(frozen=True)
class Requirement:
    """An optional package a plugin needs: its import name and the pip extra that installs it."""

    package: str
    extra: str


def requirements(requires: Iterable[tuple[str, str] | Requirement]) -> tuple[Requirement, ...]:
    return tuple(r if isinstance(r, Requirement) else Requirement(*r) for r in requires)


def check_requirements(feature: str, requires: Iterable[Requirement]) -> None:
    """:class:`MissingExtraError` for the first optional package of ``requires`` not installed."""
    for req in requires:
        try:
            found = importlib.util.find_spec(req.package) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is missing
            found = False
        if not found:
            raise MissingExtraError(req.package, req.extra, feature)


def import_target(
    target: str, *, feature: str, requires: Iterable[Requirement] = (), noun: str = "attribute"
) -> object:
    """Import ``"module:attribute.path"`` and return the attribute.

    A missing optional package (one of ``requires``) is a :class:`MissingExtraError`; any other
    failure a :class:`ConfigError` naming ``feature`` and the target.
    """
    requires = tuple(requires)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{feature}: expected 'module:{noun}', got {target!r}")
    check_requirements(feature, requires)
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        for req in requires:
            if req.package.split(".")[0] == missing:
                raise MissingExtraError(req.package, req.extra, feature) from None
        raise ConfigError(
            f"{feature}: {target!r} cannot be loaded: module {module_name!r} cannot be imported: {e}"
        ) from e
    except Exception as e:
        raise ConfigError(
            f"{feature}: {target!r} cannot be loaded: module {module_name!r} cannot be imported: "
            f"{type(e).__name__}: {e}"
        ) from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"{feature}: {target} does not exist (module {module_name!r} has no attribute "
                f"{attr!r})"
            ) from None
    return obj


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class _Entry(Generic[T]):
    value: T | None = None
    target: str | None = None
    requires: tuple[Requirement, ...] = ()
    origin: str = "builtin"


@dataclass
class Registry(Generic[T]):
    """Named objects of one ``kind`` (``"log format"``, ``"provider"``, ``"metric"``)."""

    kind: str
    group: str
    """The entry-point group packages use to add plugins."""
    check: Callable[[str, object], T]
    """Checks (and may convert) a loaded object; raises ConfigError/TypeError when wrong."""
    logger: logging.Logger = field(default=logger)
    _entries: dict[str, _Entry[T]] = field(default_factory=dict)
    _entry_points_loaded: bool = False

    def add(self, name: str, value: T, *, replace: bool = True, origin: str = "builtin") -> None:
        if not replace and name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = _Entry(value=value, origin=origin)

    def add_lazy(
        self, name: str, target: str, *, requires: Iterable[tuple[str, str] | Requirement] = ()
    ) -> None:
        if ":" not in target:
            raise ValueError(f"{self.kind} target {target!r} must look like 'module:attribute'")
        self._entries[name] = _Entry(target=target, requires=requirements(requires))

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def names(self) -> list[str]:
        """Every name (built-in, lazy and plugins), sorted."""
        self._load_entry_points()
        return sorted(self._entries)

    def target(self, name: str) -> str | None:
        """The ``"module:attribute"`` a lazy entry imports (None for one registered by value)."""
        self._load_entry_points()
        entry = self._entries.get(name)
        return entry.target if entry is not None else None

    def requires(self, name: str) -> tuple[Requirement, ...]:
        entry = self._entries.get(name)
        return entry.requires if entry is not None else ()

    def get(self, name: str, *, context: str = "") -> T:
        """The object called ``name``: imported, checked and kept on first use. ``context``
        prefixes the unknown-name error (e.g. ``"candidate 'x': "``)."""
        entry = self._entries.get(name)
        if entry is None:
            self._load_entry_points()
            entry = self._entries.get(name)
        if entry is None:
            known = self.names()
            raise ConfigError(
                f"{context}unknown {self.kind} {name!r} (known: {', '.join(known)})"
                f"{did_you_mean(name, known)}"
            )
        if entry.value is None:
            assert entry.target is not None
            feature = f"{self.kind} '{name}'"
            if entry.origin != "builtin":
                feature += f" ({entry.origin})"
            obj = import_target(entry.target, feature=feature, requires=entry.requires)
            try:
                entry.value = self.check(name, obj)
            except TypeError as e:
                raise ConfigError(f"{feature}: {e}") from None
        return entry.value

    def load_all(self) -> dict[str, T]:
        """Every entry that loads, by name; those that do not are left out with a warning."""
        out: dict[str, T] = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except (ConfigError, MissingExtraError) as e:
                self.logger.warning("%s %r not loaded: %s", self.kind, name, e)
        return out

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                self.logger.warning(
                    "%s plugin %r (%s) not loaded: the name %r is taken",
                    self.kind,
                    ep.name,
                    ep.value,
                    ep.name,
                )
                continue
            self._entries[ep.name] = _Entry(target=ep.value, origin=f"entry point {ep.value}")
