"""Fully-convolutional domain discriminator (AdaptSegNet / ADVENT / IntraDA).

Tsai et al. CVPR 2018, Sec. 4.1; Vu et al. CVPR 2019, Sec. 4: five 4x4 convolutions with
stride 2, channels ndf, 2ndf, 4ndf, 8ndf, 1, LeakyReLU(0.2) between them. It outputs a
patch map of domain logits, each judging a square of `receptive_field(layers)` pixels of its
input: 94 px for the reference's four layers before the classifier, on maps of 1024 x 512
(ADVENT upsamples G's output to the input size first), i.e. 9 % of the width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def receptive_field(layers: int) -> int:
    """Side in pixels of the input square one output logit sees: `layers` 4x4 stride-2 convolutions
    and the 4x4 stride-2 classifier (each adds 3 input steps of the stride so far)."""
    return 1 + 3 * (2 ** (layers + 1) - 1)


def smallest_input(layers: int = 4) -> int:
    """The smallest input side `layers` stride-2 convolutions leave the stride-2 classifier a map to run on."""
    return 2 ** (layers + 1)


class FCDiscriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int = 64, layers: int = 4):
        super().__init__()
        chans = [in_channels] + [ndf * 2 ** i for i in range(layers)]
        convs: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            convs += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        convs.append(nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def bce_to(logits: torch.Tensor, domain: float) -> torch.Tensor:
    """BCE of discriminator logits against a constant domain label (0 = source, 1 = target)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, domain))
