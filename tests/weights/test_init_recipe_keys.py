"""``model.backbone.init_from`` / ``init_format`` / ``init_min_fraction``: reserved keys of the backbone
entry (not plugin parameters), validated with the recipe and kept in the resolved recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslkit.errors import RecipeError
from sslkit.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_init_keys_are_validated_and_resolved() -> None:
    resolved = load_recipe(RECIPES / "quickstart.yaml",
                           ["model.backbone.init_from=runs/stage1", "model.backbone.init_min_fraction=1.0"])
    spec = resolved.spec("model.backbone")
    assert (spec.init_from, spec.init_format, spec.init_min_fraction) == ("runs/stage1", "auto", 1.0)
    assert not hasattr(spec.params, "init_from")  # the engine's key, not a vit parameter
    entry = resolved.data["model"]["backbone"]
    assert (entry["init_from"], entry["init_format"], entry["init_min_fraction"]) == ("runs/stage1", "auto", 1.0)
    assert load_recipe(RECIPES / "quickstart.yaml").spec("model.backbone").init_from is None


def test_bad_init_keys_are_recipe_errors() -> None:
    with pytest.raises(RecipeError, match=r"model\.backbone\.init_min_fraction[\s\S]*expected a number in \[0, 1\], "
                       r"got 1\.5"):
        load_recipe(RECIPES / "quickstart.yaml", ["model.backbone.init_min_fraction=1.5"])
    with pytest.raises(RecipeError, match=r"model\.backbone\.init_from[\s\S]*got 3"):
        load_recipe(RECIPES / "quickstart.yaml", ["model.backbone.init_from=3"])
