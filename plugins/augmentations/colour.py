"""Batched colour augmentation of crops on the training device: jitter, grayscale, solarisation.

Two implementations of torchvision's ``ColorJitter`` (brightness, contrast, saturation, hue in
a per-crop random order) followed by ``RandomGrayscale``:

- :func:`affine_colour_maps` (fast): brightness, contrast and saturation are affine maps of
  the RGB vector, and the hue shift is approximated by a rotation of the RGB cube about its
  grey axis (angle = shift x 2 pi; exact at 0 and preserving the mean intensity and the chroma
  magnitude, where HSV's hue shift preserves max and min). Composed per crop in the crop's own
  order, with grayscale and the normalisation folded in, they give one 3 x 3 matrix and offset
  per crop, applied in a single batched matrix product and clamped once at the end (torchvision
  clamps after each operation; the results differ only where an intermediate value leaves
  [0, 1]). This is a handful of passes over the pixels instead of dozens.
- :func:`sequential_colour` (faithful): ``kornia.enhance`` operations one after the other
  with per-crop factors, in each crop's random order, clamping after each, then grayscale.

Gray is ITU-R 601 luma (0.299, 0.587, 0.114), as in torchvision, PIL and kornia.
"""

from __future__ import annotations

import math

import kornia
import torch
from torch import Tensor

from sslkit_plugins.augmentations.draw import BRIGHTNESS, CONTRAST, HUE, SATURATION

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def _identity_factors(factors: Tensor, jitter: Tensor) -> Tensor:
    """Replace the factors of crops without jitter by the identity (1, 1, 1, 0)."""
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=factors.dtype, device=factors.device)
    return torch.where(jitter[:, None], factors, identity)


