"""DeepLab-v2 with multi-level outputs on a torchvision ResNet (ADVENT / AdaptSegNet / IntraDA).

Chen et al., TPAMI 2017; the multi-level variant of Tsai et al. (CVPR 2018) and Vu et al.
(CVPR 2019): an ASPP classifier (atrous rates 6, 12, 18, 24, summed) on layer4 gives the
main prediction, a second one on layer3 the auxiliary prediction. The backbone is
torchvision's ResNet with dilation instead of stride in the last stages (output stride 8
in the papers), initialised as `pretrained` says (methods/nets/backbones.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from udalab.methods.nets.backbones import resnet

ASPP_RATES = (6, 12, 18, 24)  # DeepLab-v2 (Chen et al. 2017, Sec. 3.3 ASPP-L)


class ASPPClassifier(nn.Module):
    """DeepLab-v2 classifier: parallel atrous 3x3 convs to the classes, outputs summed."""

    def __init__(self, in_channels: int, num_classes: int, rates=ASPP_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)  # as in the DeepLab-v2 reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


def _dilate(layer: nn.Sequential, dilation: int) -> None:
    """Replace the stride of a ResNet stage by dilation (works for Basic and Bottleneck blocks)."""
    for i, block in enumerate(layer):
        for name, m in block.named_modules():
            if isinstance(m, nn.Conv2d):
                if m.stride == (2, 2):
                    m.stride = (1, 1)
                if m.kernel_size == (3, 3):
                    # the first block keeps the previous stage's rate in its strided conv
                    d = dilation // 2 if (i == 0 and dilation > 1) else dilation
                    d = max(d, 1)
                    m.dilation, m.padding = (d, d), (d, d)


class ResNetFeatures(nn.Module):
    """A torchvision ResNet (`backbones.resnet`) as a feature pyramid: its stem (stride 2) and
    its four stages (strides 4, 8, 16, 32), `channels` per level. in_channels=1: conv1 becomes the
    mean of the (pretrained) RGB filters (MS-UDA's thermal encoder)."""

    def __init__(self, depth: int, pretrained: str, in_channels: int = 3):
        super().__init__()
        net = resnet(depth, pretrained)
        if in_channels == 1:
            conv = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
            conv.weight.data.copy_(net.conv1.weight.data.mean(1, keepdim=True))
            net.conv1 = conv
        elif in_channels != 3:
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [64] + [m[-1].conv3.out_channels if hasattr(m[-1], "conv3") else m[-1].conv2.out_channels
                                for m in self.stages]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        y = self.pool(feats[0])
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        return feats


class DeepLabV2(nn.Module):
    """Multi-level DeepLab-v2: returns (main logits, aux logits) at feature resolution."""

    def __init__(self, num_classes: int, depth: int = 101, pretrained: str = "imagenet",
                 output_stride: int = 8, multi_level: bool = True, freeze_bn: bool = True):
        super().__init__()
        net = resnet(depth, pretrained)
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if output_stride <= 16:
            _dilate(net.layer4, 2 if output_stride == 16 else 4)
        if output_stride == 8:
            _dilate(net.layer3, 2)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        c3 = self.layer3[-1].conv2.out_channels * (4 if depth >= 50 else 1)
        c4 = c3 * 2
        self.head = ASPPClassifier(c4, num_classes)
        self.aux_head = ASPPClassifier(c3, num_classes) if multi_level else None
        self.freeze_bn = freeze_bn
        if freeze_bn:  # batch 1 in the papers: BatchNorm statistics and affine stay ImageNet's
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def backbone_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith(("head", "aux_head")) and p.requires_grad]

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if n.startswith(("head", "aux_head"))]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.layer2(self.layer1(self.stem(x)))
        f3 = self.layer3(x)
        f4 = self.layer4(f3)
        return self.head(f4), (self.aux_head(f3) if self.aux_head is not None else None)


def upsample(logits: torch.Tensor, size: tuple[int, int], *, align_corners: bool) -> torch.Tensor:
    """Bilinear upsampling of logits to (H, W), as all these papers do before the loss. Each caller
    names its corner convention: True in ADVENT's, IntraDA's and AdaptSegNet's reference code (their
    nn.Upsample(..., align_corners=True); AdaptSegNet's PyTorch 0.2 default meant the same)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
