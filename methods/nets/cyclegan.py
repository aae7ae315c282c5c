"""CycleGAN's networks (Zhu et al., ICCV 2017; junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py):
the ResNet generator (resnet_9blocks) and the 70x70 PatchGAN discriminator."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 downsamplings, n residual blocks, two transposed-conv upsamplings,
    7x7 conv to 3 channels, tanh; instance norm; images in [-1, 1]."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for k in (1, 2):
            layers += [nn.Conv2d(ngf * k, ngf * 2 * k, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * 2 * k),
                       nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for k in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * k, ngf * k // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * k // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % 4, -w % 4      # any size: pad to a multiple of 4, crop back
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return self.net(x)[..., :h, :w]


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: 4x4 convs 64-128-256 (stride 2), 512 (stride 1), then 1; LeakyReLU 0.2,
    instance norm after the first."""

    def __init__(self, ndf: int = 64):
        super().__init__()
        layers, ch = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], ndf
        for k, stride in ((2, 2), (4, 2), (8, 1)):
            layers += [nn.Conv2d(ch, ndf * k, 4, stride, 1), nn.InstanceNorm2d(ndf * k), nn.LeakyReLU(0.2, True)]
            ch = ndf * k
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
