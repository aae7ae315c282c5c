"""UDAS: unsupervised domain adaptation + semi-supervised self-training (the UDA+SSL self-training
framework: CycleGAN translation, Domain CutMix, confidence-masked pseudo labels; its sections cited below).

Algorithm (DeepLab-v2 multi-level G, images resized to 640x360):
  0. Style transfer (translate): CycleGAN source -> target style; the source set is replaced by
     its translation (methods/cyclegan.py, built once per CycleGAN config as an artifact that
     every trial asking for it reads; a build killed half-way resumes from its own checkpoint).
  1. UDA (stage "uda"): AdaptSegNet's step on the (translated) source and the target, plus the
     primary/auxiliary consistency on the target predictions, the symmetric KL divergence that
     Sec. 3.3 names (its printed formula, a symmetric cross entropy, is `kl="printed"`):
        L = L_seg + L_adv + λ_kl · mean_px(KL(p_aux ‖ p_main) + KL(p_main ‖ p_aux))
     Domain CutMix (Sec. 3.4), when `labelled` > 0 target images have labels: each source image
     gets a box of r = sqrt(1 - λ) of each side, λ ~ U(0, 1), cut from a labelled target image
     (labels likewise), then AutoAugment; the mixed pair is the source batch.
     With `share_uda` (the default) the stage is trained once per its settings and seed, as an
     artifact, and trials that differ only in step 2's settings read it (methods/engine/__init__.py `adopt`).
  2. Self-training, R rounds (stages "round1" ... "roundR"), when `rounds` > 0:
     a. the teacher (round 1: the UDA model; then the last student) labels every unlabelled
        target image (the pool: the train images not labelled, and the target's unlabelled split
        where its folder holds one, Cityscapes' train_extra: the paper self-trains on "Cityscapes'
        unlabelled data"): K AutoAugment views, each prediction back on the image's grid, the
        per-pixel most confident view, kept where confidence >= τ (methods/parts/views.py);
     b. the student (initialised from the teacher) trains on the pseudo-labelled images, each
        AutoAugmented (the noisy student), and on the labelled target images with their labels
        plus the consistency KL(teacher ‖ student) on them (the paper's "KL between pseudo
        label and GT where labels exist", read as: where a labelled image is seen, the student
        is also held to the teacher's distribution);
     c. the student becomes the teacher.
The source is not used in self-training (Sec. 3.5). Which target images are labelled: the
first `labelled` of one fixed permutation of the target train split (seed 0), the same in
every trial, a smaller count a subset of a larger one. With every train image labelled (2975)
the pool is train_extra alone; a round with an empty pool is refused before any trial.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from udalab.core import layout
from udalab.datasets import DatasetError, build_dataset, root_key
from udalab.datasets.labels import IGNORE_INDEX
from udalab.methods.adaptsegnet import PRESETS as ADAPTSEGNET_PRESETS
from udalab.methods.adaptsegnet import AdaptSegNetConfig, AdaptSegNetStep
from udalab.methods.advent import build_model, main_prediction, trained_model
from udalab.methods.cyclegan import CycleGANStage, train_stage, write_translated
from udalab.methods.engine import (ConfigError, Prediction, Run, Step, Stream, UDAData, adopt, autocast, eval_mode,
                                   evaluate, fit, register, rng_preserved, unwrap)
from udalab.methods.engine import pictures
from udalab.methods.engine.artifacts import get_or_build_trained
from udalab.methods.engine.registry import get_method, shared_stage, trained_once
from udalab.methods.nets.deeplab import upsample
from udalab.methods.parts.losses import multi_level_ce, seg_ce
from udalab.methods.parts.mixing import domain_cutmix
from udalab.methods.parts.optim import poly, sgd_head_10x
from udalab.methods.parts.views import augmented_views, autoaugment, keep_confident, max_confidence

log = logging.getLogger("udalab")


@dataclass
class UDASConfig(AdaptSegNetConfig, CycleGANStage):
    """AdaptSegNet's model, optimisers and adversarial weights (the UDA step is AdaptSegNet's),
    at UDAS's resolution, with its own stages."""

    source_size: tuple = (640, 360)      # every image resized to 640x360 (Sec. 4.1)
    target_size: tuple = (640, 360)
    eval_size: tuple = (640, 360)
    # 0. style transfer (its CycleGAN: CycleGANStage's fields, the reference's 100 + 100 epochs)
    translate: bool = True
    cyclegan_semantic: float = 0.0       # λ_sem of CyCADA's semantic consistency in the CycleGAN, f_S the
    #                                      no-adaptation model (`source_model`); 0: the paper's plain CycleGAN
    # 1. UDA
    uda: bool = True                     # False: the segmentation loss only (the "no adaptation" / "ST" rows)
    lambda_kl: float = 1.0               # L_total = L_seg + L_adv + L_kl (Sec. 3.3: unweighted)
    kl: str = "symmetric_kl"             # Sec. 3.3 calls L_kl a KL divergence; its printed formula ("printed")
    #                                      is a symmetric cross entropy (+ both entropies)
    labelled: int = 2975                 # labelled target images: 2975 / 1000 / 500 / 100 / 0 (Sec. 4.3.3)
    cutmix: bool = True
    # 2. self-training
    rounds: int = 1                      # not stated in the paper; one teacher -> student round
    views: int = 3                       # K (Sec. 4.2.5)
    tau: float = 0.6                     # confidence threshold (Sec. 4.2.5)
    st_iterations: int = 120_000         # per round; not stated, ADVENT's early stop
    lambda_st_kl: float = 1.0            # the consistency weight on labelled images (not stated)
    share_uda: bool = True               # step 1 trained once per its settings and seed, an artifact read by
    #                                      every trial that differs only in step 2's (SELF_TRAINING_KEYS): a
    #                                      τ / K / rounds search pays for self-training alone; the same metrics
    #                                      as training it in the trial (tests/test_udas_parts.py)

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau (the confidence threshold) must be in (0, 1], got {self.tau}")
        if self.kl not in KL_TERMS:
            raise ConfigError(f"kl must be one of {sorted(KL_TERMS)}, got {self.kl!r}")
        if self.views < 1:
            raise ConfigError(f"views (K) must be >= 1, got {self.views}")
        if self.cyclegan_semantic < 0:
            raise ConfigError(f"cyclegan_semantic (CyCADA's λ_sem) must be >= 0, got {self.cyclegan_semantic}")
        if self.labelled < 0 or self.rounds < 0 or self.st_iterations < 1:
            raise ConfigError("labelled and rounds must be >= 0, st_iterations >= 1")
        if tuple(self.source_size) != tuple(self.target_size) and self.labelled > 0 and self.cutmix:
            raise ConfigError(f"Domain CutMix needs source_size == target_size, got {self.source_size} and "
                              f"{self.target_size}")

    @property
    def total_iterations(self) -> int:
        return self.iterations + self.rounds * self.st_iterations

    def shortened(self, iterations: int, eval_every: int) -> dict:
        return {**super().shortened(iterations, eval_every), "st_iterations": iterations}


