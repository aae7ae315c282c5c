"""The multi-decoder U-Net (segmentation_models_pytorch's U-Net layout: decoder channels 256-128-64-32-16):
one ResNet encoder, a semantic and a depth decoder with skip connections from it, and the deployed
model without the depth decoder (`export_semantic`)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from udalab.methods.nets.deeplab import ResNetFeatures


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class UNetDecoder(nn.Module):
    """Each block: upsample x2, concatenate the skip (none for the last), (3x3 conv-BN-ReLU) x 2;
    then a 3x3 head to `out_channels`."""

    def __init__(self, skips: list[int], channels: tuple, out_channels: int):
        super().__init__()
        blocks, cin = [], skips[-1]
        for k, cout in enumerate(channels):
            skip = skips[-2 - k] if k < len(skips) - 1 else 0
            blocks.append(nn.Sequential(_conv_bn_relu(cin + skip, cout), _conv_bn_relu(cout, cout)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for k, block in enumerate(self.blocks):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if k < len(feats) - 1:
                skip = feats[-2 - k]
                if x.shape[-2:] != skip.shape[-2:]:
                    x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
                x = torch.cat([x, skip], 1)
            x = block(x)
        return self.head(x)


class MultiDecoderUNet(nn.Module):
    """One ResNet encoder, a semantic and a depth decoder with skips from it."""

    def __init__(self, depth: int, pretrained: str, decoder_channels: tuple, num_classes: int):
        super().__init__()
        self.encoder = ResNetFeatures(depth, pretrained)   # strides 2 ... 32
        self.semantic = UNetDecoder(self.encoder.channels, tuple(decoder_channels), num_classes)
        self.depth = UNetDecoder(self.encoder.channels, tuple(decoder_channels), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        return self.semantic(feats), self.depth(feats)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.semantic(self.encoder(x))


class SemanticUNet(nn.Module):
    """The deployed model: the encoder and the semantic decoder, no depth parameters."""

    def __init__(self, encoder: nn.Module, semantic: nn.Module):
        super().__init__()
        self.encoder, self.semantic = encoder, semantic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.semantic(self.encoder(x))


def export_semantic(model: MultiDecoderUNet) -> SemanticUNet:
    return SemanticUNet(copy.deepcopy(model.encoder), copy.deepcopy(model.semantic))
