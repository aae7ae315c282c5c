"""Which statistics BatchNorm normalises a forward pass with, apart from the model's own mode."""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextlib.contextmanager
def batchnorm_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Every BatchNorm of `model` in train mode (the batch's statistics, which also enter the running
    ones) or in eval mode (the running statistics, left as they are) for the block; each goes back
    to its own mode afterwards. The rest of the model (dropout, drop-path) keeps its mode."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    before = [m.training for m in norms]
    for m in norms:
        m.train(train)
    try:
        yield model
    finally:
        for m, mode in zip(norms, before):
            m.train(mode)
