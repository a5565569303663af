"""The shipped recipes resolve, and the DINOv2 ones carry the official defaults (reference sections 1-7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslkit.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
NEEDS_DATA = {"dinov2", "dino"}
ALL = sorted(p for p in RECIPES.rglob("*.yaml") if p.parent.name != "ablations")


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_resolves(path: Path) -> None:
    overrides = ["data.dataset.root=/data/images"] if path.parent.name in NEEDS_DATA else []
    resolved = load_recipe(path, overrides)
    assert resolved.recipe.losses


def _dinov2(name: str):
    return load_recipe(RECIPES / "dinov2" / name, ["data.dataset.root=/data/images"])


def test_vits14_has_the_official_defaults() -> None:
    r = _dinov2("vits14.yaml")
    d = r.data
    assert d["model"]["backbone"]["size"] == "small" and d["model"]["backbone"]["patch_size"] == 14
    assert d["model"]["heads"]["dino"]["out_dim"] == 65536 and d["model"]["heads"]["dino"]["bottleneck_dim"] == 256
    assert d["losses"]["ibot"]["head"] == "dino"
    assert [d["losses"][k]["weight"] for k in ("dino", "ibot")] == [1.0, 1.0]
    assert d["masking"]["masker"]["min_ratio"] == 0.1 and d["masking"]["masker"]["max_ratio"] == 0.5
    assert d["masking"]["crop_policy"] == {"name": "random_fraction", "fraction": 0.5}
    aug = d["data"]["augmentation"]
    assert (aug["n_global"], aug["n_local"], aug["global_crop_size"]) == (2, 8, 224)
    assert aug["global_scale"] == [0.32, 1.0] and aug["local_scale"] == [0.05, 0.32]
    o, t = d["optim"], d["teacher"]
    assert (o["base_lr"], o["lr_scaling"], o["reference_batch_size"], o["clip_grad"]) == (0.004, "sqrt", 1024, 3.0)
    assert (o["weight_decay"], o["weight_decay_end"], o["warmup_epochs"], o["min_lr"]) == (0.04, 0.4, 10, 1e-6)
    assert (t["momentum"], t["temp"], t["temp_end"], t["temp_warmup_epochs"]) == (0.992, 0.04, 0.07, 30)
    assert d["optim"]["param_groups"] == {"name": "dinov2", "layer_decay": 0.9, "patch_embed_lr_mult": 0.2}
    assert d["train"]["epoch_length"] == 1250


def test_large_and_giant_recipes_use_separate_ibot_heads_and_their_momentum() -> None:
    for name, size in (("vitl14.yaml", "large"), ("vitg14.yaml", "giant")):
        d = _dinov2(name).data
        assert d["model"]["backbone"]["size"] == size
        assert d["losses"]["ibot"]["head"] == "ibot"
        assert d["model"]["heads"]["ibot"]["out_dim"] == d["model"]["heads"]["dino"]["out_dim"] == 131072
        assert d["teacher"]["momentum"] == 0.994
    assert _dinov2("vitl14.yaml").data["optim"]["param_groups"]["layer_decay"] == 1.0
    assert _dinov2("vitg14.yaml").data["model"]["backbone"]["ffn"] == "swiglu"


def test_dino_v1_has_no_ibot_and_no_koleo() -> None:
    d = load_recipe(RECIPES / "dino" / "vits16.yaml", ["data.dataset.root=/data/images"]).data
    assert set(d["losses"]) == {"dino"}
    assert d["model"]["backbone"]["patch_size"] == 16 and d["model"]["backbone"]["layerscale_init"] is None