# The mini data: ADVENT's mini model and schedule (ResNet-18 from the stand-in, 600 steps) with both
# domains at 128x72 (the paper's 640x360 / 5); 30 of the 300 mini target images labelled (the paper's
# 500 of 2975, rounded down); a small CycleGAN (16 filters, 3 blocks, 64-px crops, 600 steps); one
# self-training round of 300 steps; λ_kl 0.1, which keeps the paper's λ_kl·lr at ADVENT's mini lr (at
# weight 1 the UDA step diverged: records/udas_kl); D with the reference's four
# layers, as AdaptSegNet's.
MINI = {**ADAPTSEGNET_PRESETS["mini"],
        "source_size": (128, 72), "target_size": (128, 72), "eval_size": (128, 72),
        "cyclegan_iterations": 600, "cyclegan_ngf": 16, "cyclegan_blocks": 3, "cyclegan_crop": (64, 64),
        "labelled": 30, "st_iterations": 300, "lambda_kl": 0.1}
SMOKE = {**ADAPTSEGNET_PRESETS["smoke"], "d_layers": 1, "source_size": (64, 36), "target_size": (64, 36),
         "eval_size": (64, 36), "cyclegan_iterations": 4, "cyclegan_ngf": 4, "cyclegan_blocks": 1,
         "cyclegan_crop": (32, 32), "labelled": 4, "st_iterations": 2, "views": 2}
