"""The two forms of :mod:`gpu_check`: the sizes measured on one GPU, and the tiny CPU version run in CI.

The GPU form is sized to finish within 8 minutes on one H200 (about 790 dense bf16 TFLOP/s
measured, 139 GiB); the CPU form runs every section with tiny sizes in well under a minute of
CPU time, so that the script cannot rot between the sessions that are lent a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: NVIDIA's H200 SXM datasheet figure for dense bf16 (the 1,979 TFLOP/s headline assumes 2:4 sparsity).
DATASHEET_BF16_TFLOPS = 989.0
OFFICIAL_RECIPE = ROOT / "recipes" / "dinov2" / "vitl16_short.yaml"
#: Used when OFFICIAL_RECIPE is absent: ViT-L/14 turned into the ViT-L/16, 224/96 px crops of vitl16_short.
FALLBACK_RECIPE = ROOT / "recipes" / "dinov2" / "vitl14.yaml"
FALLBACK_OVERRIDES = ["model.backbone.patch_size=16", "data.augmentation.local_crop_size=96"]

#: Synthetic data, no evaluation, no checkpoint or log inside the measured steps.
_NO_EVAL = ["eval.at_start=false", "eval.at_end=false", "eval.every=0", "eval.train_data=null", "eval.test_data=null"]
_LONG = ["train.max_steps=100000", "train.log_every=100000", "train.checkpoint_every=100000"]

#: The tiny CPU model every CPU section trains (the quickstart recipe's kind of model, smaller).
_TINY_MODEL = ["model.backbone={name: vit, size: tiny, embed_dim: 32, depth: 2, num_heads: 2, patch_size: 8, "
               "img_size: 32, layerscale_init: null}"]
_TINY_DATA = ["data.dataset={name: synthetic, size: 64, image_size: 32}", "data.num_workers=0",
              "data.augmentation.global_crop_size=32", "data.augmentation.local_crop_size=16",
              "data.augmentation.n_local=2", "data.augmentation.canvas_size=32"]
#: Width parameters of heads, set wherever a head has them (CPU form of the throughput section).
_TINY_WIDTHS = {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}


@dataclass(frozen=True)
class Form:
    """Sizes, recipes and time caps of one form of the check."""

    name: str
    device: str
    peak_size: int
    peak_dtype: str
    small_recipe: str
    small_overrides: list[str]
    small_batch: int
    precisions: tuple[str, ...]
    warmup: int
    steps: int
    aug_sizes: tuple[int, int]
    n_local: int
    aug_batch: int
    aug_steps: int
    aug_workers: int
    aug_images: int
    strategy_overrides: list[str]
    compile_batch: int
    compile_warmup: int
    compile_on: bool
    compile_skip_note: str
    throughput_batches: tuple[int, ...]
    throughput_steps: int
    throughput_prefetch: int
    throughput_overrides: list[str]
    cuda_test_paths: list[str]
    recipe: Path = OFFICIAL_RECIPE
    caps: dict[str, float] = field(default_factory=dict)

    def throughput_recipe(self) -> tuple[Path, list[str], list[str]]:
        """The recipe of the throughput section, its overrides, and notes on substitutions."""
        notes: list[str] = []
        recipe, overrides = self.recipe, list(self.throughput_overrides)
        if not recipe.exists() and recipe == OFFICIAL_RECIPE:
            notes.append(f"{OFFICIAL_RECIPE.relative_to(ROOT)} absent: {FALLBACK_RECIPE.relative_to(ROOT)} with "
                         + " ".join(FALLBACK_OVERRIDES))
            recipe, overrides = FALLBACK_RECIPE, [*FALLBACK_OVERRIDES, *overrides]
        if self.name == "cpu":
            overrides += _shrunk_heads(recipe, overrides)
            notes.append("CPU form: the recipe's model shrunk to a 32-wide 2-block ViT on 32/16 px crops")
        return recipe, overrides, notes


def _shrunk_heads(recipe: Path, overrides: list[str]) -> list[str]:
    """Overrides that narrow every head of ``recipe`` to the tiny CPU widths."""
    from sslkit.recipe import load_recipe

    resolved = load_recipe(recipe, overrides)
    shrunk = []
    for name in resolved.recipe.model.heads:
        fields = set(vars(resolved.spec(f"model.heads.{name}").params))
        shrunk += [f"model.heads.{name}.{key}={value}" for key, value in _TINY_WIDTHS.items() if key in fields]
    return shrunk


GPU = Form(
    name="gpu", device="cuda", peak_size=8192, peak_dtype="bf16",
    small_recipe="recipes/dinov2/vits14.yaml",
    small_overrides=["run.device=cuda", "data.dataset={name: synthetic, size: 100000, image_size: 224}",
                     "data.num_workers=8", *_NO_EVAL, *_LONG],
    small_batch=32, precisions=("bf16", "fp16"), warmup=3, steps=10,
    aug_sizes=(224, 96), n_local=8, aug_batch=128, aug_steps=8, aug_workers=12, aug_images=1024,
    strategy_overrides=["run.precision=bf16", "data.batch_size=32", "train.max_steps=4", "train.checkpoint_every=4",
                        "train.log_every=1"],
    compile_batch=64, compile_warmup=3, compile_on=True, compile_skip_note="",
    throughput_batches=(64, 32), throughput_steps=10, throughput_prefetch=3,
    throughput_overrides=["run.device=cuda", "run.precision=bf16",
                          "data.dataset={name: synthetic, size: 100000, image_size: 224}", "data.num_workers=12",
                          *_NO_EVAL, *_LONG],
    cuda_test_paths=["tests"],
    caps={"environment": 60, "throughput": 150, "precision": 75, "augmentation": 60, "strategies": 100,
          "cuda_tests": 150, "compile": 180},
)

CPU = Form(
    name="cpu", device="cpu", peak_size=512, peak_dtype="fp32",
    small_recipe="recipes/quickstart.yaml",
    small_overrides=["run.device=cpu", "run.num_threads=1", *_TINY_DATA, *_TINY_MODEL,
                     "model.heads.dino={name: dino, out_dim: 64, hidden_dim: 32, bottleneck_dim: 16}",
                     "losses.ibot={name: ibot, weight: 1.0, head: dino}", *_NO_EVAL, *_LONG],
    small_batch=4, precisions=("fp32", "bf16"), warmup=1, steps=1,
    aug_sizes=(48, 24), n_local=2, aug_batch=4, aug_steps=1, aug_workers=0, aug_images=8,
    strategy_overrides=["run.precision=fp32", "data.batch_size=4", "train.max_steps=2", "train.checkpoint_every=2",
                        "train.log_every=1"],
    compile_batch=4, compile_warmup=1, compile_on=False,
    compile_skip_note="inductor's C++ compile of even the tiny CPU model took 555 s (188 s of CPU) on 2 cores",
    throughput_batches=(4,), throughput_steps=1, throughput_prefetch=1,
    throughput_overrides=["run.device=cpu", "run.precision=fp32", "run.num_threads=1", *_TINY_DATA, *_TINY_MODEL,
                          *_NO_EVAL, *_LONG],
    cuda_test_paths=["tests/cuda"],
    caps={"environment": 60, "throughput": 120, "precision": 120, "augmentation": 120, "strategies": 240,
          "cuda_tests": 240, "compile": 120},
)
