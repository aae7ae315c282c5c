"""Cross-domain mixing: DACS's ClassMix (Tranheden et al., WACV 2021) as DAFormer uses it, and
UDAS's Domain CutMix.

ClassMix: for each source image, half of the classes present in its label (rounded up)
are cut out and pasted onto a target image; the mixed label takes the source label
there and the target pseudo label elsewhere, the pixel weights 1 there and the pseudo-
label confidence weight elsewhere. The mixed image then gets DACS's strong augmentation:
colour jitter (strength 0.2, probability 0.8) and Gaussian blur (probability 0.5, σ in
[0.15, 1.15], kernel ≈ 10 % of the image side).

Domain CutMix (UDAS, after CutMix, Yun et al. ICCV 2019): a box B of r_w = W·sqrt(1 - λ) by
r_h = H·sqrt(1 - λ), λ ~ U(0, 1), cut from a labelled target image into a source image:
x̃ = M ⊙ x_s + (1 - M) ⊙ x_t with M = 0 inside B, the labels likewise.

Every random choice comes from a `torch.Generator` the loop seeds per iteration, so a
resumed run mixes exactly as an uninterrupted one.
"""
from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def classmix_masks(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(N, 1, H, W) float masks: each image takes ceil(n/2) randomly chosen of the n classes present
    in the whole source batch (torch.unique over the batch, 255 included, as DAFormer's reference
    does), so a chosen class may be absent from that image."""
    classes = torch.unique(labels)
    n = classes.numel()
    masks = [torch.isin(label, classes[torch.randperm(n, generator=gen)[: (n + 1) // 2].to(classes.device)])
             for label in labels]
    return torch.stack(masks).unsqueeze(1).float()


def mix(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mask·a + (1 - mask)·b for images (N, C, H, W) or maps (N, H, W) (masks are 0/1)."""
    if a.ndim == 3:
        return torch.where(mask[:, 0].bool(), a, b)
    return mask * a + (1 - mask) * b


def strong_augment(images: torch.Tensor, gen: torch.Generator, jitter: float = 0.2, jitter_p: float = 0.8,
                   blur: bool = True) -> torch.Tensor:
    """DACS colour jitter (strength `jitter`, applied with probability `jitter_p`: the reference
    applies it when U(0,1) > 0.2) + Gaussian blur (probability 0.5) on ImageNet-normalised
    images (N, 3, H, W)."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for img in (images * std + mean).clamp(0, 1):
        if jitter > 0 and float(torch.rand((), generator=gen)) < jitter_p:
            img = TF.adjust_brightness(img, _uniform(gen, 1 - jitter, 1 + jitter))
            img = TF.adjust_contrast(img, _uniform(gen, 1 - jitter, 1 + jitter))
            img = TF.adjust_saturation(img, _uniform(gen, 1 - jitter, 1 + jitter))
            img = TF.adjust_hue(img, _uniform(gen, -min(jitter, 0.5), min(jitter, 0.5)))
        if blur and float(torch.rand((), generator=gen)) < 0.5:
            sigma = _uniform(gen, 0.15, 1.15)
            ky = _odd(math.ceil(0.1 * img.shape[-2]))
            kx = _odd(math.ceil(0.1 * img.shape[-1]))
            img = TF.gaussian_blur(img, [kx, ky], [sigma, sigma])
        out.append(img)
    return (torch.stack(out) - mean) / std


def _odd(k: int) -> int:
    return max(3, k if k % 2 == 1 else k + 1)


def cutmix_box(height: int, width: int, lam: float, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(y0, x0, h, w) of a box of r_h = H·sqrt(1 - λ) by r_w = W·sqrt(1 - λ) pixels (rounded), placed
    uniformly where it lies wholly inside the image, so that it covers 1 - λ of it (CutMix clips
    a box centred anywhere instead, which covers less near the border)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"the CutMix ratio λ must be in [0, 1], got {lam}")
    h, w = round(height * math.sqrt(1 - lam)), round(width * math.sqrt(1 - lam))
    y0 = int(torch.randint(height - h + 1, (), generator=gen))
    x0 = int(torch.randint(width - w + 1, (), generator=gen))
    return y0, x0, h, w


def domain_cutmix(x_s: torch.Tensor, y_s: torch.Tensor, x_t: torch.Tensor, y_t: torch.Tensor,
                  gen: torch.Generator, lam: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Domain CutMix of source (N, 3, H, W) / (N, H, W) and labelled target batches of one size:
    per image pair a box with λ ~ U(0, 1) (or the given λ) shows the target, the rest the source.
    Returns the mixed images, the mixed labels and M (N, 1, H, W; 1 = source)."""
    n, _, height, width = x_s.shape
    if x_t.shape != x_s.shape or y_t.shape != y_s.shape:
        raise ValueError(f"Domain CutMix needs source and target batches of one size, got {tuple(x_s.shape)} "
                         f"and {tuple(x_t.shape)}")
    masks = torch.ones(n, 1, height, width, device=x_s.device)
    for k in range(n):
        y0, x0, h, w = cutmix_box(height, width, float(torch.rand((), generator=gen)) if lam is None else lam, gen)
        masks[k, :, y0:y0 + h, x0:x0 + w] = 0
    return mix(masks, x_s, x_t), mix(masks, y_s, y_t), masks
