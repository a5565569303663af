"""CPU-time A/B of ViT backbone variants on the backbone work of one DINOv2 training step, interleaved.

The step of ``recipes/cifar10/bench_vit_tiny.yaml`` without heads, losses and optimizer: the teacher's
forward on 128 global crops of 32 px (no gradients), the student's forward and backward on the same
crops with block-style masks on half of them and on 512 local crops of 16 px (ViT-tiny 192/12/3,
patch 4: 65- and 17-token sequences). The loss reads what the DINOv2 losses read: every CLS token and
the masked patch tokens. Variants (``--variants``, ``base`` always runs):

* ``base``: the ``vit`` backbone as it is (LayerScale folded into each branch's last linear layer).
* ``unfolded``: every block computes ``x + gamma * branch(x)`` with a separate multiply (the form
  before the fold).
* ``compile``: every block ``torch.compile(dynamic=False)``-d (inductor; one graph per crop shape);
  its compile time is printed.
* ``cls_last``: the last block computes its query, projection and MLP only on the rows the losses
  read (CLS of every crop, all tokens of the masked crops); keys and values on every token. A
  prototype of a change the engine would have to request (the backbone cannot know what the losses
  read); the same outputs where they are read.

Figures are CPU seconds of this process per step (``time.process_time``), which other jobs on the
cores move far less than wall time; medians over ``--rounds`` interleaved rounds (order reversed every
other round), each variant's ratio to ``base``; ``--profile`` adds a profile of one ``base`` step by
operator and input shape. Run (1 thread: CPU time = work)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/backbone_ab.py --threads 1 --rounds 4 \
        --variants unfolded cls_last
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_hardware import describe
from torch import Tensor

from sslkit.components import BuildContext
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_blocks import Block
from sslkit_plugins.backbones.vit_params import ViTParams

Step = Callable[[], Tensor]


def build() -> tuple[ViT, ViT]:
    """Student and teacher of the benchmark's size, the same initial weights for every variant."""
    torch.manual_seed(0)
    student = ViT(ViTParams(size="tiny", patch_size=4, img_size=32, layerscale_init=1e-5), BuildContext())
    teacher = copy.deepcopy(student).requires_grad_(False)
    return student, teacher


def _unfolded_forward(block: Block, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    x = x + block.ls1(block.attn(block.norm1(x), attn_mask))
    return x + block.ls2(block.mlp(block.norm2(x)))


def _cls_only_block(block: Block, x: Tensor) -> Tensor:
    """The block's output at the CLS token only ``[B, 1, D]``: keys and values from every token."""
    h = block.norm1(x)
    b, n, d = x.shape
    heads = block.attn.num_heads
    w, bias = block.attn.qkv.weight, block.attn.qkv.bias
    kv = F.linear(h, w[d:], bias[d:]).reshape(b, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
    q = F.linear(h[:, :1], w[:d], bias[:d]).reshape(b, 1, heads, d // heads).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(1, 2).reshape(b, 1, d)
    c = x[:, :1] + block.ls1(block.attn.proj(a))
    return c + block.ls2(block.mlp(block.norm2(c)))


def _cls_last(vit: ViT, images: Tensor, masks: Tensor | None, full_rows: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Normalised CLS ``[B, D]`` and, for ``full_rows``, patch tokens; the last block on what is read."""
    x = vit.prepare_tokens(images, masks)
    x = x[0] if isinstance(x, tuple) else x
    for block in vit.blocks[:-1]:
        x = block(x)
    last = vit.blocks[-1]
    if full_rows is None:
        return vit.norm(_cls_only_block(last, x))[:, 0], None
    full, other = last(x[full_rows]), _cls_only_block(last, x[~full_rows])
    cls = x.new_empty(x.shape[0], x.shape[-1])
    cls = cls.index_put((full_rows.nonzero()[:, 0],), full[:, 0])
    cls = cls.index_put(((~full_rows).nonzero()[:, 0],), other[:, 0])
    return vit.norm(cls), vit.norm(full[:, 1:])


def make_step(variant: str, global_crops: Tensor, local_crops: Tensor, masks: Tensor) -> Step:
    """One backbone step of ``variant``: teacher forward, student forward + backward, gradients dropped."""
    student, teacher = build()
    if variant == "unfolded":
        for vit in (student, teacher):
            for block in vit.blocks:
                block.forward = types.MethodType(_unfolded_forward, block)  # type: ignore[method-assign]
    if variant == "compile":
        for vit in (student, teacher):
            for block in vit.blocks:
                block.compile(dynamic=False)
    full_rows = masks.any(dim=1)

    def step() -> Tensor:
        if variant == "cls_last":
            with torch.no_grad():
                t_cls, _ = _cls_last(teacher, global_crops, None, full_rows)
            s_cls, s_patches = _cls_last(student, global_crops, masks, full_rows)
            l_cls, _ = _cls_last(student, local_crops, None, None)
            assert s_patches is not None
            loss = s_cls.sum() + s_patches[masks[full_rows]].sum() + l_cls.sum() + 0 * t_cls.sum()
        else:
            with torch.no_grad():
                t = teacher(global_crops)
            s, local = student(global_crops, masks), student(local_crops)
            loss = s.cls.sum() + s.patches[masks].sum() + local.cls.sum() + 0 * t.cls.sum()
        loss.backward()
        for p in student.parameters():
            p.grad = None
        return loss.detach()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="*", default=[],
                        choices=("unfolded", "compile", "cls_last"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true",
                        help="a torch.profiler table of one base step, by operator and input shape")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads) + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}", flush=True)
    torch.manual_seed(1)
    global_crops, local_crops = torch.randn(128, 3, 32, 32), torch.randn(512, 3, 16, 16)
    masks = torch.rand(128, 64) < 0.3
    masks[64:] = False  # half of the global crops masked
    steps = {name: make_step(name, global_crops, local_crops, masks) for name in ["base", *args.variants]}
    for name, step in steps.items():  # the first step (compilation for ``compile``): wall and CPU time
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        print(f"  first step {name}: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
              "(compilation included)", flush=True)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        order = list(steps.items()) if r % 2 == 0 else list(steps.items())[::-1]
        for name, step in order:
            cpu = time.process_time()
            step()
            times[name].append(time.process_time() - cpu)
        print(f"  round {r}: " + ", ".join(f"{n} {t[-1]:.2f}" for n, t in times.items())
              + f" CPU s (load {os.getloadavg()[0]:.2f})", flush=True)
    if args.rounds:
        base = statistics.median(times["base"])
        print(f"{'variant':<12}{'median CPU s/step':>19}{'x base speed':>14}  steps (CPU s)")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<12}{median:>19.2f}{base / median:>14.3f}  {[round(v, 2) for v in values]}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            steps["base"]()
        averages = prof.key_averages(group_by_input_shape=True)
        print(averages.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=36,
                             max_shapes_column_width=72))
    print(describe(args.threads))


if __name__ == "__main__":
    main()
