"""Registering components temporarily into the process-wide registry (for tests of plugins that
are not installed, or of variants that only a test needs).

Everything registered here goes through the same path as an installed plugin (a module with a
``@sslkit.hookimpl`` hook, :meth:`sslkit.registry.Registry.register_module`), so recipes loaded
in the same process (:func:`sslkit.recipe.load_recipe`, :func:`sslkit.testing.run_tiny_training`)
find the component by name and validate its parameters against its schema.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any

import sslkit
from sslkit.components import BuildContext
from sslkit.hookspecs import KIND_HOOKS
from sslkit.registry import Component, Provider, Registry, get_registry

#: Distribution name of the providers that :func:`registered` creates by default.
TESTING_DISTRIBUTION = "sslkit-testing"

_counter = itertools.count()


def _hook_module(kind: str, name: str, factory: Callable[..., Any], params: type, summary: str | None) -> ModuleType:
    """A module object implementing the one hook of ``kind`` that registers ``name``."""
    if kind not in KIND_HOOKS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KIND_HOOKS)}")
    module = ModuleType(f"sslkit_testing_{kind}_{name}_{next(_counter)}")

    def hook(register: Callable[..., None]) -> None:
        register(name, factory, params, summary=summary)

    setattr(module, KIND_HOOKS[kind], sslkit.hookimpl(hook))
    return module


@contextmanager
def registered(
    kind: str,
    name: str,
    factory: Callable[..., Any],
    params: type,
    *,
    summary: str | None = None,
    provider: Provider | None = None,
    registry: Registry | None = None,
) -> Iterator[Component]:
    """Register ``factory`` as component ``kind``/``name`` for the duration of the ``with`` block.

    ``params`` is the component's parameter dataclass; ``provider`` defaults to
    ``Provider("sslkit-testing", sslkit.__version__, <generated module name>)``; ``registry``
    defaults to the process registry (:func:`sslkit.registry.get_registry`). A name that is
    already registered is an error (uninstall the plugin, or pick another name): this never
    shadows a real component. Yields the registered :class:`~sslkit.registry.Component`::

        with registered("loss", "my_loss", MyLoss, MyLossParams) as component:
            loss = get_registry().create("loss", "my_loss", scale=2.0)
    """
    registry = registry if registry is not None else get_registry()
    if (kind, name) in registry.components:
        raise ValueError(f"{kind} {name!r} is already registered by {registry.components[(kind, name)].provider}; "
                         "pick another name")
    if (kind, name) in registry.conflicts:
        raise ValueError(f"{kind} {name!r} is already registered by several providers; pick another name")
    module = _hook_module(kind, name, factory, params, summary)
    provider = provider or Provider(TESTING_DISTRIBUTION, sslkit.__version__, module.__name__)
    had_distribution = provider.distribution in registry.providers
    registry.register_module(module, provider)
    try:
        yield registry.get(kind, name)
    finally:
        component = registry.components.get((kind, name))
        if component is not None and component.provider is provider:
            del registry.components[(kind, name)]
        if registry._manager.is_registered(module):
            registry._manager.unregister(module)
        if not had_distribution and not any(c.provider.distribution == provider.distribution
                                            for c in registry.components.values()):
            registry.providers.pop(provider.distribution, None)


class RegistryScope:
    """The process registry for one test: components registered through :meth:`register` stay
    until :meth:`restore` (the ``sslkit_registry`` fixture calls it when the test ends), which
    also puts back the registry's components, conflicts, failures and provider versions as they
    were before the test."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else get_registry()
        self._saved = (dict(self.registry.components), copy.deepcopy(self.registry.conflicts),
                       list(self.registry.failures), dict(self.registry.providers))
        self._stack = ExitStack()

    def register(self, kind: str, name: str, factory: Callable[..., Any], params: type, *,
                 summary: str | None = None, provider: Provider | None = None) -> Component:
        """Register ``factory`` as ``kind``/``name`` until :meth:`restore` (see :func:`registered`)."""
        return self._stack.enter_context(
            registered(kind, name, factory, params, summary=summary, provider=provider, registry=self.registry))

    def create(self, kind: str, name: str, ctx: BuildContext | None = None, **params: Any) -> Any:
        """Build a component with validated parameters (see :meth:`sslkit.registry.Registry.create`)."""
        return self.registry.create(kind, name, ctx, **params)

    def restore(self) -> None:
        """Undo every registration of this scope and restore the registry's earlier state."""
        self._stack.close()
        components, conflicts, failures, providers = self._saved
        self.registry.components.clear()
        self.registry.components.update(components)
        self.registry.conflicts.clear()
        self.registry.conflicts.update(conflicts)
        self.registry.failures[:] = failures
        self.registry.providers.clear()
        self.registry.providers.update(providers)
