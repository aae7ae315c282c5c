"""The timing loop the step benchmarks share: warm-up, synchronised wall time per call, peak memory."""
from __future__ import annotations

import statistics
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(step, device: torch.device, warmup: int, iters: int) -> dict:
    """Call `step` warmup + iters times; ms per call (median, min) and peak GPU memory (GiB; NaN on CPU)."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return {"ms_median": statistics.median(times), "ms_min": min(times), "peak_gib": mem}
