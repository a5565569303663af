"""BEiT-style block masking with stratified mask ratios, the DINOv2 default (BEiT, Bao et al. 2022, section 2.2 and
algorithm 1).

For each of the ``n`` crops the crop policy selected, a target count of masked patches is
drawn (a stratified ratio in ``[min_ratio, max_ratio]``, or a fixed ``ratio``). Rectangles are
then added until the target is reached or a placement round adds nothing. One round draws up
to ``max_attempts`` rectangles, each with

- area uniform in ``[min_num_patches, budget]`` where ``budget = min(remaining, max_fraction * N)``,
- aspect ratio ``h / w`` log-uniform in ``[min_aspect, 1 / min_aspect]``,
- ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``, kept only when
  ``h < H`` and ``w < W``, top-left corner uniform over the valid positions,

and the first one that adds between 1 and ``budget`` new patches is painted. Attempts within a
round are independent given the current mask, so drawing them all at once and keeping the
first valid one has the same distribution as trying them one after the other.

The implementation works on all crops together: each round draws every attempt of every
still-growing crop in one call, looks up the row and column indicators of the candidates in a
precomputed table, counts the already-masked patches under each candidate with one batched
matmul (row indicator x mask x column indicator) and paints the chosen rectangles as outer
products. The only Python loop is over rounds (about as many as rectangles per crop: ~15 on a
16x16 grid, ~20 on 37x37); no loop runs over crops or patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit.params import param


@dataclass
class BlockMaskerParams:
    """Parameters of the ``block`` masker (defaults: official DINOv2 / iBOT)."""

    stratified: bool = param(
        True,
        "Draw the i-th of the n selected crops' mask ratio uniformly in [r_i, r_(i+1)] with "
        "r = linspace(min_ratio, max_ratio, n + 1), then shuffle (official); false: every crop uses `ratio`.",
    )
    min_ratio: float = param(0.1, "Lower end of the stratified mask-ratio range.", ge=0.0, le=1.0)
    max_ratio: float = param(0.5, "Upper end of the stratified mask-ratio range.", ge=0.0, le=1.0)
    ratio: float = param(0.3, "Mask ratio of every crop when stratified is false.", ge=0.0, le=1.0)
    min_num_patches: int = param(4, "Smallest rectangle area drawn (patches).", ge=1)
    min_aspect: float = param(
        0.3, "Rectangle aspect ratio h/w is log-uniform in [min_aspect, 1/min_aspect].", gt=0.0, le=1.0
    )
    max_attempts: int = param(10, "Placement attempts per rectangle before the crop stops growing.", ge=1)
    max_fraction: float = param(
        0.5,
        "Cap on the new patches of a single rectangle, as a fraction of the N patches "
        "(official max_num_patches = 0.5 * N).",
        gt=0.0,
        le=1.0,
    )


def rectangle_shapes(
    budget: Tensor, area_u: Tensor, aspect_u: Tensor, min_num_patches: int, min_aspect: float
) -> tuple[Tensor, Tensor]:
    """Heights and widths (float, integral values, shaped like ``area_u``) of candidate rectangles.

    ``budget`` ``[a]`` is each crop's largest admissible number of new patches; ``area_u`` and
    ``aspect_u`` ``[a, attempts]`` are U[0, 1) draws mapped to area ~ U[min_num_patches, budget]
    and log(h / w) ~ U[log(min_aspect), -log(min_aspect)]; h = round(sqrt(area * aspect)),
    w = round(sqrt(area / aspect)).
    """
    area = min_num_patches + (budget[:, None] - min_num_patches) * area_u
    aspect = torch.exp(math.log(min_aspect) * (1.0 - 2.0 * aspect_u))
    return torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))


def _span_table(size: int, device: torch.device) -> Tensor:
    """``table[start * (size + 1) + length, i] = 1.0 if start <= i < start + length`` for start, length <= size."""
    index = torch.arange(size + 1, device=device)
    start, length = index.repeat_interleave(size + 1), index.repeat(size + 1)
    i = torch.arange(size, device=device)
    return ((i >= start[:, None]) & (i < (start + length)[:, None])).to(torch.float32)


def _place_round(
    masks: Tensor, budget: Tensor, span_table: Tensor, params: BlockMaskerParams, generator: torch.Generator
) -> Tensor:
    """One placement round on ``masks`` ``[a, H, W]`` (float32 0/1, updated in place).

    ``budget`` ``[a]``: the most new patches a rectangle may add (0 for crops that stopped);
    ``span_table`` is :func:`_span_table` of ``max(H, W)``. Returns the number of new patches
    of each crop ``[a]`` (0 where no attempt was valid).
    """
    n, height, width = masks.shape
    device = masks.device
    u = torch.rand(n, params.max_attempts, 4, generator=generator, device=device)
    shape = torch.stack(
        rectangle_shapes(budget, u[..., 0], u[..., 1], params.min_num_patches, params.min_aspect), -1
    )  # [a, attempts, 2]: (h, w)
    limits = torch.tensor([height, width], dtype=shape.dtype, device=device)
    fits = (shape < limits).all(-1)
    shape = shape * fits[..., None]  # rectangles that do not fit become empty, hence invalid
    start = torch.floor(u[..., 2:] * (limits - shape + 1))  # (top, left), uniform over the valid positions
    # Row and column indicators [a, attempts, 2, S] of start <= i < start + length, looked up.
    size = span_table.shape[1]
    spans = span_table.index_select(0, (start * (size + 1) + shape).long().view(-1)).view(n, -1, 2, size)
    in_rows, in_cols = spans[:, :, 0, :height], spans[:, :, 1, :width]
    # Already-masked patches under each candidate: rows^T . mask . cols, one batched matmul.
    covered = (torch.bmm(in_rows, masks) * in_cols).sum(-1)
    new = shape.prod(-1) - covered
    valid = (new > 0.5) & (new <= budget[:, None])
    first = valid.to(torch.uint8).argmax(1)  # the first valid attempt (0 if none)
    pick = torch.arange(n, device=device) * params.max_attempts + first  # flat index of (crop, first)
    placed = valid.view(-1)[pick]
    chosen = spans.view(-1, 2, size).index_select(0, pick)  # [a, 2, S]
    rows = chosen[:, 0, :height] * placed[:, None]
    # Paint: mask + rows x cols, clipped back to 0/1 where the rectangle overlaps masked patches.
    masks.addcmul_(rows[:, :, None], chosen[:, None, 1, :width]).clamp_(max=1.0)
    return new.view(-1)[pick] * placed


def block_masks(
    targets: Tensor, grid: tuple[int, int], params: BlockMaskerParams, generator: torch.Generator
) -> Tensor:
    """Block masks ``[n, H * W]`` (bool) with at most ``targets[i]`` masked patches in row ``i``.

    A crop stops at its target or at the first round in which no attempt is valid, so the
    realised count may fall short of the target (as in the official algorithm). Stopped crops
    get a zero budget (no attempt can be valid) and leave the working set once half of it
    has stopped, which keeps the number of copies small.
    """
    height, width = grid
    n = targets.shape[0]
    device = targets.device
    out = torch.zeros(n, height, width, dtype=torch.bool, device=device)
    max_per_rectangle = params.max_fraction * height * width
    rows = torch.nonzero(targets > 0).squeeze(1)  # the crops of ``out`` held in ``work``
    remaining = targets[rows].to(torch.float32)  # integral values, exact in float32
    work = torch.zeros(rows.numel(), height, width, dtype=torch.float32, device=device)
    span_table = _span_table(max(height, width), device)
    while rows.numel() > 0:
        added = _place_round(work, remaining.clamp(max=max_per_rectangle), span_table, params, generator)
        remaining = torch.where(added > 0, remaining - added, 0.0)  # a round without placement stops the crop
        growing = remaining > 0
        if 2 * int(growing.sum()) <= rows.numel():
            stopped = torch.nonzero(~growing).squeeze(1)
            out[rows[stopped]] = work[stopped] > 0
            keep = torch.nonzero(growing).squeeze(1)
            rows, remaining, work = rows[keep], remaining[keep], work[keep]
    return out.view(n, height * width)


class BlockMasker:
    """BEiT-style block masks with stratified (or fixed) mask ratios (BEiT, Bao et al. 2022, algorithm 1).

    ``generate(n, grid, generator)`` returns bool ``[n, h * w]``; every random draw comes from
    ``generator``, so the same generator state gives the same masks.
    """

    def __init__(self, params: BlockMaskerParams, ctx: BuildContext) -> None:
        if params.min_ratio > params.max_ratio:
            raise SSLKitError(f"block masker: min_ratio {params.min_ratio} is above max_ratio {params.max_ratio}")
        self.params = params

    def ratios(self, n: int, generator: torch.Generator) -> Tensor:
        """Target mask ratios ``[n]`` (float64): stratified and shuffled, or all ``ratio``."""
        p = self.params
        device = generator.device
        if not p.stratified:
            return torch.full((n,), p.ratio, dtype=torch.float64, device=device)
        edges = torch.linspace(p.min_ratio, p.max_ratio, n + 1, dtype=torch.float64, device=device)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        ratios = edges[:-1] + (edges[1:] - edges[:-1]) * u
        return ratios[torch.randperm(n, generator=generator, device=device)]

    def generate(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> Tensor:
        """Masks ``[n, h * w]`` for the ``n`` selected crops; crop ``i`` targets ``int(ratio_i * h * w)`` patches."""
        n_patches = grid[0] * grid[1]
        targets = (self.ratios(n, generator) * n_patches).long()
        return block_masks(targets, grid, self.params, generator)
