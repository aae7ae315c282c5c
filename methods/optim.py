"""Optimisers and schedules of the DeepLab-v2 family (ADVENT / AdaptSegNet / IntraDA).

SGD with momentum, the classifier at 10x the backbone's learning rate, and the
polynomial decay (1 - t/T)^0.9 (DeepLab-v2; ADVENT reference config), through torch's
own PolynomialLR.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import PolynomialLR


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
