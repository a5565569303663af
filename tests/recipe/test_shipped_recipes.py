"""The shipped recipes resolve; the DINOv2 recipes without an official config derive from the official defaults;
DINO v1 keeps its own defaults. (The official configs themselves: test_dinov2_official_configs.py.)"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sslkit.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
NEEDS_DATA = {"dinov2", "dino"}
#: Recipes elsewhere that train on an image folder the user names (data.dataset.root).
NEEDS_DATA_FILES = {"distill/dinov2_vitg14_to_vits14.yaml"}
ALL = sorted(p for p in RECIPES.rglob("*.yaml") if p.parent.name != "ablations")


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_resolves(path: Path) -> None:
    needs_data = path.parent.name in NEEDS_DATA or str(path.relative_to(RECIPES)) in NEEDS_DATA_FILES
    overrides = ["data.dataset.root=/data/images"] if needs_data else []
    resolved = load_recipe(path, overrides)
    assert resolved.recipe.losses


def _dinov2(name: str) -> dict:
    return load_recipe(RECIPES / "dinov2" / name, ["data.dataset.root=/data/images"]).data


def _without(d: dict, *paths: str) -> dict:
    """A copy of ``d`` without the dotted ``paths``."""
    d = copy.deepcopy(d)
    for path in paths:
        *parents, leaf = path.split(".")
        node = d
        for key in parents:
            node = node[key]
        del node[leaf]
    return d


def test_vits14_and_vitb14_are_the_official_defaults_with_the_released_sizes() -> None:
    # no official training config exists for them (the released models were distilled): the
    # defaults (vitl16_short) with the size, patch 14, the 98 px local crops and drop-path 0.1
    defaults, small, base = _dinov2("vitl16_short.yaml"), _dinov2("vits14.yaml"), _dinov2("vitb14.yaml")
    changed = ("model.backbone.size", "model.backbone.patch_size", "model.backbone.drop_path_rate",
               "data.augmentation.local_crop_size")
    assert _without(small, *changed) == _without(defaults, *changed)
    assert _without(base, *changed) == _without(defaults, *changed)
    for d, size in ((small, "small"), (base, "base")):
        backbone = d["model"]["backbone"]
        assert (backbone["size"], backbone["patch_size"], backbone["drop_path_rate"]) == (size, 14, 0.1)
        assert d["data"]["augmentation"]["local_crop_size"] == 98
        assert d["model"]["heads"]["dino"]["trainable_norm"]


def test_dino_v1_has_no_ibot_no_koleo_and_a_fixed_prototype_magnitude() -> None:
    d = load_recipe(RECIPES / "dino" / "vits16.yaml", ["data.dataset.root=/data/images"]).data
    assert set(d["losses"]) == {"dino"}
    assert d["model"]["backbone"]["patch_size"] == 16 and d["model"]["backbone"]["layerscale_init"] is None
    assert d["model"]["heads"]["dino"]["trainable_norm"] is False  # DINO's default norm_last_layer
    assert not d["model"]["backbone"]["drop_path_uniform"]  # DINO ramps drop-path over the blocks
    # DINO's interpolate_pos_encoding adds 0.1 to the grid and uses plain (non-antialiased) bicubic
    assert (d["model"]["backbone"]["pos_embed_offset"], d["model"]["backbone"]["pos_embed_antialias"]) == (0.1, False)
    aug, t = d["data"]["augmentation"], d["teacher"]
    assert (aug["global_scale"], aug["local_scale"], aug["local_crop_size"]) == ([0.4, 1.0], [0.05, 0.4], 96)
    assert t["momentum"] == 0.996 and d["losses"]["dino"]["teacher_temp"] == 0.04  # constant, no warm-up
    o = d["optim"]
    assert (o["base_lr"], o["lr_scaling"], o["reference_batch_size"]) == (0.0005, "linear", 256)


def test_shipped_recipes_leave_the_precision_to_the_default() -> None:
    for name in ("vitl16_short.yaml", "vitl14.yaml", "vitg14.yaml", "vits14.yaml", "vitb14.yaml"):
        assert _dinov2(name)["run"]["precision"] == "auto", name
