"""IntraDA: unsupervised intra-domain adaptation through self-supervision (Pan et al., CVPR 2020).

Algorithm, one trial running all stages:
  1. inter-domain adaptation: ADVENT between source and target -> G_inter
  2. entropy-based ranking: score every target training image by the mean normalised
     entropy of G_inter's prediction upsampled to the image; sorted ascending, the first
     int(N·λ) are the easy split, the rest the hard split (λ = |easy| / |target|)
  3. intra-domain adaptation: ADVENT again, with the easy split and G_inter's argmax
     pseudo labels as the "source" and the hard split as the "target" -> G_intra
     (λ = 1: no hard split left, i.e. plain self-training on pseudo labels;
      λ = 0: no easy split, stages 2-3 are skipped and G_inter is the result)

Each stage is one `fit` (methods/engine/__init__.py): a run resumed in stage 3 skips stage 1, whose
G_inter and ranking are part of stage 3's checkpoint. Stage 1 is the study's ADVENT row at the
trial's seed: with `share_inter` (the default) it is trained once per its settings and seed, as an
artifact, and every trial that differs only in λ or stage 3's settings reads it (`adopt`), as the
reference's stage 3 starts from a trained ADVENT model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from udalab.methods.advent import PRESETS as ADVENT_PRESETS
from udalab.methods.advent import ALIGN_CORNERS, AdventConfig, AdventStep, build_model, trained_model
from udalab.methods.engine import (ConfigError, Run, Step, Stream, UDAData, adopt, derive_seed, eval_mode, fit, register,
                                   unwrap)
from udalab.methods.engine.registry import shared_stage
from udalab.methods.nets.deeplab import upsample
from udalab.methods.parts.losses import entropy_map, multi_level_ce

log = logging.getLogger("udalab")


@dataclass
class IntraDAConfig(AdventConfig):
    lambda_split: float = 0.67        # λ = |easy| / |target|, best on GTA5->Cityscapes (Pan et al. 2020, Sec. 4.2)
    # stage 1 (inter) runs ADVENT's `iterations`; stage 2 (intra) runs these, same optimiser and losses
    intra_iterations: int = 120_000   # IntraDA reference config (early stop as ADVENT)
    intra_init: str = "imagenet"      # G_intra starts from "imagenet" (the backbone init, as the reference) or "inter"
    share_inter: bool = True          # stage 1 trained once per its settings and seed, an artifact read by every
    #                                   trial that differs only in INTRA_KEYS: a λ search pays for stage 1 once
    #                                   per seed; the same metrics as training it in the trial (tests/test_methods.py)

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.lambda_split <= 1.0:
            raise ConfigError(f"lambda_split must lie in [0, 1], got {self.lambda_split}")
        if self.intra_init not in ("imagenet", "inter"):
            raise ConfigError(f"intra_init must be 'imagenet' or 'inter', got {self.intra_init!r}")
        if self.intra_iterations < 0:
            raise ConfigError(f"intra_iterations must be >= 0, got {self.intra_iterations}")

    @property
    def total_iterations(self) -> int:
        """Both stages' (the intra stage runs unless λ or intra_iterations leaves it nothing)."""
        return self.iterations + (self.intra_iterations if self.lambda_split > 0 else 0)

    def shortened(self, iterations: int, eval_every: int) -> dict:
        return {**super().shortened(iterations, eval_every), "intra_iterations": iterations}


INTRA_KEYS = ("lambda_split", "intra_iterations", "intra_init", "share_inter")   # what stage 1 never reads

