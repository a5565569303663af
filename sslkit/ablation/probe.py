"""Linear probe of a finished run's teacher backbone on the recipe's evaluation pair
(DINOv2, Oquab et al. 2023, section 7.1; the protocol is :func:`sslkit.eval.linear_probe`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sslkit.ablation.spec import AblationEval
from sslkit.components import BuildContext
from sslkit.data.eval_loader import build_eval_loader
from sslkit.engine.evaluation import eval_geometry
from sslkit.engine.restore import load_backbone
from sslkit.engine.strategy import pick_device
from sslkit.eval import extract_features, linear_probe


def probe_settings(config: AblationEval) -> dict[str, Any]:
    """The settings a stored probe result was computed with (a change means recomputing it)."""
    return {"epochs": config.linear_epochs, "lrs": list(config.linear_lrs), "patch_mean": config.patch_mean}


def probe_run(run_dir: Path, config: AblationEval) -> dict[str, Any]:
    """Linear-probe top-1/top-5 (percent), the selected lr and the settings, for the run in ``run_dir``.

    Features: the teacher backbone of the run's latest checkpoint on ``eval.train_data`` /
    ``eval.test_data``, preprocessed exactly as for the run's kNN evaluation, on the run's device;
    the probe's validation split and mini-batch order are seeded with the run's seed.
    """
    backbone, resolved, step = load_backbone(run_dir, "teacher")
    recipe = resolved.recipe
    device = pick_device(recipe.run.device, 0)
    backbone.to(device)
    image_size, mean, std = eval_geometry(resolved)
    features = []
    for which in ("train_data", "test_data"):
        spec = resolved.spec(f"eval.{which}")
        dataset = spec.component.factory(spec.params, BuildContext())
        loader = build_eval_loader(
            dataset,
            image_size=image_size,
            batch_size=recipe.eval.batch_size,
            num_workers=0,
            mean=mean,
            std=std,
            crop_fraction=recipe.eval.crop_fraction,
            device=device,
        )
        features.append(extract_features(backbone, loader, device=device, with_patch_mean=config.patch_mean))
    (train_x, train_y), (test_x, test_y) = features
    result = linear_probe(
        train_x.to(device),
        train_y,
        test_x.to(device),
        test_y,
        lrs=config.linear_lrs,
        epochs=config.linear_epochs,
        seed=recipe.run.seed,
    )
    return {
        "top1": result.test_top1,
        "top5": result.test_top5,
        "best_lr": result.best_lr,
        "val_top1": result.val_top1,
        "step": step,
        "settings": probe_settings(config),
    }
