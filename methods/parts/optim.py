"""Optimisers and schedules.

The DeepLab-v2 family (ADVENT / AdaptSegNet / IntraDA / UDAS, and MS-UDA / MML): SGD with
momentum, the classifier at 10x the backbone's learning rate, and the polynomial decay
(1 - t/T)^0.9 (DeepLab-v2; ADVENT reference config), through torch's own PolynomialLR. The
DAFormer family: AdamW with mmcv's warm-up and poly schedule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import PolynomialLR

from udalab.methods.engine import ConfigError, HParams


@dataclass
class SGDPoly(HParams):
    """SGD with momentum and a poly schedule: the DeepLab-v2 family's optimiser (ADVENT reference config:
    lr 2.5e-4, momentum 0.9, weight decay 5e-4, power 0.9 over MAX_ITERS 250000, stopped early at 120000)."""

    iterations: int = 120_000
    poly_iterations: int | None = 250_000  # the poly schedule's length (None: the stage's own iterations)
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9

    def validate(self) -> None:
        super().validate()
        if self.iterations <= 0:
            raise ConfigError(f"iterations must be positive, got {self.iterations}")
        if self.poly_iterations is not None and self.poly_iterations < self.iterations:
            raise ConfigError(f"poly_iterations ({self.poly_iterations}) must be >= iterations ({self.iterations}), "
                              f"or None to decay over the run's own iterations")

    def poly_length(self, stage_iterations: int) -> int:
        """The poly schedule's length for a stage of `stage_iterations`."""
        return self.poly_iterations or stage_iterations


def sgd_head_10x(model, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(
        [{"params": model.backbone_parameters(), "lr": lr},
         {"params": model.head_parameters(), "lr": 10 * lr}],
        lr=lr, momentum=momentum, weight_decay=weight_decay,
    )


def adam_discriminator(params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))  # ADVENT reference


def poly(optimizer: torch.optim.Optimizer, total_iters: int, power: float) -> PolynomialLR:
    return PolynomialLR(optimizer, total_iters=max(total_iters, 1), power=power)


def adamw_head_10x(model, lr: float, weight_decay: float, betas=(0.9, 0.999), head_mult: float = 10.0):
    """AdamW of the DAFormer family: decoder at head_mult x lr, no weight decay on norms and
    biases (DAFormer reference: lr 6e-5, wd 0.01, head lr x10, norm decay 0)."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = not name.startswith("encoder.") and not name.startswith("net.encoder.")
        no_decay = p.ndim == 1  # LayerNorm / BatchNorm weights and all biases
        key = (head, no_decay)
        groups.setdefault(key, []).append(p)
    params = [{"params": ps, "lr": lr * (head_mult if head else 1.0), "weight_decay": 0.0 if nd else weight_decay}
              for (head, nd), ps in sorted(groups.items())]
    # fused: one kernel over all tensors instead of a Python loop over ~220 of them; the same update up
    # to rounding
    fused = all(p.device.type in ("cpu", "cuda") for g in params for p in g["params"])
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)


def warmup_poly(optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int, power: float = 1.0,
                warmup_ratio: float = 1e-6) -> torch.optim.lr_scheduler.LambdaLR:
    """mmcv's poly schedule with linear warm-up: lr_t = lr (1 - t/T)^p, scaled during the first
    `warmup_iters` by 1 - (1 - t/W)(1 - warmup_ratio) (DAFormer: W 1500, p 1.0, ratio 1e-6)."""
    total = max(total_iters, 1)

    def factor(t: int) -> float:
        f = (1.0 - min(t, total) / total) ** power
        if t < warmup_iters:
            f *= 1.0 - (1.0 - t / warmup_iters) * (1.0 - warmup_ratio)
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