# Mini data: the ADVENT mini preset for each stage; G_intra starts from G_inter because a
# from-scratch backbone (no ImageNet weights offline) would throw away all it learned.
PRESETS = {name: {**preset, "intra_iterations": preset["iterations"] // 2, "intra_init": "inter"}
           for name, preset in ADVENT_PRESETS.items()}


@torch.no_grad()
def rank_by_entropy(run: Run, G: torch.nn.Module, target, lambda_split: float) -> tuple[list[int], list[int], list[float]]:
    """Step 2: (easy indices, hard indices, per-image mean entropy) of the target training set.

    Images are scored as loaded for training (no random transform: ADVENT's target data has none),
    16 at a time (they share the training size; 3.4x faster than one at a time at the smoke size,
    1.4x at the mini size, on the 2-core CPU; the logits agree to 1e-5). The entropy is averaged
    over G's prediction upsampled to the image, as the reference ranks (feipan664/IntraDA
    entropy_rank/entropy.py: interp_target, then prob_2_entropy).
    """
    scores: list[float] = []
    with eval_mode(G):
        for batch in DataLoader(target, batch_size=16):
            x = batch["image"].to(run.device)
            prob = F.softmax(upsample(unwrap(G)(x)[0], x.shape[-2:], align_corners=ALIGN_CORNERS), dim=1)
            scores += entropy_map(prob).flatten(1).mean(1).tolist()
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    n_easy = int(len(scores) * lambda_split)
    return sorted(order[:n_easy]), sorted(order[n_easy:]), scores


class IntraStep(AdventStep):
    """Step 3: ADVENT with the easy split and G_inter's argmax pseudo labels as the "source" and
    the hard split as the "target" (λ = 1: no hard split, self-training on the pseudo labels)."""

    def __init__(self, run: Run, hp: IntraDAConfig, data: UDAData, G_inter: torch.nn.Module):
        super().__init__(run, hp, data, build_model(run, hp, data.num_classes), hp.intra_iterations,
                         minent=hp.variant == "minent")
        self.G_inter = G_inter.eval().requires_grad_(False)
        self.easy: list[int] = []
        self.hard: list[int] = []
        self.entropy: list[float] = []
        self.saved += ("G_inter", "easy", "hard", "entropy")

    def begin(self) -> None:
        # 2. entropy ranking of the target by G_inter; G_intra starts from G_inter or ImageNet
        self.easy, self.hard, self.entropy = rank_by_entropy(self.run, self.G_inter, self.data.target,
                                                             self.hp.lambda_split)
        log.info("entropy ranking: %d easy / %d hard target images (λ=%.2f)", len(self.easy), len(self.hard),
                 self.hp.lambda_split)
        if self.hp.intra_init == "inter":
            unwrap(self.G).load_state_dict(unwrap(self.G_inter).state_dict())

    def streams(self) -> dict[str, Stream]:
        streams = {"easy": Stream(Subset(self.data.target, self.easy), self.hp.batch_size, id=2)}
        if self.hard:
            streams["hard"] = Stream(Subset(self.data.target, self.hard), self.hp.batch_size, id=3)
        return streams

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        # 3. pseudo labels: argmax of G_inter's upsampled prediction on the easy image (the reference's
        # colour masks: entropy_rank/entropy.py); align easy -> hard
        x = batch["easy"]["image"]
        with torch.no_grad(), self.amp():
            pseudo = upsample(self.G_inter(x)[0], x.shape[-2:], align_corners=ALIGN_CORNERS).argmax(1)
        if "hard" in batch:
            return self.align(x, pseudo, batch["hard"]["image"])
        return self.self_train(x, pseudo)

    def self_train(self, x: torch.Tensor, pseudo: torch.Tensor) -> dict[str, torch.Tensor]:
        """λ = 1: the segmentation loss on pseudo labels only (D gets no gradient)."""
        self.opt_G.zero_grad(set_to_none=True)
        with self.amp():
            main, aux = (upsample(p, x.shape[-2:], align_corners=ALIGN_CORNERS) for p in self.G(x))
            loss, seg_main, seg_aux = multi_level_ce(main, aux, pseudo, self.hp.lambda_seg_aux)
        loss.backward()
        return {"seg_main": seg_main.detach(), "seg_aux": seg_aux.detach()}


def shared_inter(config: dict, data: UDAData) -> Callable[[], tuple[dict, list[dict], str]]:
    """Stage 1 as an artifact (for `adopt`): the trial's config less INTRA_KEYS as an ADVENT run (the
    study's ADVENT row at this seed), trained the first time any trial asks for it."""
    advent_config = {**{k: v for k, v in config.items() if k not in INTRA_KEYS}, "method": "advent"}
    key = {"advent_run": advent_config, "source_root": str(data.source.root), "target_root": str(data.target.root)}
    return shared_stage("intrada_inter", key, advent_config)


@register("intrada", IntraDAConfig, PRESETS, trained=trained_model)
def intrada(run: Run, hp: IntraDAConfig, data: UDAData) -> Step:
    intra = int(len(data.target) * hp.lambda_split) > 0 and hp.intra_iterations > 0  # λ = 0: G_inter is the result
    # 1. inter-domain adaptation (ADVENT, source -> target)
    inter = AdventStep(run, hp, data, build_model(run, hp, data.num_classes), hp.iterations,
                       minent=hp.variant == "minent")
    if hp.share_inter and intra:
        step = adopt(run, inter, stage="inter", iterations=hp.iterations, shared=shared_inter(run.config, data))
    else:
        step = fit(run, inter, stage="inter", iterations=hp.iterations, eval_every=hp.eval_every, last=not intra)
    if intra:  # 2-3. entropy ranking, intra-domain adaptation (easy + pseudo labels -> hard)
        torch.manual_seed(derive_seed(run.seed, 3))  # stage 3's networks start the same, resumed or not
        step = fit(run, IntraStep(run, hp, data, inter.G), stage="intra", iterations=hp.intra_iterations,
                   eval_every=hp.eval_every)
    return step
