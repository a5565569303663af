"""ViT building blocks: attention, feed-forwards, LayerScale and both drop-path forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslkit_plugins.backbones.vit_blocks import (
    Attention,
    Block,
    LayerScale,
    Mlp,
    SwiGLU,
    _add_on_subset,
    drop_path,
    swiglu_hidden_dim,
)


@pytest.mark.parametrize("kernel", ["auto", "sdpa", "explicit"])
def test_attention_equals_explicit_softmax_attention(kernel: str) -> None:
    torch.manual_seed(0)
    dim, heads, b, n = 24, 3, 2, 5
    attn = Attention(dim, heads, qkv_bias=True, kernel=kernel)
    x = torch.randn(b, n, dim)
    w_q, w_k, w_v = attn.qkv.weight.split(dim)
    b_q, b_k, b_v = attn.qkv.bias.split(dim)
    hd = dim // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, n, heads, hd).transpose(1, 2)

    q, k, v = split(x @ w_q.T + b_q), split(x @ w_k.T + b_k), split(x @ w_v.T + b_v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    expected = (weights @ v).transpose(1, 2).reshape(b, n, dim) @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_auto_kernel_is_explicit_only_for_short_reduced_precision_cpu_sequences() -> None:
    attn = Attention(8, 2, qkv_bias=True, kernel="auto")
    short, long = torch.zeros(1, Attention.EXPLICIT_MAX_TOKENS, 8), torch.zeros(1, Attention.EXPLICIT_MAX_TOKENS + 1, 8)
    assert not attn._use_explicit(short)  # fp32: SDPA
    assert attn._use_explicit(short.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attn._use_explicit(short)
        assert not attn._use_explicit(long)
    assert Attention(8, 2, qkv_bias=True, kernel="explicit")._use_explicit(short)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not Attention(8, 2, qkv_bias=True, kernel="sdpa")._use_explicit(short)


def test_kernels_agree_under_bf16_autocast_with_gradients() -> None:
    torch.manual_seed(0)
    sdpa = Attention(32, 4, qkv_bias=True, kernel="sdpa")
    explicit = Attention(32, 4, qkv_bias=True, kernel="explicit")
    explicit.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, 17, 32)
    grads = []
    for attn in (sdpa, explicit):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attn(x)
        out.float().square().sum().backward()
        grads.append((out.float(), attn.qkv.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=5e-2, rtol=5e-2)


def test_attention_without_qkv_bias() -> None:
    assert Attention(8, 2, qkv_bias=False).qkv.bias is None


def test_mlp_and_swiglu_formulas() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    mlp = Mlp(6, 10)
    torch.testing.assert_close(mlp(x), F.gelu(x @ mlp.fc1.weight.T + mlp.fc1.bias) @ mlp.fc2.weight.T + mlp.fc2.bias)
    glu = SwiGLU(6, 8)
    assert glu.fc1.out_features == 16 and glu.fc2.in_features == 8
    a = x @ glu.fc1.weight[:8].T + glu.fc1.bias[:8]
    g = x @ glu.fc1.weight[8:].T + glu.fc1.bias[8:]
    torch.testing.assert_close(glu(x), (a * torch.sigmoid(a) * g) @ glu.fc2.weight.T + glu.fc2.bias)


def test_swiglu_hidden_dim_matches_dinov2() -> None:
    assert swiglu_hidden_dim(1536, 4.0) == 4096  # ViT-g
    assert swiglu_hidden_dim(384, 4.0) == 1024
    assert swiglu_hidden_dim(100, 4.0) == 272  # int(266.67) = 266, rounded up to a multiple of 8


def test_layerscale_multiplies_per_channel() -> None:
    ls = LayerScale(3, 0.5)
    torch.testing.assert_close(ls.gamma, torch.full((3,), 0.5))
    torch.testing.assert_close(ls(torch.ones(2, 3)), torch.full((2, 3), 0.5))


def test_drop_path_zeroes_whole_samples_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    x = torch.ones(20000, 3, 2)
    out = drop_path(x, 0.3)
    dropped = (out == 0).all(dim=(1, 2))
    kept = ~dropped
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert abs(dropped.float().mean().item() - 0.3) < 0.015
    assert abs(out.mean().item() - 1.0) < 0.03


def test_subset_residual_adds_the_branch_to_exactly_the_kept_samples() -> None:
    torch.manual_seed(0)
    x = torch.randn(10, 4, 3)
    out = _add_on_subset(x, lambda t, _mask: torch.ones_like(t), rate=0.4, attn_mask=None)
    changed = (out != x).any(dim=(1, 2))
    assert int(changed.sum()) == 6  # int(10 * 0.6)
    torch.testing.assert_close(out[changed] - x[changed], torch.full((6, 4, 3), 10 / 6))
    torch.testing.assert_close(out[~changed], x[~changed])


def test_subset_residual_is_unbiased_over_draws() -> None:
    torch.manual_seed(0)
    x = torch.zeros(5, 1, 1)
    total = sum(_add_on_subset(x, lambda t, _mask: torch.ones_like(t), rate=0.5, attn_mask=None) for _ in range(4000))
    torch.testing.assert_close(total / 4000, torch.ones(5, 1, 1), atol=0.05, rtol=0)


def _block(rate: float) -> Block:
    torch.manual_seed(0)
    return Block(16, 2, Mlp(16, 32), qkv_bias=True, layerscale_init=0.5, drop_path_rate=rate)


def test_block_is_deterministic_in_eval_and_equals_the_block_without_drop_path() -> None:
    x = torch.randn(6, 5, 16)
    with_drop, without = _block(0.4).eval(), _block(0.0).eval()
    torch.testing.assert_close(with_drop(x), without(x))
    torch.testing.assert_close(with_drop(x), with_drop(x))
    expected = x + without.ls1(without.attn(without.norm1(x)))
    expected = expected + without.ls2(without.mlp(without.norm2(expected)))
    torch.testing.assert_close(without(x), expected)


def test_block_drop_path_is_random_in_training_for_both_forms() -> None:
    x = torch.randn(8, 5, 16)
    for rate in (0.05, 0.4):  # per-sample mask, then the subset form (rate > 0.1)
        block = _block(rate).train()
        outs = [block(x) for _ in range(6)]
        assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_block_without_layerscale_has_no_gamma() -> None:
    block = Block(8, 2, Mlp(8, 16), qkv_bias=True, layerscale_init=None, drop_path_rate=0.0)
    assert not any(name.endswith("gamma") for name, _ in block.named_parameters())


@pytest.mark.parametrize("ffn", [Mlp, SwiGLU])
def test_block_folded_layerscale_gives_the_gradients_of_the_separate_multiply(ffn: type[nn.Module]) -> None:
    """The block folds each LayerScale into its branch's last linear layer: output and every parameter's
    gradient (gammas, weights, biases) equal those of ``x + ls(branch(x))`` computed step by step."""
    torch.manual_seed(0)
    block = Block(16, 2, ffn(16, 32), qkv_bias=True, layerscale_init=0.5, drop_path_rate=0.0)
    with torch.no_grad():
        block.ls1.gamma.uniform_(0.1, 2.0)
        block.ls2.gamma.uniform_(0.1, 2.0)
    x = torch.randn(3, 5, 16)
    weights = torch.randn(3, 5, 16)
    (block(x) * weights).sum().backward()
    folded = {name: p.grad.clone() for name, p in block.named_parameters()}
    block.zero_grad()
    y = x + block.ls1(block.attn(block.norm1(x)))  # no out_scale: the plain projection, then LayerScale
    y = y + block.ls2(block.mlp(block.norm2(y)))
    (y * weights).sum().backward()
    for name, p in block.named_parameters():
        torch.testing.assert_close(folded[name], p.grad, msg=lambda m, name=name: f"{name}: {m}")
