"""Two-stream RGB-T segmentation networks of MS-UDA and MML: an RGB and a thermal ResNet encoder
(the thermal conv1 the mean of the RGB filters) through one shared decoder of DeBlocks, with MML's
attention blocks (methods/nets/attention.py: kernel and channel attention maps) at its four scales.
MS-UDA's RTFNet-style decoder is not public in detail: the same DeBlock decoder, without attention,
keeps the two methods' comparison about their losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from udalab.methods.nets.attention import AttentionBlock
from udalab.methods.nets.deeplab import ResNetFeatures, upsample


def _cbr(cin, cout, k=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class DeBlock(nn.Module):
    """A 3x3 stride-2 deconvolution wrapped by 1x1 convolutions."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cin // 2, 8)
        self.body = nn.Sequential(_cbr(cin, mid),
                                  nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1, bias=False),
                                  nn.BatchNorm2d(mid), nn.ReLU(True), _cbr(mid, cout))

    def forward(self, x):
        return self.body(x)


class SharedDecoder(nn.Module):
    """Attention block at each of the encoder's 4 coarsest scales (strides 4 ... 32, coarse to fine),
    DeBlocks between them; `maps()` = the attention maps of the last call, fine to coarse.
    attention=False: the same DeBlock decoder without attention blocks (MS-UDA's)."""

    def __init__(self, channels: list[int], dim: int, num_classes: int, attention: bool = True):
        super().__init__()
        channels = channels[-4:]
        self.lateral = nn.ModuleList([_cbr(c, dim) for c in channels])
        self.attention = nn.ModuleList([AttentionBlock(dim) if attention else nn.Identity() for _ in channels])
        self.up = nn.ModuleList([DeBlock(dim, dim) for _ in channels[1:]])
        self.head = nn.Sequential(DeBlock(dim, dim), nn.Conv2d(dim, num_classes, 1))

    def forward(self, feats):
        feats = feats[-4:]
        x = self.attention[-1](self.lateral[-1](feats[-1]))
        for k in range(len(feats) - 2, -1, -1):
            up = self.up[k](x)
            lat = self.lateral[k](feats[k])
            if up.shape[-2:] != lat.shape[-2:]:
                up = F.interpolate(up, size=lat.shape[-2:], mode="bilinear", align_corners=False)
            x = self.attention[k](lat + up)
        return self.head(x)                   # stride 2

    def maps(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [block.maps for block in self.attention if isinstance(block, AttentionBlock)]


class MMLNet(nn.Module):
    """Two encoders, one shared decoder (MML's; MS-UDA's with attention=False)."""

    def __init__(self, depth: int, pretrained: str, decoder_dim: int, num_classes: int, attention: bool = True):
        super().__init__()
        self.E_rgb = ResNetFeatures(depth, pretrained, 3)
        self.E_th = ResNetFeatures(depth, pretrained, 1)   # conv1: the mean RGB filter
        self.D = SharedDecoder(self.E_rgb.channels, decoder_dim, num_classes, attention)

    # corners not aligned in MML's and MS-UDA's networks: no reference code
    def thermal(self, x_rgbt: torch.Tensor) -> torch.Tensor:
        """Inference: the thermal stream only (channel 3 of an R, G, B, T input)."""
        return upsample(self.D(self.E_th(x_rgbt[:, 3:4])), x_rgbt.shape[-2:], align_corners=False)

    def rgb(self, x_rgbt: torch.Tensor) -> torch.Tensor:
        """The RGB stream (training, and the per-stream scores of Table 1)."""
        return upsample(self.D(self.E_rgb(x_rgbt[:, :3])), x_rgbt.shape[-2:], align_corners=False)
