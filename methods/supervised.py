"""Supervised on the labelled target images: the "Supervised" curve of UDAS's data dependency (Sec. 4.3.2).

What UDAS is measured against as target labels get scarce: the same DeepLab-v2 at the same
resolution, optimiser and schedule as UDAS's UDA step, trained on the `labelled` labelled target images alone,
the very images UDAS labels (`udas.split_target`: the first `labelled` of one fixed permutation,
so smaller counts nest). No source, no adaptation, no pseudo labels:

  1. L_seg = CE(G_main(x_t), y_t) + λ_seg_aux · CE(G_aux(x_t), y_t)   on the labelled target images
  2. SGD step of G (head x10, poly)

Published (Cityscapes val, 2975 / 1000 / 500 / 100 labelled images): 69.1 / 61.2 / 55.4 / 41.6;
UDAS at the same counts 63.5 / 60.6 / 61.3 / 55.6 (and 43.9 with none).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch.utils.data import Subset

from udalab.methods.advent import DeepLabTraining, SegmentationStep, build_model, trained_model
from udalab.methods.engine import ConfigError, Run, Step, UDAData, fields_of, fit, register
from udalab.methods.udas import PRESETS as UDAS_PRESETS
from udalab.methods.udas import check_labelled_count, split_target


@dataclass
class SupervisedConfig(DeepLabTraining):
    """UDAS's model, resolution, optimiser and schedule (its UDA step's), on labelled target images."""

    source_size: tuple = (640, 360)      # every image resized to 640x360 (UDAS, Sec. 4.1)
    target_size: tuple = (640, 360)
    eval_size: tuple = (640, 360)
    iterations: int = 150_000             # UDAS's UDA step: AdaptSegNet's NUM_STEPS_STOP
    labelled: int = 2975                  # labelled target images: 2975 / 1000 / 500 / 100 (UDAS, Sec. 4.3.2)

    def validate(self) -> None:
        super().validate()
        if self.labelled < 1:
            raise ConfigError(f"supervised trains on the labelled target images only: labelled must be >= 1, got "
                              f"{self.labelled} (the paper's table has no supervised row at 0 labels)")


PRESETS = {name: fields_of(SupervisedConfig, preset) for name, preset in UDAS_PRESETS.items()}


@register("supervised", SupervisedConfig, PRESETS, check_data=check_labelled_count, trained=trained_model)
def supervised(run: Run, hp: SupervisedConfig, data: UDAData) -> Step:
    labelled, _ = split_target(hp, data.target)          # checks the count against the split
    G = build_model(run, hp, data.num_classes)
    on_labelled = dataclasses.replace(data, source=Subset(data.target, labelled))   # the training set
    return fit(run, SegmentationStep(run, hp, on_labelled, G, hp.iterations),           # 1., 2.
               stage="supervised", iterations=hp.iterations, eval_every=hp.eval_every)
