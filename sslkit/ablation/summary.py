"""The comparison table of an ablation: one row per variant, mean ± std over its seeds.

The standard deviation is the sample standard deviation (``ddof = 1``) over the seeds that
reported the figure; with a single seed it is undefined (``nan``, shown as ``n=1``). Every
column of ``summary.md`` is also in ``summary.csv`` as ``<column>_mean`` and ``<column>_std``,
with ``<column>_n`` the number of seeds behind it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sslkit.ablation.records import RunRecord
from sslkit.ablation.spec import Ablation, Variant
from sslkit.monitoring.progress import format_duration

#: Accuracy columns in display order, with their headers.
ACCURACY_COLUMNS = {
    "knn_top1": "kNN top-1 (%)",
    "knn_top5": "kNN top-5 (%)",
    "linear_top1": "linear top-1 (%)",
    "linear_top5": "linear top-5 (%)",
}
SHOWN_ACCURACIES = ("knn_top1", "linear_top1")  # the others are in the CSV only


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one figure over ``n`` seeds (``nan`` when undefined)."""

    mean: float
    std: float
    n: int


def mean_std(values: Iterable[float]) -> Stat:
    """:class:`Stat` of the finite ``values`` (missing figures, ``nan``, are left out)."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    n = len(finite)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return Stat(mean, std, n)


@dataclass
class VariantRow:
    """One row of the table: a variant, what it changes, and its statistics by column."""

    variant: Variant
    seeds: tuple[int, ...]  # seeds that reported anything
    stats: dict[str, Stat]  # column -> statistics; columns: loss/<term>, accuracies, images_per_s, wall_s


def loss_terms(records: Iterable[RunRecord]) -> list[str]:
    """Every loss term logged by any run, sorted, with ``total`` last."""
    terms = sorted({t for r in records for t in r.final_losses} - {"total"})
    return [*terms, "total"]


def summarise(ablation: Ablation, records: Sequence[RunRecord]) -> list[VariantRow]:
    """One row per variant of ``ablation`` (in file order) from the runs' records."""
    terms = loss_terms(records)
    rows = []
    for variant in ablation.variants:
        mine = sorted((r for r in records if r.variant == variant.name), key=lambda r: r.seed)
        stats = {f"loss/{t}": mean_std(r.final_losses.get(t, math.nan) for r in mine) for t in terms}
        for column in ACCURACY_COLUMNS:
            stats[column] = mean_std(r.metrics.get(column, math.nan) for r in mine)
        stats["images_per_s"] = mean_std(r.images_per_s for r in mine)
        stats["wall_s"] = mean_std(r.wall_s for r in mine)
        rows.append(VariantRow(variant, tuple(r.seed for r in mine), stats))
    return rows


def format_stat(stat: Stat, digits: int) -> str:
    """``mean ± std`` with ``digits`` decimals; ``mean (n=1)`` for one seed; ``-`` when missing."""
    if stat.n == 0:
        return "-"
    if stat.n == 1:
        return f"{stat.mean:.{digits}f} (n=1)"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def _present(rows: Sequence[VariantRow], column: str) -> bool:
    return any(row.stats[column].n for row in rows)


def _columns(rows: Sequence[VariantRow]) -> list[str]:
    losses = [c for c in rows[0].stats if c.startswith("loss/")] if rows else []
    return [*losses, *ACCURACY_COLUMNS, "images_per_s", "wall_s"]


def render_markdown(
    ablation: Ablation,
    rows: Sequence[VariantRow],
    output_dir: str,
    plots: Sequence[str],
    unfinished: Sequence[str] = (),
) -> str:
    """``summary.md``: what was compared, how, and the table; ``unfinished`` lists the runs left out."""
    lines = [f"# Ablation `{ablation.name}`", ""]
    if ablation.spec.description:
        lines += [ablation.spec.description.strip(), ""]
    lines.append(f"- base recipe: `{ablation.spec.recipe}` (relative to `{ablation.path}`)")
    for label, overrides in (("every variant", ablation.common), ("command line", ablation.command_line)):
        if overrides:
            lines.append(f"- {label}: " + ", ".join(f"`{o.render()}`" for o in overrides))
    lines.append(f"- seeds: {', '.join(str(s) for s in ablation.seeds)}; figures are mean ± sample std over seeds")
    lines.append(
        f"- TensorBoard: `tensorboard --logdir {output_dir}` (runs `<variant>/seed_<s>`, seed means `<variant>/mean`)"
    )
    if unfinished:
        lines.append(f"- **not finished, left out:** {', '.join(unfinished)}")
    lines += ["", *_table(rows), ""]
    lines.append(
        "Losses are the last logged values; kNN is measured by each run at its end on the recipe's "
        "eval pair; images/s is the median logged training throughput; wall time covers training and "
        "evaluation."
    )
    if plots:
        lines += ["", *(f"![{name}]({name})" for name in plots)]
    return "\n".join(lines) + "\n"


def _table(rows: Sequence[VariantRow]) -> list[str]:
    losses = [c for c in _columns(rows) if c.startswith("loss/")]
    accuracies = [c for c in SHOWN_ACCURACIES if _present(rows, c)]
    header = [
        "variant",
        "differs from base",
        "seeds",
        *losses,
        *(ACCURACY_COLUMNS[c] for c in accuracies),
        "images/s",
        "wall time",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        wall = row.stats["wall_s"]
        wall_text = "-" if wall.n == 0 else format_duration(wall.mean) + (f" ± {wall.std:.0f} s" if wall.n > 1 else "")
        cells = [
            row.variant.name,
            f"`{row.variant.describe()}`",
            str(len(row.seeds)),
            *(format_stat(row.stats[c], 4) for c in losses),
            *(format_stat(row.stats[c], 2) for c in accuracies),
            format_stat(row.stats["images_per_s"], 1),
            wall_text,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def render_csv(rows: Sequence[VariantRow]) -> str:
    """``summary.csv``: variant, overrides, seeds, then ``<column>_mean/_std/_n`` for every column."""
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["variant", "overrides", "seeds", *(f"{c}_{part}" for c in columns for part in ("mean", "std", "n"))]
    )
    for row in rows:
        values: list[str | int | float] = [
            row.variant.name,
            row.variant.describe(),
            " ".join(str(s) for s in row.seeds),
        ]
        for column in columns:
            stat = row.stats[column]
            values += [
                "" if math.isnan(stat.mean) else repr(stat.mean),
                "" if math.isnan(stat.std) else repr(stat.std),
                stat.n,
            ]
        writer.writerow(values)
    return buffer.getvalue()
