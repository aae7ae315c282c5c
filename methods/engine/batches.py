"""Seeded batch streams: batch `it` of a stream is the same whether the run started at 0 or resumed at k."""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from udalab.methods.engine.rng import derive_seed

# A per-slot sampler: rng -> dataset index, or (index, the class it was drawn for).
Sampler = Callable[[np.random.Generator], "int | tuple[int, int]"]


class _SeededSamples(Dataset):
    """Loads `dataset[idx]` with torch's RNG seeded by the sample's own seed; a class a sampler
    drew the sample for is added as "sampled_class"."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int, int | None]):
        idx, sample_seed, sampled_class = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            sample = self.dataset[idx]
        if sampled_class is not None:
            sample = {**sample, "sampled_class": torch.tensor(sampled_class)}
        return sample


class _IterationBatches:
    """Batch sampler: batch `it` of this rank, for it = start, start+1, ... forever."""

    def __init__(self, n: int, batch_size: int, seed: int, stream: int, start: int, rank: int, world: int,
                 sampler: Sampler | None = None):
        self.n, self.bs, self.seed, self.stream = n, batch_size, seed, stream
        self.start, self.rank, self.world = start, rank, world
        self.sampler = sampler
        self._perm_epoch, self._perm = -1, None

    def _index(self, k: int) -> int:
        epoch, pos = divmod(k, self.n)
        if epoch != self._perm_epoch:
            rng = np.random.default_rng(derive_seed(self.seed, self.stream, epoch))
            self._perm, self._perm_epoch = rng.permutation(self.n), epoch
        return int(self._perm[pos])

    def __iter__(self):
        it = self.start
        while True:
            batch = []
            for slot in range(self.bs):
                sample_seed = derive_seed(self.seed, self.stream, it, self.rank, slot)
                sampled_class = None
                if self.sampler is not None:  # e.g. rare-class sampling: an index drawn per slot
                    drawn = self.sampler(np.random.default_rng(derive_seed(sample_seed, 1)))
                    index, sampled_class = (int(drawn[0]), int(drawn[1])) if isinstance(drawn, tuple) else (int(drawn), None)
                else:  # epochs of one shared permutation, split over the ranks
                    index = self._index((it * self.world + self.rank) * self.bs + slot)
                batch.append((index, sample_seed, sampled_class))
            yield batch
            it += 1


def batches(dataset: Dataset, batch_size: int, *, seed: int, stream: int, start: int = 0,
            rank: int = 0, world: int = 1, workers: int = 0, device: torch.device | str = "cpu",
            sampler: Sampler | None = None) -> Iterator[dict]:
    """Endless iterator of collated batches for iterations start, start+1, ...

    `stream` separates independent sample streams of one run (source, target, ...).
    `sampler(rng) -> index` or `-> (index, class)` replaces the epoch permutation (rare-class
    sampling; the class lands in the batch as "sampled_class"); it gets a generator seeded per
    (seed, stream, iteration, rank, slot), so resumes stay exact.
    """
    if len(dataset) == 0:
        raise ValueError("cannot draw batches from an empty dataset")
    loader = DataLoader(
        _SeededSamples(dataset),
        batch_sampler=_IterationBatches(len(dataset), batch_size, seed, stream, start, rank, world, sampler),
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(derive_seed(seed, stream)),  # not the global RNG
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@dataclasses.dataclass
class Stream:
    """One seeded batch stream of a Step. `id` seeds its samples: keep it stable, and distinct
    from the run's other streams (source 0, target 1, ...). `batch_size` is the global batch: with
    several workers each draws its share (batch_size / workers)."""

    dataset: Dataset
    batch_size: int
    id: int
    sampler: Sampler | None = None   # e.g. rare-class sampling
