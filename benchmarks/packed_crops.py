"""One backbone call for all crops: global and local crops packed into one token batch, on the CPU.

The student runs the ViT on the global crops (65 tokens each at 32 px, patch 4) and on the local
crops (17 tokens at 16 px). Packed, every token-wise layer (LayerNorm, qkv and output
projections, MLP, LayerScale) runs once on the concatenated tokens of both resolutions and only
attention runs per resolution (block-diagonal attention: a crop attends to its own tokens), as
the official DINOv2 does with xFormers' ``BlockDiagonalMask``. Three forms are timed, forward +
backward, interleaved in one process (median of ``--rounds``):

* ``separate``: the backbone twice, once per resolution (what sslkit does);
* ``packed``: token-wise layers once on ``[T, D]`` (``T`` = all tokens), attention on the two
  views ``[B_g, 65, D]`` / ``[B_l, 17, D]`` of it with SDPA, the outputs concatenated back;
* ``flex`` (with ``--flex``): ``torch.nn.attention.flex_attention`` over the whole packed sequence with a
  block-diagonal ``BlockMask`` (compiled; on the CPU this needs inductor's C++ backend).

Run::

    .venv/bin/python benchmarks/packed_crops.py --threads 2 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_hardware import describe
from torch import Tensor

from sslkit.components import BuildContext
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_blocks import Block
from sslkit_plugins.backbones.vit_params import ViTParams


def _attention_on_views(block: Block, x: Tensor, lengths: list[tuple[int, int]]) -> Tensor:
    """``block.attn`` on packed tokens ``x [T, D]`` made of ``count`` sequences of ``n`` tokens per entry."""
    attn, d = block.attn, x.shape[-1]
    heads = attn.num_heads
    qkv = attn.qkv(x)
    outs, offset = [], 0
    for count, n in lengths:
        part = qkv[offset : offset + count * n].view(count, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        outs.append(F.scaled_dot_product_attention(*part.unbind(0)).transpose(1, 2).reshape(count * n, d))
        offset += count * n
    return attn.proj(torch.cat(outs))


def forward_packed(vit: ViT, crops: list[Tensor]) -> list[Tensor]:
    """The ViT on several resolutions at once: token-wise layers on all tokens, attention per resolution."""
    tokens = [vit.prepare_tokens(c) for c in crops]
    lengths = [(t.shape[0], t.shape[1]) for t in tokens]
    x = torch.cat([t.reshape(-1, t.shape[-1]) for t in tokens])
    for block in vit.blocks:
        x = x + block.ls1(_attention_on_views(block, block.norm1(x), lengths))
        x = x + block.ls2(block.mlp(block.norm2(x)))
    x = vit.norm(x)
    return [part.view(count, n, -1)[:, 0] for part, (count, n) in
            zip(x.split([c * n for c, n in lengths]), lengths, strict=True)]


def forward_separate(vit: ViT, crops: list[Tensor]) -> list[Tensor]:
    return [vit(c).cls for c in crops]


def make_flex(vit: ViT, crops: list[Tensor]) -> Callable[[ViT, list[Tensor]], list[Tensor]]:
    """The packed forward with one compiled flex_attention call over a block-diagonal mask."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    per_crop = [(c.shape[-1] // vit.patch_size) ** 2 + 1 for c in crops]
    seq_ids = torch.cat([torch.arange(c.shape[0]).repeat_interleave(n) + i * 10**6
                         for i, (c, n) in enumerate(zip(crops, per_crop, strict=True))])
    total = seq_ids.numel()
    mask = create_block_mask(lambda b, h, q, k: seq_ids[q] == seq_ids[k], None, None, total, total, device="cpu")
    attend = torch.compile(flex_attention)

    def forward(model: ViT, images: list[Tensor]) -> list[Tensor]:
        tokens = [model.prepare_tokens(c) for c in images]
        lengths = [(t.shape[0], t.shape[1]) for t in tokens]
        x = torch.cat([t.reshape(-1, t.shape[-1]) for t in tokens])
        for block in model.blocks:
            h, d = block.attn.num_heads, x.shape[-1]
            qkv = block.attn.qkv(block.norm1(x)).view(1, total, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = attend(*qkv.unbind(0), block_mask=mask).transpose(1, 2).reshape(total, d)
            x = x + block.ls1(block.attn.proj(a))
            x = x + block.ls2(block.mlp(block.norm2(x)))
        x = model.norm(x)
        return [p.view(c, n, -1)[:, 0] for p, (c, n) in zip(x.split([c * n for c, n in lengths]), lengths, strict=True)]

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--flex", action="store_true", help="also time compiled flex_attention (slow to compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads) + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    torch.manual_seed(0)
    vit = ViT(ViTParams(size="tiny", patch_size=4, img_size=32, layerscale_init=1e-5), BuildContext())
    crops = [torch.randn(2 * args.batch, 3, 32, 32), torch.randn(8 * args.batch, 3, 16, 16)]
    forms: dict[str, Callable[[ViT, list[Tensor]], list[Tensor]]] = {
        "separate": forward_separate, "packed": forward_packed}
    if args.flex:
        forms["flex"] = make_flex(vit, crops)
    reference = [c.detach() for c in forward_separate(vit, crops)]
    for name, form in forms.items():
        for got, want in zip(form(vit, crops), reference, strict=True):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=f"{name} differs from separate")

    def step(form: Callable[[ViT, list[Tensor]], list[Tensor]]) -> None:
        sum(o.square().sum() for o in form(vit, crops)).backward()
        vit.zero_grad(set_to_none=True)

    for form in forms.values():
        step(form)  # warm-up (and compilation)
    times: dict[str, list[float]] = {name: [] for name in forms}
    for r in range(args.rounds):
        for name, form in list(forms.items())[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            step(form)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["separate"])
    print(f"student backbone forward + backward, {2 * args.batch} x 65 + {8 * args.batch} x 17 tokens, fp32:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<10}{median:8.3f} s  x{base / median:.3f} speed  {[round(v, 2) for v in values]}")
    print(describe(args.threads))


if __name__ == "__main__":
    main()
