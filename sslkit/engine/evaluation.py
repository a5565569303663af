"""kNN evaluation during and after training (weighted kNN of DINO, Caron et al. 2021, section 4.1, after Wu et al.
2018) on the recipe's labelled pair."""

from __future__ import annotations

from torch import nn

from sslkit.components import BuildContext, ImageDataset
from sslkit.data.eval_loader import build_eval_loader
from sslkit.data.subset import StridedSubset
from sslkit.engine.strategy import ProcessInfo
from sslkit.errors import SSLKitError
from sslkit.eval.features import extract_features
from sslkit.eval.knn import knn_classify
from sslkit.recipe import ResolvedRecipe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_geometry(resolved: ResolvedRecipe) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Evaluation image size and normalisation: the recipe's eval size (default: the global crop
    size) and the augmentation's mean and std (ImageNet statistics when it has none)."""
    params = resolved.spec("data.augmentation").params
    size = resolved.recipe.eval.image_size or int(getattr(params, "global_crop_size", 224))
    mean = tuple(getattr(params, "mean", IMAGENET_MEAN))
    std = tuple(getattr(params, "std", IMAGENET_STD))
    return size, mean, std


def check_labelled(dataset: object, role: str) -> None:
    """kNN and linear probes need at least two classes: one class would score 100% trivially
    (typically a tar archive whose single top folder, e.g. ``train/``, was taken as the class)."""
    classes = list(getattr(dataset, "classes", []) or [])
    if len(classes) < 2:
        raise SSLKitError(f"{role}: evaluation needs labelled images in at least 2 class folders, found "
                          f"{classes or 'none'}; for an archive holding train/<class>/..., set the dataset's "
                          "prefix (e.g. prefix: train)")


class OnlineEvaluator:
    """Runs kNN with the evaluated backbone (the EMA teacher, or the student of a distillation run) every
    ``eval.every`` steps and at the end."""

    def __init__(self, resolved: ResolvedRecipe, info: ProcessInfo) -> None:
        self.config = resolved.recipe.eval
        self.info = info
        self.enabled = self.config.train_data is not None and self.config.test_data is not None
        self._datasets: tuple[ImageDataset, ImageDataset] | None = None
        self._resolved = resolved
        self.image_size, self.mean, self.std = eval_geometry(resolved)

    def due(self, step: int) -> bool:
        return self.enabled and self.config.every > 0 and step % self.config.every == 0

    def _build(self) -> tuple[ImageDataset, ImageDataset]:
        if self._datasets is None:
            specs = [self._resolved.spec(f"eval.{which}") for which in ("train_data", "test_data")]
            train_set: ImageDataset
            test_set: ImageDataset
            train_set, test_set = (spec.component.factory(spec.params, BuildContext()) for spec in specs)
            check_labelled(train_set, "eval.train_data")
            check_labelled(test_set, "eval.test_data")
            if self.config.max_train_images is not None:
                train_set = StridedSubset(train_set, self.config.max_train_images)
            self._datasets = (train_set, test_set)
        return self._datasets

    def run(self, backbone: nn.Module, step: int) -> dict[str, float]:
        """kNN top-1 / top-5 (k = ``eval.k``) of ``backbone`` on the evaluation pair."""
        if not self.enabled:
            return {}
        train_set, test_set = self._build()
        features = []
        for dataset in (train_set, test_set):
            loader = build_eval_loader(dataset, image_size=self.image_size, batch_size=self.config.batch_size,
                                       num_workers=self._resolved.recipe.data.num_workers, mean=self.mean, std=self.std,
                                       crop_fraction=self.config.crop_fraction)
            features.append(extract_features(backbone, loader, device=self.info.device,
                                             with_patch_mean=self.config.with_patch_mean))
        (train_x, train_y), (test_x, test_y) = features
        result = knn_classify(train_x, train_y, test_x, test_y, ks=(self.config.k,),
                              temperature=self.config.temperature)[self.config.k]
        return {"knn_top1": result["top1"], "knn_top5": result["top5"]}
