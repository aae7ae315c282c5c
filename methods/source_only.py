"""Source only: the "no adaptation" row of every table.

The DeepLab-v2 multi-level model trained on labelled source images alone, with the same
optimiser, schedule, resolution and iterations as ADVENT, so that the difference to the
adapted rows is the adaptation:

  1. L_seg = CE(G_main(x_s), y_s) + λ_seg_aux · CE(G_aux(x_s), y_s)
  2. SGD step of G (head x10, poly)
"""
from __future__ import annotations

from dataclasses import dataclass

from udalab.methods.advent import PRESETS as ADVENT_PRESETS
from udalab.methods.advent import DeepLabTraining, SegmentationStep, build_model, trained_model
from udalab.methods.engine import Run, Step, UDAData, fields_of, fit, register


@dataclass
class SourceOnlyConfig(DeepLabTraining):
    """ADVENT's model, data, optimiser, schedule and evaluation (the reference's defaults)."""


# ADVENT's presets, less the adaptation's settings
PRESETS = {name: fields_of(SourceOnlyConfig, preset) for name, preset in ADVENT_PRESETS.items()}


@register("source_only", SourceOnlyConfig, PRESETS, trained=trained_model)
def source_only(run: Run, hp: SourceOnlyConfig, data: UDAData) -> Step:
    G = build_model(run, hp, data.num_classes)
    return fit(run, SegmentationStep(run, hp, data, G, hp.iterations), stage="source",                  # 1., 2.
               iterations=hp.iterations, eval_every=hp.eval_every)
