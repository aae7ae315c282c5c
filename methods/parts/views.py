"""K augmented views of an unlabelled image and their maximum-confidence pseudo labels (UDAS).

UDAS's self-training (Sec. 3.3 of the UDAS paper): the teacher
predicts K AutoAugment views of each target image; each view's prediction is brought back to
the image's own pixel grid; per pixel the most confident view wins; pixels whose confidence
reaches τ become pseudo labels, the rest are ignored.

Which views: torchvision's AutoAugment (ImageNet policy) restricted to its photometric
operations (brightness, colour, contrast, sharpness, posterize, solarize, autocontrast,
equalize, invert; its rotate / shear / translate are dropped from each sub-policy), plus a
horizontal flip with probability 0.5, which is inverted exactly. A photometric view needs no
inverse, so every view's prediction lands on the original grid pixel for pixel; an affine
op would need resampling and leave pixels without a prediction. View 0 is the image itself.

The views are drawn from the caller's `torch.Generator` (AutoAugment draws from torch's
global RNG, which is forked and seeded from it), so a resumed run sees the same views.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from udalab.datasets.labels import IGNORE_INDEX
from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


class PhotometricAutoAugment(v2.AutoAugment):
    """torchvision's AutoAugment with the geometric operations dropped from every sub-policy."""

    def __init__(self, policy: v2.AutoAugmentPolicy = v2.AutoAugmentPolicy.IMAGENET):
        super().__init__(policy)
        self._policies = [tuple(op for op in sub if op[0] not in GEOMETRIC_OPS) for sub in self._policies]
        if not any(self._policies):
            raise RuntimeError("this torchvision's AutoAugment policies have no photometric operation")


def autoaugment(images: torch.Tensor, gen: torch.Generator,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Photometric AutoAugment of ImageNet-normalised images (N, 3, H, W), one sub-policy per image,
    drawn from `gen`; returns ImageNet-normalised images of the same size."""
    augment = augment or PhotometricAutoAugment()
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for img in images:
        u8 = ((img * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31 - 1, (), generator=gen)))
            aug = augment(u8.cpu()).to(img.device)
        out.append((aug.float() / 255 - mean) / std)
    return torch.stack(out)


def augmented_views(images: torch.Tensor, k: int, gen: torch.Generator,
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K views of ImageNet-normalised images (N, 3, H, W): (views (K, N, 3, H, W), flipped (K, N) bool).
    View 0 is the image itself; the others are AutoAugmented (photometric) and flipped with p 0.5."""
    if k < 1:
        raise ValueError(f"the number of views K must be >= 1, got {k}")
    augment = augment or PhotometricAutoAugment()
    views, flipped = [images], [torch.zeros(images.shape[0], dtype=torch.bool)]
    for _ in range(k - 1):
        view = autoaugment(images, gen, augment)
        flips = torch.rand(images.shape[0], generator=gen) < 0.5
        views.append(torch.where(flips.to(images.device).view(-1, 1, 1, 1), view.flip(-1), view))
        flipped.append(flips)
    return torch.stack(views), torch.stack(flipped)


@torch.no_grad()
def max_confidence(predict: Callable[[torch.Tensor], torch.Tensor], views: torch.Tensor,
                   flipped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each view's softmax brought back to the original grid (flips undone, logits upsampled to the
    image size); per pixel the most confident view: (confidence (N, H, W), class (N, H, W))."""
    best_conf = best_label = None
    for view, flips in zip(views, flipped):
        prob = F.softmax(F.interpolate(predict(view).float(), size=view.shape[-2:], mode="bilinear",
                                       align_corners=False), dim=1)
        prob = torch.where(flips.to(prob.device).view(-1, 1, 1, 1), prob.flip(-1), prob)
        conf, label = prob.max(1)
        if best_conf is None:
            best_conf, best_label = conf, label
        else:
            better = conf > best_conf
            best_conf, best_label = torch.where(better, conf, best_conf), torch.where(better, label, best_label)
    return best_conf, best_label


def keep_confident(confidence: torch.Tensor, label: torch.Tensor, tau: float) -> torch.Tensor:
    """The class where the confidence reaches τ, IGNORE_INDEX elsewhere."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"the confidence threshold τ must be in (0, 1], got {tau}")
    return torch.where(confidence >= tau, label, torch.full_like(label, IGNORE_INDEX))
