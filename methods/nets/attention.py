"""MML's attention block: kernel attention (KAM, position) + channel attention (CAM), summed.

Kernel attention (Li et al., Multi-Attention-Network; MML Sec. 3): Q, K by 1x1 convs C -> C/8,
V by a 1x1 conv C -> C; with the softplus kernel Q~ = softplus(Q), K~ = softplus(K), every
position n attends to every position m in linear time:

    out_n = Q~_n^T (Σ_m K~_m V_m^T) / (Q~_n · Σ_m K~_m),        y = x + γ_K · out

Channel attention (DANet's CAM, no convolutions): X as C x N, energy = X X^T,
A = softmax(rowmax(energy) - energy), y = x + γ_C · (A X). γ_K and γ_C are learnable and
start at 0, so a fresh block is the identity. The block returns KAM(x) + CAM(x) and keeps
both attention outputs of its last call (`maps`) for MML's L_att.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KernelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(channels // reduction, 1)
        self.q, self.k = nn.Conv2d(channels, inner, 1), nn.Conv2d(channels, inner, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output `out` (B, C, H, W), before the residual."""
        b, c, h, w = x.shape
        q = F.softplus(self.q(x)).flatten(2)                          # (B, C', N)
        k = F.softplus(self.k(x)).flatten(2)                          # (B, C', N)
        v = self.v(x).flatten(2)                                      # (B, C, N)
        kv = torch.einsum("bin,bcn->bic", k, v)                       # Σ_m K~_m V_m^T: (B, C', C)
        num = torch.einsum("bin,bic->bcn", q, kv)                     # Q~_n^T (Σ_m K~_m V_m^T)
        den = torch.einsum("bin,bi->bn", q, k.sum(-1)).clamp_min(1e-12)  # Q~_n · Σ_m K~_m
        return (num / den.unsqueeze(1)).view(b, c, h, w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.attend(x)
        return x + self.gamma * out, out


class ChannelAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def attend(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2)                                           # (B, C, N)
        energy = flat @ flat.transpose(1, 2)                          # (B, C, C)
        attention = F.softmax(energy.amax(-1, keepdim=True) - energy, dim=-1)
        return (attention @ flat).view(b, c, h, w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.attend(x)
        return x + self.gamma * out, out


class AttentionBlock(nn.Module):
    """KAM(x) + CAM(x); `maps` = (KAM's out, CAM's out) of the last call (for L_att)."""

    def __init__(self, channels: int):
        super().__init__()
        self.kam, self.cam = KernelAttention(channels), ChannelAttention()
        self.maps: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (yk, ok), (yc, oc) = self.kam(x), self.cam(x)
        self.maps = (ok, oc)
        return yk + yc
