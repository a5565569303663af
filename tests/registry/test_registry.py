"""The registry: registration through hooks, providers, conflicts, validation and listing."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import pytest

import sslkit
from sslkit.components import BuildContext
from sslkit.errors import PluginError, RecipeError
from sslkit.params import param
from sslkit.registry import KINDS, Provider, Registry, create, get_registry, list_components


@dataclass
class ScaleParams:
    """Parameters of a test component."""

    factor: float = param(2.0, "Multiplier.", gt=0.0)
    mode: str = param("a", "A mode.")


def make_scale(params: ScaleParams, ctx: BuildContext) -> tuple[float, str, int]:
    """Returns its parameters (a component that is just data)."""
    return params.factor, params.mode, ctx.seed


def _plugin(name: str) -> ModuleType:
    @sslkit.hookimpl
    def register_maskers(register) -> None:
        register(name, make_scale, ScaleParams)

    module = ModuleType(f"plugin_{name}")
    module.register_maskers = register_maskers  # type: ignore[attr-defined]
    return module


def test_every_kind_has_builtins_from_the_sslkit_distribution() -> None:
    registry = get_registry()
    assert not registry.failures, registry.failures
    for kind in KINDS:
        builtins = [c for c in registry.list(kind) if c.provider.distribution == "sslkit"]
        assert builtins, f"no built-in {kind}"
        assert all(c.provider.module == f"sslkit_plugins.{c.provider.module.split('.')[-1]}" for c in builtins)
        assert all(c.summary for c in builtins), [c.name for c in builtins if not c.summary]


def test_contract_names_are_registered() -> None:
    expected = {"backbone": {"vit", "timm"}, "head": {"dino", "ibot"},
                "loss": {"dino", "ibot", "koleo", "patch_prototype"}, "masker": {"block", "bernoulli"},
                "crop_policy": {"random_fraction", "one_per_image"}, "param_groups": {"dinov2", "two_group"},
                "dataset": {"image_folder", "tar", "synthetic"},
                "augmentation": {"kornia_multicrop", "torchvision_multicrop"}}
    for kind, names in expected.items():
        assert names <= set(get_registry().names(kind)), kind


def test_registration_records_provider_and_summary_from_docstring() -> None:
    registry = Registry()
    registry.register_module(_plugin("scale"), Provider("dist-a", "1.0", "dist_a.plugin"))
    component = registry.get("masker", "scale")
    assert component.provider == Provider("dist-a", "1.0", "dist_a.plugin")
    assert component.summary == "Returns its parameters (a component that is just data)."
    assert registry.create("masker", "scale", BuildContext(seed=5), factor=3) == (3.0, "a", 5)


def test_unregistering_a_module_removes_its_components() -> None:
    registry = Registry()
    module, provider = _plugin("scale"), Provider("dist-a", "1.0", "a.mod")
    registry.register_module(module, provider)
    registry.unregister_module(module, provider)
    assert "scale" not in registry.names("masker")
    registry.register_module(module, provider)  # can be registered again
    assert registry.names("masker") == ["scale"]


def test_conflicting_registrations_name_both_providers() -> None:
    registry = Registry()
    registry.register_module(_plugin("scale"), Provider("dist-a", "1.0", "a.mod"))
    registry.register_module(_plugin("scale"), Provider("dist-b", "2.0", "b.mod"))
    with pytest.raises(PluginError) as info:
        registry.get("masker", "scale")
    assert "dist-a 1.0 (a.mod) and dist-b 2.0 (b.mod)" in str(info.value)
    assert "SSLKIT_DISABLE_PLUGINS" in str(info.value)


def test_unknown_names_suggest_close_matches_and_list_what_exists() -> None:
    with pytest.raises(PluginError, match=r"unknown loss 'dnio' \(did you mean 'dino'\?\); available: .*ibot"):
        get_registry().get("loss", "dnio")
    with pytest.raises(PluginError, match=r"unknown component kind 'losses' \(did you mean 'loss'\?\)"):
        get_registry().get("losses", "dino")


def test_create_validates_parameters() -> None:
    registry = Registry()
    registry.register_module(_plugin("scale"), Provider("d", "1", "m"))
    with pytest.raises(RecipeError) as info:
        registry.create("masker", "scale", factr=1.0)
    assert "masker 'scale'.factr: unknown key (did you mean 'factor'?)" in str(info.value)
    with pytest.raises(RecipeError, match=r"factor: must be > 0.0, got -1"):
        registry.create("masker", "scale", factor=-1)
    with pytest.raises(RecipeError, match=r"mode: expected a string, got 3"):
        registry.create("masker", "scale", mode=3)


def test_public_create_builds_a_builtin_component() -> None:
    policy = create("crop_policy", "one_per_image")
    import torch

    selected = policy.select(2, 8, torch.Generator().manual_seed(0))
    assert selected.shape == (2, 8) and selected.sum(0).eq(1).all()


def test_list_components_supports_wildcards() -> None:
    names = [c.name for c in list_components("loss", "*bot*")]
    assert names == ["ibot"]
    kinds = [c.kind for c in list_components()]
    assert kinds == sorted(kinds, key=KINDS.index)
