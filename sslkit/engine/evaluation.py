"""kNN evaluation during and after training (reference section 9) on the recipe's labelled pair."""

from __future__ import annotations

from torch import nn

from sslkit.components import BuildContext
from sslkit.data.loader import build_eval_loader
from sslkit.engine.strategy import ProcessInfo
from sslkit.eval.features import extract_features
from sslkit.eval.knn import knn_classify
from sslkit.recipe import ResolvedRecipe


class OnlineEvaluator:
    """Runs kNN with the teacher backbone every ``eval.every`` steps and at the end."""

    def __init__(self, resolved: ResolvedRecipe, info: ProcessInfo) -> None:
        self.config = resolved.recipe.eval
        self.info = info
        self.enabled = self.config.train_data is not None and self.config.test_data is not None
        self._datasets = None
        self._resolved = resolved
        augmentation = resolved.recipe.data.augmentation
        self.image_size = self.config.image_size or int(augmentation.get("global_crop_size", 224))

    def due(self, step: int) -> bool:
        return self.enabled and self.config.every > 0 and step % self.config.every == 0

    def _build(self) -> tuple[object, object]:
        if self._datasets is None:
            specs = [self._resolved.spec(f"eval.{which}") for which in ("train_data", "test_data")]
            self._datasets = tuple(spec.component.factory(spec.params, BuildContext()) for spec in specs)
        return self._datasets

    def run(self, backbone: nn.Module, step: int) -> dict[str, float]:
        """kNN top-1 / top-5 (k = ``eval.k``) of ``backbone`` on the evaluation pair."""
        if not self.enabled:
            return {}
        train_set, test_set = self._build()
        features = []
        for dataset in (train_set, test_set):
            loader = build_eval_loader(dataset, image_size=self.image_size, batch_size=self.config.batch_size,
                                       num_workers=0)
            features.append(extract_features(backbone, loader, device=self.info.device))
        (train_x, train_y), (test_x, test_y) = features
        result = knn_classify(train_x, train_y, test_x, test_y, ks=(self.config.k,),
                              temperature=self.config.temperature)[self.config.k]
        return {"knn_top1": result["top1"], "knn_top5": result["top5"]}
