"""Cross-domain mixing: DACS's ClassMix (Tranheden et al., WACV 2021) as DAFormer uses it, and
UDAS's Domain CutMix.

ClassMix: for each source image, half of the classes present in its label (rounded up)
are cut out and pasted onto a target image; the mixed label takes the source label
there and the target pseudo label elsewhere, the pixel weights 1 there and the pseudo-
label confidence weight elsewhere. The mixed image then gets DACS's strong augmentation as
DAFormer's reference applies it (mmseg/models/utils/dacs_transforms.py with kornia 0.5.8): colour
jitter (strength 0.2) on the whole batch with probability 0.8, then Gaussian blur on the whole batch
with probability 0.5 (σ ~ U(0.15, 1.15) per image, kernel ≈ 10 % of the image side, odd).

Domain CutMix (UDAS, after CutMix, Yun et al. ICCV 2019): a box B of r_w = W·sqrt(1 - λ) by
r_h = H·sqrt(1 - λ), λ ~ U(0, 1), cut from a labelled target image into a source image:
x̃ = M ⊙ x_s + (1 - M) ⊙ x_t with M = 0 inside B, the labels likewise.

Every random choice comes from a `torch.Generator` the loop seeds per iteration, so a
resumed run mixes exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import NamedTuple

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


class JitterParams(NamedTuple):
    """One image's colour jitter, as kornia 0.5.8's ColorJitter draws it."""
    brightness: float          # added to every channel
    contrast: float            # multiplies every channel
    saturation: float          # multiplies HSV saturation
    hue: float                 # added to HSV hue, in turns
    order: tuple[int, ...]     # the order of the four: 0 brightness, 1 contrast, 2 saturation, 3 hue


def draw_jitter(gen: torch.Generator, strength: float) -> JitterParams:
    """kornia 0.5.8's ColorJitter(s, s, s, s) parameters: factors U(1 - s, 1 + s) (brightness's within
    [0, 2], then as the offset factor - 1; contrast's and saturation's >= 0), hue U(-s, s) turns within
    ±0.5, and a random order of the four."""
    s = strength
    brightness = _uniform(gen, max(0.0, 1 - s), min(2.0, 1 + s)) - 1
    contrast = _uniform(gen, max(0.0, 1 - s), 1 + s)
    saturation = _uniform(gen, max(0.0, 1 - s), 1 + s)
    hue = _uniform(gen, -min(s, 0.5), min(s, 0.5))
    return JitterParams(brightness, contrast, saturation, hue, tuple(torch.randperm(4, generator=gen).tolist()))


def colour_jitter(img: torch.Tensor, p: JitterParams) -> torch.Tensor:
    """An RGB image (3, H, W) in [0, 1] through kornia 0.5.8's four adjustments in p.order: x + b and
    x · c (each clamped to [0, 1]), HSV saturation · s (clamped to [0, 1]), hue + h (mod 1 turn)."""
    for op in p.order:
        if op == 0:
            img = (img + p.brightness).clamp(0, 1)
        elif op == 1:
            img = (img * p.contrast).clamp(0, 1)
        elif op == 2:
            h, s, v = rgb_to_hsv(img)
            img = hsv_to_rgb(h, (s * p.saturation).clamp(0, 1), v)
        else:
            h, s, v = rgb_to_hsv(img)
            img = hsv_to_rgb((h + p.hue) % 1.0, s, v)
    return img


def rgb_to_hsv(img: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hue in turns [0, 1), saturation (max - min) / (max + eps), value max) of RGB (3, H, W), kornia's
    conversion: the hue's sector from the first channel holding the maximum, 0 for greys."""
    r, g, b = img.unbind(-3)
    v, low = img.amax(-3), img.amin(-3)
    delta = v - low
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(r == v, (g - b) / d, torch.where(g == v, 2 + (b - r) / d, 4 + (r - g) / d))
    return (h / 6) % 1.0, delta / (v + eps), v


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """RGB (3, H, W) of hue (turns), saturation and value maps (H, W): the six-sector formula."""
    h6 = h * 6
    sector = torch.floor(h6)
    f = h6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rows = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))
    table = torch.stack([torch.stack(row) for row in rows])                       # (6, 3, H, W)
    index = (sector.long() % 6).expand(1, 3, *h.shape)
    return table.gather(0, index)[0]


def blur_kernel_size(side: int) -> int:
    """DACS's blur kernel along a side: c = ceil(0.1 · side), an even c rounded down to c - 1 (the
    reference's floor(c - 0.5 + c % 2)): 32 px -> 3, 64 px -> 7, 512 px -> 51."""
    c = math.ceil(0.1 * side)
    return c if c % 2 == 1 else c - 1


def strong_augment(images: torch.Tensor, gen: torch.Generator, jitter: float = 0.2, jitter_p: float = 0.8,
                   blur: bool = True) -> torch.Tensor:
    """DACS's strong augmentation of ImageNet-normalised images (N, 3, H, W), as DAFormer's
    strong_transform: one draw per batch decides colour jitter (probability `jitter_p`: the reference
    applies it when U(0, 1) > 0.2) and one blur (probability 0.5); each image then gets its own jitter
    parameters (draw_jitter, strength `jitter`) and its own blur σ ~ U(0.15, 1.15)."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    jittered = jitter > 0 and float(torch.rand((), generator=gen)) < jitter_p
    blurred = blur and float(torch.rand((), generator=gen)) < 0.5
    out = []
    for img in (images * std + mean).clamp(0, 1):
        if jittered:
            img = colour_jitter(img, draw_jitter(gen, jitter))
        if blurred:
            sigma = _uniform(gen, 0.15, 1.15)
            img = TF.gaussian_blur(img, [blur_kernel_size(img.shape[-1]), blur_kernel_size(img.shape[-2])],
                                   [sigma, sigma])
        out.append(img)
    return (torch.stack(out) - mean) / std


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
