"""MML's pieces: the attention block against its formulas, the δ ramps."""
import math

import pytest
import torch
import torch.nn.functional as F

from udalab.methods.attention import AttentionBlock, ChannelAttention, KernelAttention
from udalab.methods.ramps import ramp


def test_kernel_attention_equals_the_quadratic_form_of_its_formula():
    torch.manual_seed(0)
    kam = KernelAttention(16)
    x = torch.randn(2, 16, 5, 7)
    q = F.softplus(kam.q(x)).flatten(2)       # (B, C', N)
    k = F.softplus(kam.k(x)).flatten(2)
    v = kam.v(x).flatten(2)                    # (B, C, N)
    sim = torch.einsum("bin,bim->bnm", q, k)   # Q~_n · K~_m for every pair: N x N
    naive = torch.einsum("bnm,bcm->bcn", sim / sim.sum(-1, keepdim=True), v).view(2, 16, 5, 7)
    assert torch.allclose(kam.attend(x), naive, atol=1e-5)
    y, out = kam(x)
    assert torch.equal(y, x)                   # γ starts at 0: a fresh block is the identity
    kam.gamma.data.fill_(0.5)
    assert torch.allclose(kam(x)[0], x + 0.5 * naive, atol=1e-5)


def test_channel_attention_equals_its_formula():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 4, 3)
    X = x.flatten(2)
    A = torch.zeros(2, 6, 6)
    for b in range(2):
        for i in range(6):
            e = torch.stack([X[b, i] @ X[b, j] for j in range(6)])
            A[b, i] = torch.softmax(e.max() - e, dim=0)
    expected = (A @ X).view_as(x)
    assert torch.allclose(ChannelAttention.attend(x), expected, atol=1e-5)


def test_attention_block_sums_both_and_keeps_their_maps():
    torch.manual_seed(2)
    block = AttentionBlock(16)
    block.kam.gamma.data.fill_(1.0)
    block.cam.gamma.data.fill_(2.0)
    x = torch.randn(1, 16, 4, 4)
    y = block(x)
    ok, oc = block.maps
    assert torch.allclose(y, (x + ok) + (x + 2 * oc), atol=1e-5)


@pytest.mark.parametrize("shape, values", [
    ("linear", (0.2, 0.6, 1.0)),
    ("sigmoid", (0.2 + 0.8 * math.exp(-5), 0.2 + 0.8 * math.exp(-1.25), 1.0)),
    ("step", (0.2, 1.0, 1.0)),
])
def test_delta_ramp_at_start_middle_and_end(shape, values):
    got = tuple(ramp(p, 0.2, 1.0, shape) for p in (0.0, 0.5, 1.0))
    assert got == pytest.approx(values)
    assert ramp(-1, 0.2, 1.0, shape) == pytest.approx(values[0]) and ramp(2, 0.2, 1.0, shape) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ramp shape"):
        ramp(0.5, 0.2, 1.0, "cosine")
