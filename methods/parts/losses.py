"""Segmentation losses and entropy maps shared by the methods."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from udalab.datasets.labels import IGNORE_INDEX


def seg_ce(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy; logits are upsampled to the label size first; 255 is ignored."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)


def multi_level_ce(main: torch.Tensor, aux: torch.Tensor, label: torch.Tensor, lambda_aux: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The multi-level segmentation loss of the DeepLab-v2 family (Tsai et al. 2018, Eq. 3):
    CE(main) + λ_aux · CE(aux); returns (total, CE(main), CE(aux))."""
    ce_main, ce_aux = seg_ce(main, label), seg_ce(aux, label)
    return ce_main + lambda_aux * ce_aux, ce_main, ce_aux


def self_information(prob: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information map -p·log p / log C, per class (N, C, H, W)."""
    c = prob.shape[1]
    return -prob * torch.log(prob + 1e-30) / math.log(c)


def entropy_map(prob: torch.Tensor) -> torch.Tensor:
    """Normalised entropy per pixel in [0, 1] (N, H, W): the sum over classes of self_information."""
    return self_information(prob).sum(dim=1)


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT MinEnt: mean normalised entropy of the prediction."""
    return entropy_map(F.softmax(logits, dim=1)).mean()


def weighted_ce(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy times a per-pixel weight (N, H, W), averaged over all pixels as
    mmseg does (DACS/DAFormer pseudo-label loss); 255 contributes zero."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits.float(), label, ignore_index=IGNORE_INDEX, reduction="none")
    return (ce * weight).mean()


def downscale_label_ratio(label: torch.Tensor, factor: int, min_ratio: float, num_classes: int) -> torch.Tensor:
    """Labels pooled by `factor`: each cell takes its majority class if that class covers at
    least min_ratio of the cell, else 255 (DAFormer's feature-distance mask, min_ratio 0.75)."""
    n, h, w = label.shape
    valid = label != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, label, 0), num_classes).permute(0, 3, 1, 2).float()
    onehot = onehot * valid.unsqueeze(1)
    ratio = F.avg_pool2d(onehot, factor)
    top, cls = ratio.max(1)
    return torch.where(top >= min_ratio, cls, torch.full_like(cls, IGNORE_INDEX))


def focal_loss(logits: torch.Tensor, label: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """Focal loss per pixel, α (1 - p_t)^γ · CE with p_t = exp(-CE) (Lin et al. 2017; the multi-decoder
    paper's L_seg, γ = 2), averaged over the labelled pixels; γ = 0 gives α · CE."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits.float(), label, ignore_index=IGNORE_INDEX, reduction="none")
    valid = label != IGNORE_INDEX
    fl = alpha * (1 - torch.exp(-ce)).pow(gamma) * ce
    return fl[valid].mean() if valid.any() else fl.sum() * 0


def normalised_depth_mse(pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE between a depth prediction (N, 1, H, W) and a (pseudo) depth map min-max normalised per image
    over its valid pixels: a monocular model's depth is defined up to scale and shift, so only its
    shape is a target (MiDaS and Depth Anything give relative inverse depth: normalise, do not invert). `valid` (N, H, W) masks padding."""
    if pred.shape[-2:] != depth.shape[-2:]:
        pred = F.interpolate(pred, size=depth.shape[-2:], mode="bilinear", align_corners=False)
    d = depth[:, 0]
    big = torch.finfo(d.dtype).max
    lo = torch.where(valid, d, torch.full_like(d, big)).flatten(1).amin(1).view(-1, 1, 1)
    hi = torch.where(valid, d, torch.full_like(d, -big)).flatten(1).amax(1).view(-1, 1, 1)
    target = (d - lo) / (hi - lo).clamp_min(1e-6)
    err = (pred[:, 0].float() - target) ** 2
    return err[valid].mean() if valid.any() else err.sum() * 0


def lsgan(d_out: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017) of discriminator outputs against a constant target."""
    return F.mse_loss(d_out, torch.full_like(d_out, target))
