"""Provider registry: built-in providers, lazily imported ones and entry-point plugins.

* :func:`register_provider` registers a :class:`Provider` subclass (or any factory that takes
  a :class:`~migrate_eval.core.suite.CandidateSpec`) under a name.
* :func:`register_lazy_provider` registers a ``"module:attribute"`` target that is imported
  only when a suite uses it. Providers built on optional vendor SDKs are registered this way
  with the SDK they need: when it is missing, :func:`get_provider` raises
  :class:`~migrate_eval.core.errors.MissingExtraError` naming the pip extra to install.
* Third-party packages add providers through the ``migrate_eval.replay.providers`` entry-point group
  (``name = "package.module:ProviderClass"``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from migrate_eval.core.errors import ConfigError, MissingExtraError
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import Provider

ENTRY_POINT_GROUP = "migrate_eval.providers"

ProviderFactory = Callable[[CandidateSpec], Provider]
F = TypeVar("F", bound=ProviderFactory)


@dataclass(frozen=True)
class Requirement:
    """An optional package a provider needs: its import name and the pip extra that installs it."""

    package: str
    extra: str


@dataclass
class _Entry:
    factory: ProviderFactory | None = None
    target: str | None = None  # "module:attribute", imported on first use
    requires: tuple[Requirement, ...] = ()
    origin: str = "builtin"


_REGISTRY: dict[str, _Entry] = {}
_ENTRY_POINTS_LOADED = False


def _as_requirements(requires: Sequence[tuple[str, str] | Requirement]) -> tuple[Requirement, ...]:
    return tuple(r if isinstance(r, Requirement) else Requirement(*r) for r in requires)


def register_provider(
    name: str, *, requires: Sequence[tuple[str, str] | Requirement] = ()
) -> Callable[[F], F]:
    """Class (or factory) decorator: make a provider available under ``name``.

    Registering a name again replaces the previous provider.
    """

    def deco(factory: F) -> F:
        if isinstance(factory, type) and issubclass(factory, Provider):
            factory.name = name
        _REGISTRY[name] = _Entry(factory=factory, requires=_as_requirements(requires))
        return factory

    return deco


def register_lazy_provider(
    name: str, target: str, *, requires: Sequence[tuple[str, str] | Requirement] = ()
) -> None:
    """Register ``"module:attribute"`` under ``name`` without importing it yet.

    ``requires`` lists ``(package, extra)`` pairs checked before the import, so that a missing
    vendor SDK gives a one-line install command instead of a traceback.
    """
    if ":" not in target:
        raise ValueError(f"provider target {target!r} must look like 'module:attribute'")
    _REGISTRY[name] = _Entry(target=target, requires=_as_requirements(requires))


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:  # built-ins win over plugins of the same name
            _REGISTRY[ep.name] = _Entry(target=ep.value, origin=f"entry point {ep.value}")


def available_providers() -> list[str]:
    """Every provider name a suite may use (built-in, lazy and plugins), sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _check_requirements(name: str, requires: tuple[Requirement, ...]) -> None:
    for req in requires:
        if importlib.util.find_spec(req.package) is None:
            raise MissingExtraError(req.package, req.extra, f"provider '{name}'")


def _resolve(name: str, entry: _Entry) -> ProviderFactory:
    if entry.factory is not None:
        return entry.factory
    assert entry.target is not None
    _check_requirements(name, entry.requires)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        for req in entry.requires:
            if req.package.split(".")[0] == missing:
                raise MissingExtraError(req.package, req.extra, f"provider '{name}'") from None
        raise ConfigError(f"provider '{name}' ({entry.origin}) cannot be imported: {e}") from None
    obj: object = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"provider '{name}': {entry.target} does not exist") from None
    if not callable(obj):
        raise ConfigError(f"provider '{name}': {entry.target} is not a class or function")
    if isinstance(obj, type) and issubclass(obj, Provider) and not obj.name:
        obj.name = name
    factory = cast(ProviderFactory, obj)
    entry.factory = factory
    return factory


def get_provider(spec: CandidateSpec) -> Provider:
    """Build the provider a candidate names. Unknown names are a :class:`ConfigError`."""
    entry = _REGISTRY.get(spec.provider)
    if entry is None:
        _load_entry_points()
        entry = _REGISTRY.get(spec.provider)
    if entry is None:
        known = ", ".join(available_providers())
        raise ConfigError(
            f"candidate '{spec.name}': unknown provider '{spec.provider}' (known: {known})"
        )
    _check_requirements(spec.provider, entry.requires)
    provider = _resolve(spec.provider, entry)(spec)
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"provider '{spec.provider}' returned {type(provider).__name__}, not a Provider"
        )
    return provider
