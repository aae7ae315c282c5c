"""The decoders of the DAFormer family on a MiT encoder (methods/nets/mit.py).

* `DAFormerHead` (Hoyer et al., CVPR 2022, Sec. 3.2): per-level linear embeddings to 256
  channels, upsampled to 1/4 and concatenated, then "context-aware feature fusion": an
  ASPP of depthwise-separable 3x3 convolutions (rates 1, 6, 12, 18; no pooling) and a 3x3
  bottleneck, then the classifier.
* `SegFormerHead` (Xie et al. 2021, Sec. 3.2): the same embeddings fused by one 1x1 conv.
  HRDA's scale-attention head is this head with 256 channels (Hoyer et al., ECCV 2022).

`EncoderDecoder` puts a MiT encoder, initialised as `pretrained` says (methods/nets/backbones.py),
under one of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from udalab.methods.nets.backbones import mit


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Embed(nn.Module):
    """Per-level linear embedding to `dim` channels, all upsampled to the 1/4 level and concatenated."""

    def __init__(self, in_dims: tuple[int, ...], dim: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_dims)  # a 1x1 conv is the MLP embed

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        outs = [proj(f) for proj, f in zip(self.proj, feats)]
        outs = [o if o.shape[-2:] == size else F.interpolate(o, size=size, mode="bilinear", align_corners=False)
                for o in outs]
        return torch.cat(outs[::-1], 1)


class SeparableASPP(nn.Module):
    """DAFormer's context-aware fusion: 1x1 branch + depthwise-separable 3x3 atrous branches."""

    def __init__(self, cin: int, dim: int, rates=(1, 6, 12, 18)):
        super().__init__()
        branches = []
        for r in rates:
            if r == 1:
                branches.append(_conv_bn_relu(cin, dim, 1))
            else:
                branches.append(nn.Sequential(_conv_bn_relu(cin, cin, 3, r, groups=cin), _conv_bn_relu(cin, dim, 1)))
        self.branches = nn.ModuleList(branches)
        self.bottleneck = _conv_bn_relu(len(rates) * dim, dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([b(x) for b in self.branches], 1))


class DAFormerHead(nn.Module):
    def __init__(self, in_dims: tuple[int, ...], num_classes: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.embed = _Embed(in_dims, dim)
        self.fuse = SeparableASPP(len(in_dims) * dim, dim)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.fuse(self.embed(feats))))


class SegFormerHead(nn.Module):
    def __init__(self, in_dims: tuple[int, ...], num_classes: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.embed = _Embed(in_dims, dim)
        self.fuse = _conv_bn_relu(len(in_dims) * dim, dim, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.fuse(self.embed(feats))))


HEADS = {"daformer": DAFormerHead, "segformer": SegFormerHead}


class EncoderDecoder(nn.Module):
    """MiT encoder + decoder; `forward` gives logits at 1/4 of the input, `features` the encoder maps."""

    output_stride = 4

    def __init__(self, num_classes: int, backbone: str = "mit_b5", decoder: str = "daformer",
                 pretrained: str = "imagenet", drop_path_rate: float = 0.1, decoder_dim: int = 256):
        super().__init__()
        if not backbone.startswith("mit_"):
            raise ValueError(f"backbone must be mit_b0 … mit_b5, got {backbone!r}")
        if decoder not in HEADS:
            raise ValueError(f"decoder must be one of {sorted(HEADS)}, got {decoder!r}")
        self.encoder = mit(backbone, pretrained, drop_path_rate)
        self.decoder = HEADS[decoder](self.encoder.dims, num_classes, decoder_dim)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def backbone_parameters(self):
        return self.encoder.parameters()

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("encoder.")]
