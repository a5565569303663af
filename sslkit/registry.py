"""The component registry: discovers plugins through the ``sslkit`` entry-point group with pluggy.

Every distribution (sslkit's own built-ins included) exposes plugin modules as entry points::

    [project.entry-points.sslkit]
    my_losses = "my_package.losses"

Each module implements hooks of :mod:`sslkit.hookspecs`; each hook receives a ``register``
callback bound to the module's provider, so every component knows who provided it.

Environment:
- ``SSLKIT_DISABLE_PLUGIN_AUTOLOAD=1``: load only the built-ins (distribution ``sslkit``).
- ``SSLKIT_DISABLE_PLUGINS=name,...``: skip these entry points (by entry-point name or
  distribution name).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata as metadata
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from sslkit import hookspecs
from sslkit.components import BuildContext
from sslkit.errors import PluginError, SSLKitError, suggest
from sslkit.params import validate

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ENTRY_POINT_GROUP = "sslkit"
BUILTIN_DISTRIBUTION = "sslkit"
KINDS: tuple[str, ...] = tuple(hookspecs.KIND_HOOKS)


@dataclass(frozen=True)
class Provider:
    """Who provides a component: the distribution (with version) and the module."""

    distribution: str
    version: str
    module: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.module})"


@dataclass(frozen=True)
class Component:
    """A registered component: ``factory(params, ctx)`` builds it from validated ``params``."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[DataclassInstance]
    provider: Provider
    summary: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin whose import or registration failed; the rest of the registry still works."""

    entry_point: str
    provider: str
    error: str
    details: str = ""

    def __str__(self) -> str:
        return f"plugin {self.entry_point} (from {self.provider}) failed: {self.error}"


@dataclass
class Registry:
    """All components by kind and name, plus the plugins that failed and the name conflicts."""

    components: dict[tuple[str, str], Component] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: dict[tuple[str, str], list[Provider]] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)  # distribution -> version
    _manager: pluggy.PluginManager = field(default_factory=lambda: _new_manager())

    def register_module(self, module: ModuleType | object, provider: Provider) -> None:
        """Register one plugin module (or object with hook functions) under ``provider``."""
        pending: list[Component] = []

        def make_register(kind: str) -> Callable[..., None]:
            def register(name: str, factory: Callable[..., Any], params: type[DataclassInstance],
                         summary: str | None = None) -> None:
                if not isinstance(name, str) or not name.isidentifier():
                    raise PluginError(f"{provider}: {kind} name {name!r} must be an identifier")
                doc = summary or (factory.__doc__ or "").strip().splitlines()[0:1]
                text = doc if isinstance(doc, str) else (doc[0] if doc else "")
                pending.append(Component(kind, name, factory, params, provider, text.strip()))

            return register

        self._manager.register(module, name=f"{provider.distribution}:{provider.module}:{id(module)}")
        try:
            for kind, hook_name in hookspecs.KIND_HOOKS.items():
                for impl in getattr(self._manager.hook, hook_name).get_hookimpls():
                    if impl.plugin is module:
                        impl.function(register=make_register(kind))
        except Exception:
            self._manager.unregister(module)
            raise
        self.providers[provider.distribution] = provider.version
        for comp in pending:
            key = (comp.kind, comp.name)
            if key in self.conflicts:
                self.conflicts[key].append(comp.provider)
            elif key in self.components:
                self.conflicts[key] = [self.components.pop(key).provider, comp.provider]
            else:
                self.components[key] = comp

    def unregister_module(self, module: ModuleType | object, provider: Provider) -> None:
        """Undo :meth:`register_module`: forget the module's hooks and its components."""
        if self._manager.is_registered(module):
            self._manager.unregister(module)
        for key in [k for k, c in self.components.items() if c.provider == provider]:
            del self.components[key]

    def get(self, kind: str, name: str) -> Component:
        """The component ``kind``/``name``, or a :class:`PluginError` saying what exists."""
        if kind not in KINDS:
            raise PluginError(f"unknown component kind {kind!r}{suggest(kind, KINDS)}; kinds: {', '.join(KINDS)}")
        if (kind, name) in self.conflicts:
            raise PluginError(conflict_message(kind, name, self.conflicts[(kind, name)]))
        comp = self.components.get((kind, name))
        if comp is not None:
            return comp
        names = self.names(kind)
        lines = [f"unknown {kind} {name!r}{suggest(name, names)}; available: {', '.join(names) or '(none)'}"]
        lines += [f"note: {failure}" for failure in self.failures]
        raise PluginError("\n".join(lines))

    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self.components if k == kind)

    def list(self, kind: str | None = None, pattern: str = "*") -> list[Component]:
        """Components of ``kind`` (all kinds when ``None``) whose name matches the wildcard ``pattern``."""
        order = {k: i for i, k in enumerate(KINDS)}
        found = [c for c in self.components.values()
                 if (kind is None or c.kind == kind) and fnmatch.fnmatchcase(c.name, pattern)]
        return sorted(found, key=lambda c: (order[c.kind], c.name))

    def create(self, kind: str, name: str, ctx: BuildContext | None = None, **params: Any) -> Any:
        """Validate ``params`` against the component's schema and build it."""
        comp = self.get(kind, name)
        values = validate(comp.params, params, prefix=f"{kind} {name!r}")
        return comp.factory(values, ctx or BuildContext())


def conflict_message(kind: str, name: str, providers: list[Provider]) -> str:
    names = " and ".join(str(p) for p in sorted(providers, key=lambda p: (p.distribution, p.module)))
    return (f"{kind} {name!r} is registered by more than one provider: {names}. "
            "Uninstall one of them or disable one with SSLKIT_DISABLE_PLUGINS=<entry point or distribution>.")


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("sslkit")
    manager.add_hookspecs(hookspecs)
    return manager


def _entry_points() -> Iterator[metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        if (dist, ep.name) not in seen:  # a distribution visible twice on sys.path counts once
            seen.add((dist, ep.name))
            yield ep


def load_registry() -> Registry:
    """Discover and register every plugin from the ``sslkit`` entry points (see module doc)."""
    registry = Registry()
    autoload = os.environ.get("SSLKIT_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
    disabled = {s.strip() for s in os.environ.get("SSLKIT_DISABLE_PLUGINS", "").split(",") if s.strip()}
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "unknown"
        builtin = dist == BUILTIN_DISTRIBUTION
        if (not builtin and not autoload) or ep.name in disabled or (not builtin and dist in disabled):
            continue
        label = f"{ep.group}:{ep.name} = {ep.value}"
        try:
            module = ep.load()
            registry.register_module(module, Provider(dist, version, ep.value))
        except Exception as exc:  # a broken plugin must not take the others down
            registry.failures.append(PluginFailure(label, f"{dist} {version}", f"{type(exc).__name__}: {exc}",
                                                   traceback.format_exc(limit=3)))
    return registry


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded registry so that the next :func:`get_registry` rediscovers plugins."""
    global _REGISTRY
    _REGISTRY = None


def create(kind: str, name: str, ctx: BuildContext | None = None, **params: Any) -> Any:
    """Build one component with validated parameters: ``create("loss", "dino", head="dino")``."""
    return get_registry().create(kind, name, ctx, **params)


def list_components(kind: str | None = None, pattern: str = "*") -> list[Component]:
    """Registered components, like ``timm.list_models``: ``list_components("loss", "*bot*")``."""
    return get_registry().list(kind, pattern)


__all__ = ["KINDS", "Component", "PluginFailure", "Provider", "Registry", "SSLKitError", "create",
           "get_registry", "list_components", "load_registry", "reset_registry"]
