"""What the step benchmarks share: the timing loop (warm-up, synchronised wall time per call, peak
memory), the device's name and the JSON of a run's rows."""
from __future__ import annotations

import json
import platform
import statistics
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(step, device: torch.device, warmup: int, iters: int) -> dict:
    """Call `step` warmup + iters times; ms per call (median, min), the first call's ms and all warm-up
    calls' (where compilation and allocator growth go), peak GPU memory (GiB; NaN on CPU)."""
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        _sync(device)
        warm.append((time.perf_counter() - t0) * 1000)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return {"ms_median": statistics.median(times), "ms_min": min(times), "first_ms": warm[0] if warm else None,
            "warmup_ms": sum(warm), "peak_gib": mem}


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu"


def write_rows(path: str | None, device: str, rows: list[dict]) -> None:
    """The rows of a benchmark run as JSON (with the device and torch version), if `path` is given."""
    if path:
        with open(path, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "rows": rows}, f, indent=1)
