"""TensorBoard layout of an ablation directory.

``tensorboard --logdir DIR`` finds one run per directory holding event files:

- ``<variant>/seed_<s>``: written by the trainer while the run trains (every scalar, images,
  the recipe as text, and hparams with ``name`` = the variant);
- ``<variant>/mean``: written here, the mean over seeds of every ``loss/*`` and ``eval/*``
  curve under the same tags (so it overlays the seeds' charts), and hparams holding the
  variant's overridden keys with the final figures, so the HParams dashboard compares variants.

The ``mean`` runs are rewritten (old event files removed) every time the summary is rebuilt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sslkit.ablation.plots import mean_curve
from sslkit.ablation.records import RunRecord
from sslkit.ablation.spec import render_value
from sslkit.ablation.summary import VariantRow

MEAN_RUN = "mean"


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return "absent"
        node = node[part]
    return node


def hparam_value(value: Any) -> bool | int | float | str:
    """A recipe value as an hparam (TensorBoard takes bool, int, float and str)."""
    if isinstance(value, bool | int | float | str):
        return value
    return render_value(value)


def write_mean_runs(
    output_dir: Path, rows: Sequence[VariantRow], records: Sequence[RunRecord], recipes: Mapping[str, Mapping[str, Any]]
) -> list[Path]:
    """Write ``<variant>/mean`` for every variant with records; ``recipes`` maps a variant to its
    resolved recipe data (for the hparams). Returns the directories written."""
    from torch.utils.tensorboard import SummaryWriter

    keys = sorted({o.key for row in rows for o in row.variant.overrides})
    written = []
    for row in rows:
        mine = [r for r in records if r.variant == row.variant.name]
        if not mine:
            continue
        run_dir = output_dir / row.variant.name / MEAN_RUN
        run_dir.mkdir(parents=True, exist_ok=True)
        for old in run_dir.glob("events.out.tfevents.*"):
            old.unlink()
        with SummaryWriter(log_dir=str(run_dir)) as writer:
            for prefix, attribute in (("loss", "loss_curves"), ("eval", "eval_curves")):
                names = sorted({name for r in mine for name in getattr(r, attribute)})
                for name in names:
                    steps, mean, _ = mean_curve(
                        [getattr(r, attribute)[name] for r in mine if name in getattr(r, attribute)]
                    )
                    for step, value in zip(steps.tolist(), mean.tolist(), strict=True):
                        writer.add_scalar(f"{prefix}/{name}", value, step)
            recipe = recipes.get(row.variant.name, {})
            hparams = {
                "variant": row.variant.name,
                "seeds": len(mine),
                **{key: hparam_value(_lookup(recipe, key)) for key in keys},
            }
            final = {
                f"hparam/{column.replace('/', '_')}": stat.mean
                for column, stat in row.stats.items()
                if stat.n and not math.isnan(stat.mean)
            }
            writer.add_hparams(hparams, final, run_name=".")
        written.append(run_dir)
    return written