PRESETS = {"mini": MINI, "smoke": SMOKE}


# ---------------------------------------------------------------------------------------
# 0. Style transfer: the translated source, an artifact.


def translated_source(config: dict, hp: UDASConfig, data: UDAData, run: Run):
    """The source set translated to the target's style (step 0), at hp.source_size; built (CycleGAN
    trained, every source image translated) the first time any trial asks for this CycleGAN
    config, source and target. The build checkpoints into its partial folder, so a build killed
    half-way resumes there; the run's RNG is left as it was. With `cyclegan_semantic` > 0 the
    CycleGAN adds CyCADA's semantic consistency under the no-adaptation model (`source_model`)."""
    cg = hp.cyclegan()
    source, target = config.get("source", "gta5"), config.get("target", "cityscapes")
    roots = {root_key(source): str(data.source.root), root_key(target): str(data.target.root)}
    key = {"cyclegan": cg.key(), "seed": hp.cyclegan_seed, "source": source, "target": target,
           "source_root": str(data.source.root), "target_root": str(data.target.root)}
    if hp.cyclegan_semantic > 0:
        f_S = source_model(config, hp, data)
        cg = dataclasses.replace(cg, semantic_model=str(f_S), lambda_sem=hp.cyclegan_semantic)
        key = {**key, "cyclegan": cg.key(), "semantic_model": f_S.name}

    def build(tmp: Path, partial: Path) -> None:
        step, reports = train_stage(cg, source=source, target=target, data_root=roots, seed=hp.cyclegan_seed,
                                    device=run.device, checkpoint_dir=partial)
        native = build_dataset(source, root=data.source.root, split="train")
        n = write_translated(step.G_AB, native, tmp / "data", device=run.device)
        (tmp / "meta.json").write_text(json.dumps({"images": n, "last_report": reports[-1] if reports else None},
                                                  default=str) + "\n")
        log.info("CycleGAN: %d source images translated into %s", n, tmp)

    root = get_or_build_trained("cyclegan", key, build)
    return build_dataset(source, root=root / "data", split="train", size=hp.source_size)


def source_model(config: dict, hp: UDASConfig, data: UDAData) -> Path:
    """CyCADA's f_S for the semantic consistency: the "no adaptation" row's model (step 1 with neither
    UDA, translation nor Domain CutMix) at the CycleGAN's seed, trained once per these settings as
    an artifact; returns its checkpoint folder (state, history and config: `load_trained` reads it).
    Labelled target images reach step 1 only through Domain CutMix, so f_S is trained with none: one
    f_S (and one CycleGAN) serves every labelled count."""
    fs_config = {**{k: v for k, v in config.items() if k not in SELF_TRAINING_KEYS}, "method": "udas",
                 "translate": False, "uda": False, "cutmix": False, "rounds": 0, "share_uda": False,
                 "labelled": 0, "cyclegan_semantic": 0.0, "seed": hp.cyclegan_seed}
    key = {"udas_source_model": fs_config, "source_root": str(data.source.root),
           "target_root": str(data.target.root)}
    return trained_once("udas_source_model", key, fs_config,
                        (layout.STATE_FILE, layout.HISTORY_FILE, layout.CONFIG_FILE))


# ---------------------------------------------------------------------------------------
# 1. UDA.