def hue_rotation(shift: Tensor) -> Tensor:
    """Rotation matrices ``[N, 3, 3]`` about the grey axis (1, 1, 1) by ``shift`` turns.

    Rodrigues' formula R = cos(a) I + sin(a) [n]x + (1 - cos(a)) n n^T with n = (1, 1, 1) / sqrt(3);
    a positive shift turns red towards yellow and green, like a positive HSV hue shift.
    """
    angle = shift * (2 * math.pi)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    eye = torch.eye(3, dtype=shift.dtype, device=shift.device)
    cross = torch.tensor(
        [[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=shift.dtype, device=shift.device
    ) / math.sqrt(3)
    outer = torch.full((3, 3), 1 / 3, dtype=shift.dtype, device=shift.device)
    return cos * eye + sin * cross + (1 - cos) * outer


def affine_colour_maps(
    channel_means: Tensor, jitter: Tensor, factors: Tensor, order: Tensor, grayscale: Tensor, mean: Tensor, std: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-crop matrices ``A [N, 3, 3]`` and offsets ``t [N, 3]`` with ``normalise(colour(x)) = A x + t``.

    ``channel_means [N, 3]``: mean RGB of each crop (in [0, 1]), which the contrast operation
    needs (it blends with the mean gray of the crop as it is at that point of the order).
    ``jitter``, ``grayscale``: ``[N]`` bool; ``factors``, ``order``: ``[N, 4]`` as drawn.
    ``mean``, ``std``: ``[3]`` normalisation. Clamping to [0, 1] happens after the map; in
    normalised space it is a per-channel clamp to ``[(0 - mean) / std, (1 - mean) / std]``.
    """
    n, device, dtype = channel_means.shape[0], channel_means.device, channel_means.dtype
    factors = _identity_factors(factors.to(device, dtype), jitter.to(device))
    order = order.to(device)
    eye = torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3)
    gray = torch.tensor(GRAY_WEIGHTS, dtype=dtype, device=device)
    to_gray = gray.expand(3, 3)  # every output channel = luma
    b, c, s = (factors[:, k, None, None] for k in (BRIGHTNESS, CONTRAST, SATURATION))
    ops = torch.stack(
        [
            b * eye,  # brightness: x * b
            c * eye,  # contrast: x * c + (1 - c) * mean gray (offset below)
            s * eye + (1 - s) * to_gray,  # saturation: blend with the gray image
            hue_rotation(factors[:, HUE]),
        ],
        dim=1,
    )  # [N, 4, 3, 3]
    matrix = eye.clone()
    offset = torch.zeros(n, 3, dtype=dtype, device=device)
    rows = torch.arange(n, device=device)
    for slot in range(4):
        op = order[:, slot]
        step = ops[rows, op]
        current_gray_mean = ((matrix @ channel_means[:, :, None]).squeeze(-1) + offset) @ gray
        contrast_offset = ((1 - factors[:, CONTRAST]) * current_gray_mean)[:, None] * (op == CONTRAST)[:, None]
        matrix = step @ matrix
        offset = (step @ offset[:, :, None]).squeeze(-1) + contrast_offset
    make_gray = grayscale.to(device)[:, None, None]
    matrix = torch.where(make_gray, to_gray @ matrix, matrix)
    offset = torch.where(make_gray[:, :, 0], offset @ to_gray.T, offset)
    std, mean = std.to(device, dtype), mean.to(device, dtype)
    return matrix / std[:, None], (offset - mean) / std


def _brightness(x: Tensor, factor: Tensor) -> Tensor:
    # kornia's multiplicative ``adjust_contrast`` is torchvision's brightness: clamp(x * factor).
    return kornia.enhance.adjust_contrast(x, factor)


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    return kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor)


def _saturation(x: Tensor, factor: Tensor) -> Tensor:
    return kornia.enhance.adjust_saturation_with_gray_subtraction(x, factor)


def _hue(x: Tensor, shift: Tensor) -> Tensor:
    return kornia.enhance.adjust_hue(x, shift * (2 * math.pi))  # kornia takes radians


_OPERATIONS = {BRIGHTNESS: _brightness, CONTRAST: _contrast, SATURATION: _saturation, HUE: _hue}


def sequential_colour(x: Tensor, jitter: Tensor, factors: Tensor, order: Tensor, grayscale: Tensor) -> Tensor:
    """torchvision's ColorJitter then RandomGrayscale on ``x [N, 3, H, W]`` in [0, 1], in place.

    In each of the four slots, every jittered crop applies the operation its order names there;
    crops are grouped by operation so that each kornia call sees a batch. Masks and orders must
    be CPU tensors (the groups are formed without a device synchronisation).
    """
    factors = factors.to(x.device, x.dtype)
    for slot in range(4):
        for op, apply in _OPERATIONS.items():
            rows = torch.nonzero(jitter & (order[:, slot] == op)).squeeze(1)
            if rows.numel():
                rows = rows.to(x.device)
                x.index_copy_(0, rows, apply(x.index_select(0, rows), factors.index_select(0, rows)[:, op]))
    rows = torch.nonzero(grayscale).squeeze(1)
    if rows.numel():
        rows = rows.to(x.device)
        gray = kornia.color.rgb_to_grayscale(x.index_select(0, rows))
        x.index_copy_(0, rows, gray.expand(-1, 3, -1, -1))
    return x


def solarize_(x: Tensor, rows: Tensor, threshold: Tensor, reflect: Tensor) -> Tensor:
    """Solarise crops ``rows`` of ``x`` in place: values >= ``threshold`` become ``reflect - x``.

    ``threshold``, ``reflect``: per-channel ``[3]`` (0.5 and 1 in [0, 1] space; in normalised
    space ``(t - mean) / std`` and ``(1 - 2 mean) / std``).
    """
    if rows.numel():
        rows = rows.to(x.device)
        threshold = threshold.to(x.device, x.dtype)[:, None, None]
        reflect = reflect.to(x.device, x.dtype)[:, None, None]
        sub = x.index_select(0, rows)
        x.index_copy_(0, rows, torch.where(sub >= threshold, reflect - sub, sub))
    return x
