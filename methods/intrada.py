"""IntraDA: unsupervised intra-domain adaptation through self-supervision (Pan et al., CVPR 2020).

Algorithm, one trial running all stages:
  1. inter-domain adaptation: ADVENT between source and target -> G_inter
  2. entropy-based ranking: score every target training image by the mean normalised
     entropy of G_inter's prediction; sorted ascending, the first int(N·λ) are the easy
     split, the rest the hard split (λ = |easy| / |target|)
  3. intra-domain adaptation: ADVENT again, with the easy split and G_inter's argmax
     pseudo labels as the "source" and the hard split as the "target" -> G_intra
     (λ = 1: no hard split left, i.e. plain self-training on pseudo labels;
      λ = 0: no easy split, stage 3 is skipped and G_inter is the result)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from udalab.methods import register
from udalab.methods.advent import PRESETS as ADVENT_PRESETS
from udalab.methods.advent import AdventConfig, AdventStage, build_model, evaluate_main
from udalab.methods.engine import (ConfigError, LossMeter, Run, batches, check_finite, derive_seed, eval_mode,
                                   make_hparams, unwrap)
from udalab.methods.losses import entropy_map, seg_ce
from udalab.methods.uda_data import build_uda_data

log = logging.getLogger("udalab")


@dataclass
class IntraDAConfig(AdventConfig):
    lambda_split: float = 0.67        # λ = |easy| / |target|, best on GTA5->Cityscapes (Pan et al. 2020, Sec. 4.2)
    # stage 1 (inter) runs ADVENT's `iterations`; stage 2 (intra) runs these, same optimiser and losses
    intra_iterations: int = 120_000   # IntraDA reference config (early stop as ADVENT)
    intra_init: str = "imagenet"      # G_intra starts from "imagenet" (the backbone init, as the reference) or "inter"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.lambda_split <= 1.0:
            raise ConfigError(f"lambda_split must lie in [0, 1], got {self.lambda_split}")
        if self.intra_init not in ("imagenet", "inter"):
            raise ConfigError(f"intra_init must be 'imagenet' or 'inter', got {self.intra_init!r}")

    @property
    def total_iterations(self) -> int:
        return self.iterations + self.intra_iterations


# Mini data: the ADVENT mini preset for each stage; G_intra starts from G_inter because a
# from-scratch backbone (no ImageNet weights offline) would throw away all it learned.
PRESETS = {scale: {**preset, "intra_iterations": preset["iterations"] // 2, "intra_init": "inter"}
           for scale, preset in ADVENT_PRESETS.items()}


@torch.no_grad()
def rank_by_entropy(run: Run, G: torch.nn.Module, target, lambda_split: float) -> tuple[list[int], list[int], list[float]]:
    """Step 2: (easy indices, hard indices, per-image mean entropy) of the target training set.

    Images are scored as loaded for training (no random transform: ADVENT's target data has none).
    """
    scores: list[float] = []
    with eval_mode(G):
        for batch in DataLoader(target, batch_size=1):
            prob = F.softmax(unwrap(G)(batch["image"].to(run.device))[0], dim=1)
            scores.append(float(entropy_map(prob).mean()))
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    n_easy = int(len(scores) * lambda_split)
    return sorted(order[:n_easy]), sorted(order[n_easy:]), scores


@register("intrada")
def train_loop(config: dict) -> None:
    run = Run.start(config)
    hp = make_hparams(IntraDAConfig, config, PRESETS)
    data = build_uda_data(config, hp.source_size, hp.target_size)
    meter = LossMeter()

    def report(it: int, stage_name: str, G, state: dict) -> None:
        done = it == hp.total_iterations
        run.report({"iteration": it, "stage": stage_name, **evaluate_main(run, G, data, hp), **meter.pop(),
                    "done": done}, state={"iteration": it, "stage_name": stage_name, **state})

    state = run.restore()
    start = state["iteration"] if state else 0
    if run.finished_before(hp.total_iterations):
        return

    # ---- 1. inter-domain adaptation (ADVENT, source -> target) ---------------------------
    G_inter = build_model(run, hp, data.num_classes)
    if start < hp.iterations:
        inter = AdventStage(run, hp, G_inter, data.num_classes, hp.iterations)
        if state:
            inter.load_state_dict(state["inter"])
        source = batches(data.source, hp.batch_size, seed=run.seed, stream=0, start=start,
                         rank=run.rank, world=run.world, device=run.device)
        target = batches(data.target, hp.batch_size, seed=run.seed, stream=1, start=start,
                         rank=run.rank, world=run.world, device=run.device)
        inter.train()
        for it in range(start, hp.iterations):
            s, t = next(source), next(target)
            losses = inter.step(s["image"], s["label"], t["image"])
            check_finite(losses, it + 1, "inter")
            meter.add(**losses)
            if (it + 1) % hp.eval_every == 0 or it + 1 == hp.iterations:
                report(it + 1, "inter", G_inter, {"inter": inter.state_dict()})
        start = hp.iterations
        del inter, source, target
    else:  # resumed after stage 1: G_inter is in the checkpoint
        unwrap(G_inter).load_state_dict(state["G_inter"] if "G_inter" in state else state["inter"]["G"])

    # ---- 2. entropy ranking: easy / hard split of the target ----------------------------
    if state and "easy" in state:
        easy, hard, scores = state["easy"], state["hard"], state["entropy"]
    else:
        easy, hard, scores = rank_by_entropy(run, G_inter, data.target, hp.lambda_split)
    log.info("entropy ranking: %d easy / %d hard target images (λ=%.2f)", len(easy), len(hard), hp.lambda_split)
    G_inter.eval()
    for p in G_inter.parameters():
        p.requires_grad_(False)
    ranking = {"easy": easy, "hard": hard, "entropy": scores, "G_inter": unwrap(G_inter).state_dict()}

    if not easy or hp.intra_iterations == 0:
        # λ = 0: nothing to self-train on; the inter-domain model is the result
        report(hp.total_iterations, "intra", G_inter, ranking)
        return

    # ---- 3. intra-domain adaptation (ADVENT, easy + pseudo labels -> hard) ---------------
    torch.manual_seed(derive_seed(run.seed, 3))  # stage 3's networks start the same, resumed or not
    G_intra = build_model(run, hp, data.num_classes)
    if hp.intra_init == "inter":
        unwrap(G_intra).load_state_dict(unwrap(G_inter).state_dict())
    intra = AdventStage(run, hp, G_intra, data.num_classes, hp.intra_iterations)
    if state and "intra" in state:
        intra.load_state_dict(state["intra"])
    stage_start = start - hp.iterations
    easy_batches = batches(Subset(data.target, easy), hp.batch_size, seed=run.seed, stream=2, start=stage_start,
                           rank=run.rank, world=run.world, device=run.device)
    hard_batches = (batches(Subset(data.target, hard), hp.batch_size, seed=run.seed, stream=3, start=stage_start,
                            rank=run.rank, world=run.world, device=run.device) if hard else None)
    intra.train()
    for k in range(stage_start, hp.intra_iterations):
        it = hp.iterations + k
        e = next(easy_batches)
        with torch.no_grad(), intra.amp():  # pseudo labels: argmax of G_inter on the easy image
            pseudo = F.interpolate(G_inter(e["image"])[0], size=e["image"].shape[-2:], mode="bilinear",
                                   align_corners=False).argmax(1)
        if hard_batches is not None:
            losses = intra.step(e["image"], pseudo, next(hard_batches)["image"])
        else:  # λ = 1: self-training only
            losses = self_train_step(intra, e["image"], pseudo)
        check_finite(losses, it + 1, "intra")
        meter.add(**losses)
        if (k + 1) % hp.eval_every == 0 or k + 1 == hp.intra_iterations:
            report(it + 1, "intra", G_intra, {"intra": intra.state_dict(), **ranking})


def self_train_step(stage: AdventStage, x: torch.Tensor, pseudo: torch.Tensor) -> dict[str, torch.Tensor]:
    """The intra stage without a hard split: segmentation loss on pseudo labels only."""
    stage.opt_G.zero_grad(set_to_none=True)
    with stage.amp():
        main, aux = stage.G(x)
        seg_main, seg_aux = seg_ce(main, pseudo), seg_ce(aux, pseudo)
    (seg_main + stage.hp.lambda_seg_aux * seg_aux).backward()
    stage.opt_G.step()
    stage.sched_G.step()
    return {"seg_main": seg_main.detach(), "seg_aux": seg_aux.detach()}
