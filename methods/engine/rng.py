"""Seeds and random-number states: a run is a pure function of (config, seed).

Every sample is loaded under a seed derived from (seed, stream, iteration, rank, slot) (batches.py),
every per-iteration draw of a Step from (seed, iteration, rank) (loop.py), and checkpoints carry
every worker's global RNG states for anything else, so a resumed run draws what an uninterrupted
one draws.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (stable across processes and Python versions)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


@contextlib.contextmanager
def rng_preserved():
    """Leaves the python / numpy / torch RNGs as they were: work inside (an artifact's build, which
    only the first trial does) cannot change what the run draws after it."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
