"""The backbones plugin module registers ``vit`` and ``timm`` with schemas the recipe validator accepts."""

from __future__ import annotations

import dataclasses

import pytest

import sslkit_plugins.backbones as backbones
from sslkit.errors import RecipeError
from sslkit.registry import Provider, Registry
from sslkit_plugins.backbones.timm_backbone import TimmBackbone, TimmBackboneParams
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.register_module(backbones, Provider("sslkit", "test", "sslkit_plugins.backbones"))
    return registry


def test_both_backbones_are_registered(registry: Registry) -> None:
    assert registry.names("backbone") == ["timm", "vit"]
    assert registry.get("backbone", "vit").factory is ViT
    assert registry.get("backbone", "timm").factory is TimmBackbone
    assert all(c.summary for c in registry.list("backbone"))


def test_vit_builds_from_recipe_values(registry: Registry) -> None:
    vit = registry.create(
        "backbone", "vit", size="tiny", img_size=28, layerscale_init=None, num_register_tokens=4, drop_path_rate=0.1
    )
    assert isinstance(vit, ViT) and vit.num_register_tokens == 4 and vit.params.layerscale_init is None


def test_recipe_mistakes_are_reported_together(registry: Registry) -> None:
    with pytest.raises(RecipeError) as info:
        registry.create("backbone", "vit", size="smal", drop_path_rate=1.5, init_format="hf")
    message = str(info.value)
    assert "3 problems" in message and "did you mean 'small'" in message and "must be < 1.0" in message


@pytest.mark.parametrize("schema", [ViTParams, TimmBackboneParams])
def test_every_field_is_documented(schema: type) -> None:
    assert all(f.metadata.get("doc") for f in dataclasses.fields(schema))
