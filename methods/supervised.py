"""Supervised on the labelled target images: the "Supervised" curve of UDAS's data dependency (Sec. 4.3.2).

What UDAS is measured against as target labels get scarce: the same DeepLab-v2 at the same
resolution, optimiser and schedule as UDAS's UDA step (UDASConfig; its translation, adaptation
and self-training settings are unused), trained on the `labeled` labelled target images alone,
the very images UDAS labels (`udas.split_target`: the first `labeled` of one fixed permutation,
so smaller counts nest). No source, no adaptation, no pseudo labels:

  1. L_seg = CE(G_main(x_t), y_t) + λ_seg_aux · CE(G_aux(x_t), y_t)   on the labelled target images
  2. SGD step of G (head x10, poly)

Published (Cityscapes val, 2975 / 1000 / 500 / 100 labelled images): 69.1 / 61.2 / 55.4 / 41.6;
UDAS at the same counts 63.5 / 60.6 / 61.3 / 55.6 (and 43.9 with none).
"""
from __future__ import annotations

import dataclasses

from torch.utils.data import Subset

from udalab.methods import register
from udalab.methods.advent import build_model
from udalab.methods.engine import ConfigError, Run, fit, make_hparams
from udalab.methods.source_only import SourceOnlyStep
from udalab.methods.engine.uda_data import build_uda_data
from udalab.methods.udas import PRESETS, UDASConfig, check_labelled_count, split_target


def require_labels(hp: UDASConfig) -> None:
    if hp.labeled < 1:
        raise ConfigError(f"supervised trains on the labelled target images only: labeled must be >= 1, got "
                          f"{hp.labeled} (the paper's table has no supervised row at 0 labels)")


def check_labelled(hp: UDASConfig, config: dict) -> None:
    """Before any trial: at least one labelled image, and no more than the target split holds."""
    require_labels(hp)
    check_labelled_count(hp, config)


@register("supervised", UDASConfig, PRESETS, check_data=check_labelled)
def train_loop(config: dict) -> None:
    run = Run.start(config)
    hp = make_hparams(UDASConfig, config, PRESETS)
    require_labels(hp)
    data = build_uda_data(config, hp.source_size, hp.target_size)
    labelled, _ = split_target(hp, data.target)          # checks the count against the split
    G = build_model(run, hp, data.num_classes)
    on_labelled = dataclasses.replace(data, source=Subset(data.target, labelled))   # the training set
    fit(run, SourceOnlyStep(run, hp, on_labelled, G), stage="supervised", iterations=hp.iterations,   # 1., 2.
        eval_every=hp.eval_every)
