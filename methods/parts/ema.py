"""The mean teacher of self-training (Tarvainen & Valpola 2017; DACS, DAFormer, HRDA).

    φ_t = α_t φ_{t-1} + (1 - α_t) θ_t,   α_t = min(1 - 1/(t + 1), α)

so the first update (t = 0) copies the student and the teacher averages over the run so
far until 1 - 1/(t+1) reaches α (DAFormer reference; α = 0.999). As the reference:

* only parameters are averaged; buffers (BatchNorm running statistics) are not copied;
* the teacher predicts with dropout and drop-path off but BatchNorm in training mode, i.e.
  normalised by the statistics of the target batch it labels (`predicting()`), so its running
  statistics are never what it predicts with.

Its state is part of every checkpoint: a resumed run continues with the same teacher (the
DAFormer reference restarts it).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from udalab.methods.parts.norm import batchnorm_mode


class EMATeacher:
    def __init__(self, student: nn.Module, alpha: float):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"EMA alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self.model = copy.deepcopy(student)
        self.model.requires_grad_(False)
        self.model.eval()

    def decay(self, iteration: int) -> float:
        return min(1.0 - 1.0 / (iteration + 1), self.alpha)

    @torch.no_grad()
    def update(self, student: nn.Module, iteration: int) -> None:
        a = self.decay(iteration)
        teacher_params = list(self.model.parameters())
        student_params = [p.detach() for p in student.parameters()]
        if a == 0.0:
            torch._foreach_copy_(teacher_params, student_params)
        else:
            torch._foreach_lerp_(teacher_params, student_params, 1.0 - a)

    def predicting(self):
        """The reference's pseudo-label mode: BatchNorm on batch statistics, dropout and drop-path off."""
        return batchnorm_mode(self.model, train=True)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