def symmetric_kl(main: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """L_kl as Sec. 3.3 names it, per pixel, averaged over pixels: KL(p_aux‖p_main) + KL(p_main‖p_aux)
    = Σ_c (p_main - p_aux)(log p_main - log p_aux). Zero where the classifiers agree."""
    log_main, log_aux = F.log_softmax(main, 1), F.log_softmax(aux, 1)
    return ((log_main.exp() - log_aux.exp()) * (log_main - log_aux)).sum(1).mean()


def symmetric_ce(main: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """L_kl as Sec. 3.3 prints it, per pixel, averaged over pixels: -Σ_c p_aux log p_main - Σ_c p_main log p_aux
    = symmetric_kl + H(p_aux) + H(p_main): it also minimises both entropies."""
    log_main, log_aux = F.log_softmax(main, 1), F.log_softmax(aux, 1)
    return -((log_aux.exp() * log_main).sum(1) + (log_main.exp() * log_aux).sum(1)).mean()


KL_TERMS = {"symmetric_kl": symmetric_kl, "printed": symmetric_ce}


class UDAStep(AdaptSegNetStep):
    def __init__(self, run: Run, hp: UDASConfig, data: UDAData, G, source, labelled):
        super().__init__(run, hp, data, G, hp.iterations)
        self.source, self.labelled = source, labelled

    def streams(self) -> dict[str, Stream]:
        streams = {"source": Stream(self.source, self.hp.batch_size, id=0)}
        if self.hp.uda:           # without UDA no unlabelled target image is seen (not even by BatchNorm)
            streams["target"] = Stream(self.data.target, self.hp.batch_size, id=1)
        if self.labelled is not None and self.hp.cutmix:
            streams["labelled"] = Stream(self.labelled, self.hp.batch_size, id=2)
        return streams

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        x_s, y_s = batch["source"]["image"], batch["source"]["label"]
        if "labelled" in batch:   # Domain CutMix, then AutoAugment: the new source batch
            x_s, y_s, _ = domain_cutmix(x_s, y_s, batch["labelled"]["image"], batch["labelled"]["label"], gen)
            x_s = autoaugment(x_s, gen)
        if not self.hp.uda:       # the "no adaptation" and "ST" rows: the segmentation loss alone
            *_, seg_main, seg_aux = self.segment(x_s, y_s)
            return {"seg_main": seg_main.detach(), "seg_aux": seg_aux.detach()}
        return self.align(x_s, y_s, batch["target"]["image"])

    def target_terms(self, t_main, t_aux):
        return {"kl": (self.hp.lambda_kl, KL_TERMS[self.hp.kl](t_main, t_aux))}


SELF_TRAINING_KEYS = ("rounds", "views", "tau", "st_iterations", "lambda_st_kl")   # what step 1 never reads


def shared_uda(config: dict, data: UDAData) -> Callable[[], tuple[dict, list[dict], str]]:
    """Step 1 as an artifact (for `adopt`): the trial's config less step 2's settings, trained as a
    run of its own with no self-training round, the first time any trial asks for it; its final
    checkpoint (state and every report) is what every later trial with those settings reads."""
    uda_config = {**{k: v for k, v in config.items() if k not in SELF_TRAINING_KEYS}, "rounds": 0, "share_uda": False}
    # version 2: the artifact is a checkpoint folder (core/layout.py), its reports in history.json
    key = {"udas_uda_stage": uda_config, "version": 2, "source_root": str(data.source.root),
           "target_root": str(data.target.root)}
    return shared_stage("udas_uda", key, {**uda_config, "method": "udas"})


# ---------------------------------------------------------------------------------------
# 2. Self-training.


def unlabelled_pool(target, unlabelled: list[int]) -> tuple[Dataset | None, list[str]]:
    """Step 2a's images: the target train images at `unlabelled` (those no run labels), then the
    target's unlabelled splits (Cityscapes' train_extra) its root holds. Returns (the pool or None
    when it holds no image, what is missing: each absent unlabelled split's DatasetError)."""
    parts, missing = ([Subset(target, unlabelled)] if unlabelled else []), []
    for split in target.UNLABELLED_SPLITS:
        try:
            parts.append(target.with_split(split))
        except DatasetError as e:
            missing.append(str(e))
    return (ConcatDataset(parts) if parts else None), missing


def self_training_pool(hp: UDASConfig, target, unlabelled: list[int]) -> Dataset | None:
    """The pool of unlabelled_pool; with rounds > 0 and no image in it, a ConfigError naming what is missing."""
    pool, missing = unlabelled_pool(target, unlabelled)
    if hp.rounds > 0 and pool is None:
        where = f" ({' '.join(missing)})" if missing else f"; {type(target).__name__} has no unlabelled split"
        raise ConfigError(f"rounds={hp.rounds} self-trains on unlabelled target images, but labelled={hp.labelled} "
                          f"labels all {len(target)} images of {type(target).__name__}'s train split under "
                          f"{target.root} and no other unlabelled image is there{where}. Add the unlabelled images, "
                          f"label fewer (labelled < {len(target)}) or set rounds=0")
    return pool


class PseudoLabelled(Dataset):
    """The pool's images with the round's pseudo labels (IGNORE_INDEX where none)."""

    def __init__(self, pool: Dataset, labels: torch.Tensor):
        self.pool, self.labels = pool, labels

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, k: int) -> dict:
        return {"image": self.pool[k]["image"], "label": self.labels[k].long()}


def pseudo_label_stats(labels: torch.Tensor, chunk: int = 256) -> dict[str, int]:
    """stat.pseudo_images (pool images with a pixel kept at τ), stat.pseudo_pixels (pixels kept) and
    stat.pool_images of a round's (N, H, W) pseudo labels, counted a chunk of images at a time."""
    images = pixels = 0
    for start in range(0, len(labels), chunk):
        kept = (labels[start:start + chunk] != IGNORE_INDEX).flatten(1).sum(1)
        images, pixels = images + int((kept > 0).sum()), pixels + int(kept.sum())
    return {"stat.pseudo_images": images, "stat.pseudo_pixels": pixels, "stat.pool_images": len(labels)}


def labelling_seed(seed: int, rnd: int) -> int:
    """The seed of round `rnd`'s K views (the same views whatever τ)."""
    return seed * 1000 + rnd


# Batches whose views the teacher predicts in one call: the views are drawn batch by batch as
# before (the same views), the forward is batched (eval mode: each image's prediction is its own,
# up to float rounding); labelling the smoke target (2-image batches): 16.9 -> 10.3 s on the 2-core CPU.
PREDICT_BATCHES = 8


@torch.no_grad()
def view_confidence(run: Run, hp: UDASConfig, teacher, images: Dataset, seed: int):
    """Per batch of `images` (the pool): (batch, confidence, label), the per-pixel most confident of
    K augmented views brought back to the image's grid, before any threshold."""
    gen = torch.Generator().manual_seed(seed)
    pending: list[tuple[dict, torch.Tensor, torch.Tensor]] = []     # (batch, views, flipped)

    def predicted():
        conf, label = max_confidence(lambda x: unwrap(teacher)(x)[0], torch.cat([v for _, v, _ in pending], dim=1),
                                     torch.cat([f for _, _, f in pending], dim=1))
        start = 0
        for batch, views, _ in pending:
            n = views.shape[1]
            yield batch, conf[start:start + n], label[start:start + n]
            start += n
        pending.clear()

    with eval_mode(teacher):
        for batch in DataLoader(images, batch_size=hp.batch_size):
            pending.append((batch, *augmented_views(batch["image"].to(run.device), hp.views, gen)))
            if len(pending) == PREDICT_BATCHES:
                yield from predicted()
        if pending:
            yield from predicted()


@torch.no_grad()
def label_targets(run: Run, hp: UDASConfig, teacher, pool: Dataset, seed: int) -> torch.Tensor:
    """Step 2a: (len(pool), H, W) uint8 pseudo labels of the pool's images, IGNORE_INDEX below τ
    (filled in place: the paper's pool, 19,998 + unlabelled train images at 640x360, is 5 GB)."""
    labels, start = None, 0
    for _, conf, label in view_confidence(run, hp, teacher, pool, seed):
        if labels is None:
            labels = torch.empty((len(pool), *label.shape[1:]), dtype=torch.uint8)
        labels[start:start + len(label)] = keep_confident(conf, label, hp.tau).to(torch.uint8).cpu()
        start += len(label)
    return labels


# The students' logits reach the image (training) and the label (evaluation) with corners not aligned:
# UDAS has no reference code for its rounds (its UDA stage is AdaptSegNet's step, aligned as AdaptSegNet's
# code aligns them).
ROUNDS_ALIGN_CORNERS = False


class SelfTrainStep(Step):
    def __init__(self, run: Run, hp: UDASConfig, data: UDAData, teacher, pool: Dataset | None, labelled, rnd: int,
                 translated=None):
        self.run, self.hp, self.data, self.rnd = run, hp, data, rnd
        self.translated = translated        # step 0's CycleGAN-translated source (pictures only)
        self.teacher = teacher
        self.student = copy.deepcopy(unwrap(teacher)).to(run.device)   # 2b. initialised from the teacher
        self.networks = (self.student,)
        self.pool, self.labelled = pool, labelled
        self.labels = torch.zeros(0, dtype=torch.uint8)
        self.pool_stats: dict[str, int] | None = None      # counted from the labels once (begin, or after a resume)
        self.opt = sgd_head_10x(self.student, hp.lr, hp.momentum, hp.weight_decay)
        self.sched = poly(self.opt, hp.st_iterations, hp.poly_power)
        self.saved = ("teacher", "student", "labels", "opt", "sched")

    def begin(self) -> None:
        # 2a. the teacher labels the pool's images
        if self.pool is not None:
            self.labels = label_targets(self.run, self.hp, self.teacher, self.pool,
                                        seed=labelling_seed(self.run.seed, self.rnd))
            counts = self.pool_counts()
            log.info("pseudo labels: %d of %d pool images, %.1f %% of their pixels kept at τ = %s",
                     counts["stat.pseudo_images"], len(self.labels),
                     100 * counts["stat.pseudo_pixels"] / self.labels.numel(), self.hp.tau)

    def streams(self) -> dict[str, Stream]:
        streams = {}
        if self.pool is not None:
            streams["pseudo"] = Stream(PseudoLabelled(self.pool, self.labels), self.hp.batch_size, id=10 + 2 * self.rnd)
        if self.labelled is not None:
            streams["labelled"] = Stream(self.labelled, self.hp.batch_size, id=11 + 2 * self.rnd)
        return streams

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        hp = self.hp
        self.opt.zero_grad(set_to_none=True)
        losses = {}
        up = lambda t, x: upsample(t, x.shape[-2:], align_corners=ROUNDS_ALIGN_CORNERS)  # noqa: E731
        if "pseudo" in batch:
            x_p, y_p = autoaugment(batch["pseudo"]["image"], gen), batch["pseudo"]["label"]   # the noisy student
            with autocast(self.run.device, hp.precision):
                main, aux = (up(p, x_p) for p in self.student(x_p))
                losses["pseudo"] = multi_level_ce(main, aux, y_p, hp.lambda_seg_aux)[0]
            losses["stat.q"] = (y_p != IGNORE_INDEX).float().mean()   # the share of pixels kept at τ
        if "labelled" in batch:
            x_l, y_l = batch["labelled"]["image"], batch["labelled"]["label"]
            with torch.no_grad(), eval_mode(self.teacher):
                teacher_p = F.softmax(up(unwrap(self.teacher)(x_l)[0], x_l).float(), 1)
            with autocast(self.run.device, hp.precision):
                s_main = up(self.student(x_l)[0], x_l).float()
            losses["labelled"] = seg_ce(s_main, y_l)
            losses["consistency"] = F.kl_div(F.log_softmax(s_main, 1), teacher_p, reduction="none").sum(1).mean()
        total = losses.get("pseudo", 0) + losses.get("labelled", 0) + hp.lambda_st_kl * losses.get("consistency", 0)
        total.backward()
        return {**{name: v.detach() for name, v in losses.items()}, **self.pool_counts()}

    def pool_counts(self) -> dict[str, int]:
        """The round's pool as 2a labelled it (pseudo_label_stats), counted once (after a resume too)."""
        if self.pool is not None and self.pool_stats is None:
            self.pool_stats = pseudo_label_stats(self.labels)
        return self.pool_stats or {}

    def update(self) -> None:
        self.run.sync_grads(self.student)
        self.opt.step()
        self.sched.step()

    def evaluate(self, dataset, record=None) -> dict:
        prediction = main_prediction(self.hp, self.student, self.data.num_classes, ROUNDS_ALIGN_CORNERS)
        return evaluate(prediction, dataset, class_names=self.data.class_names, device=self.run.device, record=record)

    def pictures(self, dataset, indices):
        """The teacher's K-view pseudo labels of the chosen images: the most confident view per
        pixel, white below τ (the labels this round trained on, drawn on val images)."""
        hp, teacher, out = self.hp, unwrap(self.teacher), {}
        gen = torch.Generator().manual_seed(0)
        with rng_preserved(), eval_mode(self.teacher):
            for i in indices:
                sample = dataset[i]
                x = F.interpolate(sample["image"][None].to(self.run.device), size=hp.eval_size[::-1],
                                  mode="bilinear", align_corners=False)
                conf, label = max_confidence(lambda v: teacher(v)[0], *augmented_views(x, hp.views, gen))
                label = keep_confident(conf, label, hp.tau)[:, None].float()
                out[i] = F.interpolate(label, size=sample["label"].shape[-2:], mode="nearest")[0, 0].to(torch.uint8).cpu().numpy()
        pics = {"pseudo": out}
        captions = {"pseudo": f"the teacher's pseudo labels: most confident of K = {hp.views} views, white below "
                              f"τ = {hp.tau:g}"}
        if self.translated is not None:   # step 0: a source image and what CycleGAN made of it
            pairs = pictures.paired_sources(dataset, indices, self.data.source)
            pics["source"] = {i: pictures.image_picture(self.data.source[j]["image"]) for i, j in pairs.items()}
            pics["translated"] = {i: pictures.image_picture(self.translated[j]["image"]) for i, j in pairs.items()}
            captions.update(source="a source image (not this row's image)",
                            translated="the same source image after the CycleGAN translation to the target's style")
        return pics, captions


# ---------------------------------------------------------------------------------------
# The run.


def split_target(hp: UDASConfig, target) -> tuple[list[int], list[int]]:
    """(labelled, unlabelled) indices of the target train split: the first `labelled` of one fixed
    permutation (seed 0), so every trial labels the same images and smaller counts nest."""
    if hp.labelled > len(target):
        raise ConfigError(f"labelled={hp.labelled} but the target train split has only {len(target)} images; "
                          f"set labelled <= {len(target)} (the mini preset scales the paper's counts by 300/2975)")
    order = torch.randperm(len(target), generator=torch.Generator().manual_seed(0)).tolist()
    return sorted(order[:hp.labelled]), sorted(order[hp.labelled:])


def self_training(run: Run, hp: UDASConfig, data: UDAData, G, labelled: list[int], pool: Dataset | None,
                  translated=None) -> Step | None:
    """Step 2: R rounds; each round's student is the next round's teacher. Returns the last round's step."""
    labelled_set = Subset(data.target, labelled) if labelled else None
    teacher, step = G, None
    for rnd in range(1, hp.rounds + 1):
        step = SelfTrainStep(run, hp, data, teacher, pool, labelled_set, rnd, translated)
        fit(run, step, stage=f"round{rnd}", iterations=hp.st_iterations, eval_every=hp.eval_every,
            last=rnd == hp.rounds)
        teacher = step.student
    return step


def check_labelled_count(hp: UDASConfig, config: dict) -> None:
    """Before any trial: `labelled` against the size of the target train split the config names."""
    split_target(hp, get_method(config["method"]).data(config, hp).target)


def check_pool(hp: UDASConfig, config: dict) -> None:
    """Before any trial: `labelled` against the target train split, and an unlabelled image for the rounds."""
    target = get_method(config["method"]).data(config, hp).target
    self_training_pool(hp, target, split_target(hp, target)[1])


def trained_udas(hp: UDASConfig, num_classes: int, state: dict) -> Prediction:
    """The last round's student (no round: the UDA stage's G, upsampled as AdaptSegNet's)."""
    if hp.rounds > 0:
        return trained_model(hp, num_classes, state, key="student", align_corners=ROUNDS_ALIGN_CORNERS)
    return trained_model(hp, num_classes, state, key="G")


@register("udas", UDASConfig, PRESETS, check_data=check_pool, trained=trained_udas)
def udas(run: Run, hp: UDASConfig, data: UDAData) -> Step:
    labelled, unlabelled = split_target(hp, data.target)
    pool = self_training_pool(hp, data.target, unlabelled)
    source = translated_source(run.config, hp, data, run) if hp.translate else data.source      # 0.
    G = build_model(run, hp, data.num_classes)
    uda = UDAStep(run, hp, data, G, source, Subset(data.target, labelled) if labelled else None)
    if hp.share_uda and hp.rounds > 0:                                                            # 1.
        adopt(run, uda, stage="uda", iterations=hp.iterations, shared=shared_uda(run.config, data))
    else:
        fit(run, uda, stage="uda", iterations=hp.iterations, eval_every=hp.eval_every, last=hp.rounds == 0)
    return self_training(run, hp, data, G, labelled, pool, source if hp.translate else None) or uda   # 2.
