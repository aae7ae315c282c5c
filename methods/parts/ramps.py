"""Weight schedules over training progress p ∈ [0, 1] (MML's δ ramp for L_KT, searched by studies).

    linear    start + (end - start) · p                        (MML: 0.2 -> 1 over the epochs)
    sigmoid   start + (end - start) · exp(-5 (1 - p)²)         (the sigmoid ramp-up of Laine & Aila, ICLR 2017)
    step      start before p = `at`, end from there on
"""
from __future__ import annotations

import math

SHAPES = ("linear", "sigmoid", "step")


def ramp(progress: float, start: float, end: float, shape: str = "linear", at: float = 0.5) -> float:
    """The weight at `progress` (clipped to [0, 1]) of a ramp from `start` to `end`."""
    if shape not in SHAPES:
        raise ValueError(f"ramp shape must be one of {SHAPES}, got {shape!r}")
    p = min(max(float(progress), 0.0), 1.0)
    if shape == "linear":
        return start + (end - start) * p
    if shape == "sigmoid":
        return start + (end - start) * math.exp(-5.0 * (1.0 - p) ** 2)
    return start if p < at else end
