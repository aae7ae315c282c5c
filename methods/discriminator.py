"""Fully-convolutional domain discriminator (AdaptSegNet / ADVENT / IntraDA).

Tsai et al. CVPR 2018, Sec. 4.1; Vu et al. CVPR 2019, Sec. 4: five 4x4 convolutions with
stride 2, channels ndf, 2ndf, 4ndf, 8ndf, 1, LeakyReLU(0.2) between them. It outputs a
patch map of domain logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FCDiscriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int = 64):
        super().__init__()
        chans = [in_channels, ndf, ndf * 2, ndf * 4, ndf * 8]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def bce_to(logits: torch.Tensor, domain: float) -> torch.Tensor:
    """BCE of discriminator logits against a constant domain label (0 = source, 1 = target)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, domain))
