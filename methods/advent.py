"""ADVENT: adversarial entropy minimisation (Vu et al., CVPR 2019).

Algorithm (one iteration, multi-level DeepLab-v2 G, discriminators D_main, D_aux):
  1. source:  L_seg = CE(G_main(x_s), y_s) + λ_seg_aux · CE(G_aux(x_s), y_s)
  2. target:  I_t = -p log p / log C  (weighted self-information maps of G(x_t))
     AdvEnt:  G fools D: L_adv = λ_adv_main · BCE(D_main(I_t), source) + λ_adv_aux · BCE(D_aux(I_t), source)
     MinEnt:  L_ent = λ_ent_main · H(G_main(x_t)) + λ_ent_aux · H(G_aux(x_t))
  3. D learns source maps -> 0 and target maps -> 1 (on detached maps).
  4. SGD step of G (head x10, poly), Adam step of D (poly), once every loss is finite.

The DeepLab-v2 family's shared parts live here: `DeepLabTraining` (what every DeepLab-v2 row
trains with: source only's whole config) and `AdversarialAlignment` (the output-space
discriminators of ADVENT, AdaptSegNet, IntraDA and UDAS).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from udalab.methods.engine import (ConfigError, HParams, Prediction, Run, Step, Stream, UDAData, autocast, evaluate,
                                   fit, register, unwrap)
from udalab.methods.nets.deeplab import DeepLabV2, upsample
from udalab.methods.nets.discriminator import FCDiscriminator, bce_to
from udalab.methods.parts.losses import entropy_loss, multi_level_ce, self_information
from udalab.methods.parts.norm import batchnorm_mode
from udalab.methods.parts.optim import SGDPoly, adam_discriminator, poly, sgd_head_10x

SOURCE, TARGET = 0.0, 1.0  # discriminator labels (ADVENT reference)
# G's logits reach the input size (training: before the segmentation loss, the discriminators and
# MinEnt) and the label's size (evaluation) by bilinear upsampling with aligned corners
# (valeoai/ADVENT advent/domain_adaptation/train_UDA.py and eval_UDA.py `interp`; IntraDA and
# AdaptSegNet likewise)
ALIGN_CORNERS = True


@dataclass
class DeepLabTraining(SGDPoly):
    """The DeepLab-v2 family's model, data, optimiser and evaluation (Vu et al. 2019, Sec. 4.1, and the
    ADVENT reference config valeoai/ADVENT advent/domain_adaptation/config.py)."""

    # model: DeepLab-v2, ResNet-101, ImageNet init, output stride 8
    backbone_depth: int = 101
    pretrained: str = "imagenet"
    output_stride: int = 8
    freeze_bn: bool = True                 # batch 1: BN frozen (ADVENT reference)
    # data: GTA5 resized to 1280x720, Cityscapes to 1024x512, 1 + 1 images per step
    source_size: tuple = (1280, 720)
    target_size: tuple = (1024, 512)
    batch_size: int = 1
    # the auxiliary classifier's weight in the multi-level segmentation loss (LAMBDA_SEG)
    lambda_seg_aux: float = 0.1
    # evaluation: Cityscapes val at 1024x512, upsampled to the 2048x1024 labels
    eval_every: int = 2000
    eval_size: tuple = (1024, 512)
    precision: str = "fp32"                # "bf16": autocast forward passes (the papers train in fp32)

    def validate(self) -> None:
        super().validate()
        if self.eval_every <= 0 or self.batch_size <= 0:
            raise ConfigError("eval_every and batch_size must be positive")


@dataclass
class AdversarialAlignment(HParams):
    """Output-space discriminators on G's target predictions (Tsai et al. 2018, Sec. 4.1; ADVENT reference)."""

    # BN in train mode only (freeze_bn False): G's target forward normalised by the target batch's own
    # statistics ("batch", PyTorch's train mode; they also enter the running ones) or by the running
    # statistics, which then only source batches update ("running": both domains normalised alike,
    # as by the reference's frozen BN)
    bn_target: str = "batch"
    lr_d: float = 1e-4                     # Adam (0.9, 0.99) for D (ADVENT reference)
    ndf: int = 64                          # discriminator width (Tsai et al. 2018, Sec. 4.1)
    d_layers: int = 4                      # D's 4x4 stride-2 convs before the classifier (Tsai et al. 2018,
                                           # Sec. 4.1): a logit sees 94 px, 9 % of a 1024-px-wide map
    lambda_adv_main: float = 0.001         # ADVENT reference LAMBDA_ADV_MAIN
    lambda_adv_aux: float = 0.0002         # ADVENT reference LAMBDA_ADV_AUX

    def validate(self) -> None:
        super().validate()
        if self.bn_target not in ("batch", "running"):
            raise ConfigError(f"bn_target must be 'batch' or 'running', got {self.bn_target!r}")
        if not 1 <= self.d_layers <= 4:
            raise ConfigError(f"d_layers must be 1..4 (the reference discriminator has 4), got {self.d_layers}")


@dataclass
class AdventConfig(DeepLabTraining, AdversarialAlignment):
    variant: str = "adv"                   # "adv" = AdvEnt, "minent" = MinEnt (Vu et al. 2019, Sec. 3)
    lambda_ent_main: float = 0.001         # ADVENT reference LAMBDA_ENT_MAIN
    lambda_ent_aux: float = 0.0002         # ADVENT reference LAMBDA_ENT_AUX

    def validate(self) -> None:
        super().validate()
        if self.variant not in ("adv", "minent"):
            raise ConfigError(f"variant must be 'adv' or 'minent', got {self.variant!r}")


# The embedded mini data: 128-px images, ResNet-18 at output stride 8 from the ImageNet stand-in,
# BN in train mode with 4 + 4 images, 10x the paper's LR, 600 steps with the poly schedule over the
# run's own 600, and a discriminator of one convolution before its classifier: a logit of the
# reference's four-layer D would see the whole 128 x 64 mini map rather than 9 % of it. Measured in
# records/advent_lambda_adv and records/advent_d_layers (docs/results.md).
MINI = dict(backbone_depth=18, pretrained="standin", output_stride=8, freeze_bn=False,
            source_size=(128, 72), target_size=(128, 64), eval_size=(128, 64), batch_size=4,
            iterations=600, poly_iterations=None, eval_every=200, lr=0.0025, d_layers=1,
            lambda_adv_main=0.0003, lambda_adv_aux=0.00006)
# --smoke: seconds-scale runs for CI and first checks (random init: no stand-in to build).
SMOKE = {**MINI, "pretrained": "none", "output_stride": 16, "source_size": (64, 36), "target_size": (64, 32),
         "eval_size": (64, 32), "batch_size": 2, "iterations": 4, "eval_every": 2, "ndf": 16}
PRESETS = {"mini": MINI, "smoke": SMOKE}


# ---------------------------------------------------------------------------------------
# The DeepLab-v2 family's model, its prediction and its supervised step.


def build_model(run: Run, hp: DeepLabTraining, num_classes: int) -> torch.nn.Module:
    return run.prepare(DeepLabV2(num_classes, hp.backbone_depth, hp.pretrained, hp.output_stride,
                                 multi_level=True, freeze_bn=hp.freeze_bn))


def main_prediction(hp: DeepLabTraining, G: torch.nn.Module, num_classes: int,
                    align_corners: bool = ALIGN_CORNERS) -> Prediction:
    """G's main classifier on the image resized to eval_size, its logits upsampled to the label with
    `align_corners` (the ADVENT family's reference: aligned): how every DeepLab-v2 row is scored."""
    return Prediction(lambda x: unwrap(G)(x)[0], num_classes, input_size=hp.eval_size, modules=(unwrap(G),),
                      align_corners=align_corners)


def trained_model(hp: DeepLabTraining, num_classes: int, state: dict, key: str = "G",
                  align_corners: bool = ALIGN_CORNERS) -> Prediction:
    """A trained DeepLab-v2 row's prediction from its final checkpoint's state (`load_trained`)."""
    G = DeepLabV2(num_classes, hp.backbone_depth, "none", hp.output_stride, multi_level=True, freeze_bn=hp.freeze_bn)
    G.load_state_dict(state[key])
    return main_prediction(hp, G.eval(), num_classes, align_corners)


class SegmentationStep(Step):
    """Step 1 of every DeepLab-v2 row, and the whole of source only: the multi-level segmentation
    loss on labelled images, an SGD step of G (head x10, poly)."""

    def __init__(self, run: Run, hp: DeepLabTraining, data: UDAData, G: torch.nn.Module, iterations: int):
        self.run, self.hp, self.data, self.G = run, hp, data, G
        self.networks = (G,)
        self.saved = ("G", "opt_G", "sched_G")
        self.opt_G = sgd_head_10x(unwrap(G), hp.lr, hp.momentum, hp.weight_decay)
        self.sched_G = poly(self.opt_G, hp.poly_length(iterations), hp.poly_power)
        self.amp = lambda: autocast(run.device, hp.precision)

    def streams(self) -> dict[str, Stream]:
        return {"source": Stream(self.data.source, self.hp.batch_size, id=0)}

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        *_, seg_main, seg_aux = self.segment(batch["source"]["image"], batch["source"]["label"])
        return {"seg_main": seg_main.detach(), "seg_aux": seg_aux.detach()}

    def segment(self, x_s: torch.Tensor, y_s: torch.Tensor):
        """G's gradients (zeroed first) of the multi-level segmentation loss on (x_s, y_s); returns
        both levels' maps at input size (ADVENT) and their losses."""
        self.opt_G.zero_grad(set_to_none=True)
        with self.run.clock("step.forward"), self.amp():
            s_main, s_aux = (upsample(p, x_s.shape[-2:], align_corners=ALIGN_CORNERS) for p in self.G(x_s))
            loss, seg_main, seg_aux = multi_level_ce(s_main, s_aux, y_s, self.hp.lambda_seg_aux)
        with self.run.clock("step.backward"):
            loss.backward()
        return s_main, s_aux, seg_main, seg_aux

    def update(self) -> None:
        self.opt_G.step()
        self.sched_G.step()

    def evaluate(self, dataset, record=None) -> dict:
        """Target metrics of G's main classifier."""
        return evaluate(main_prediction(self.hp, self.G, self.data.num_classes), dataset,
                        class_names=self.data.class_names, device=self.run.device, record=record)


# ---------------------------------------------------------------------------------------
# Adversarial alignment.


class AdventStep(SegmentationStep):
    """One adversarial entropy alignment: G against D_main / D_aux on self-information maps.

    IntraDA runs two of these: inter (source vs target) and intra (easy vs hard target); AdaptSegNet
    and UDAS change what D sees (`maps`) and its loss (`gan_loss`). minent: ADVENT's MinEnt variant
    (the target's entropy minimised; the discriminators stay untrained).
    """

    def __init__(self, run: Run, hp: AdversarialAlignment, data: UDAData, G: torch.nn.Module, iterations: int,
                 minent: bool = False):
        super().__init__(run, hp, data, G, iterations)
        self.minent = minent
        # D sees source and target maps in separate forward passes: no DDP, gradients synced by hand
        self.D_main = run.prepare(FCDiscriminator(data.num_classes, hp.ndf, hp.d_layers), ddp=False)
        self.D_aux = run.prepare(FCDiscriminator(data.num_classes, hp.ndf, hp.d_layers), ddp=False)
        self.networks = (G, self.D_main, self.D_aux)
        self.saved = ("G", "D_main", "D_aux", "opt_G", "opt_D", "sched_G", "sched_D")
        self.opt_D = adam_discriminator([*self.D_main.parameters(), *self.D_aux.parameters()], hp.lr_d)
        self.sched_D = poly(self.opt_D, hp.poly_length(iterations), hp.poly_power)

    def streams(self) -> dict[str, Stream]:
        return {"source": Stream(self.data.source, self.hp.batch_size, id=0),
                "target": Stream(self.data.target, self.hp.batch_size, id=1)}

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return self.align(batch["source"]["image"], batch["source"]["label"], batch["target"]["image"])

    def align(self, x_s: torch.Tensor, y_s: torch.Tensor, x_t: torch.Tensor) -> dict[str, torch.Tensor]:
        self.opt_D.zero_grad(set_to_none=True)
        # 1. supervised segmentation on the (pseudo-)labelled domain
        s_main, s_aux, seg_main, seg_aux = self.segment(x_s, y_s)
        # 2. align the unlabelled domain
        with self.run.clock("step.forward"), self.amp(), self.target_norm():
            t_main, t_aux = (upsample(p, x_t.shape[-2:], align_corners=ALIGN_CORNERS).float() for p in self.G(x_t))
        losses = {"seg_main": seg_main.detach(), "seg_aux": seg_aux.detach()}
        if self.minent:
            return {**losses, **self.minimise_entropy(t_main, t_aux)}
        return {**losses, **self.fool_and_train_discriminators(s_main, s_aux, t_main, t_aux)}

    def minimise_entropy(self, t_main: torch.Tensor, t_aux: torch.Tensor) -> dict[str, torch.Tensor]:
        """MinEnt: the target predictions' entropy, weighted, minimised (no discriminator)."""
        hp = self.hp
        ent_main, ent_aux = entropy_loss(t_main), entropy_loss(t_aux)
        with self.run.clock("step.backward"):
            (hp.lambda_ent_main * ent_main + hp.lambda_ent_aux * ent_aux).backward()
        return {"ent_main": ent_main.detach(), "ent_aux": ent_aux.detach()}

    def fool_and_train_discriminators(self, s_main, s_aux, t_main, t_aux) -> dict[str, torch.Tensor]:
        """AdvEnt: G fools the (frozen) discriminators on its target maps; then 3. the discriminators
        learn source maps -> SOURCE and target maps -> TARGET on detached maps."""
        hp, clock = self.hp, self.run.clock
        discriminators = (self.D_main, self.D_aux)
        i_t_main, i_t_aux = self.maps(t_main), self.maps(t_aux)
        for D in discriminators:
            D.requires_grad_(False)
        adv_main, adv_aux = self.gan_loss(self.D_main(i_t_main), SOURCE), self.gan_loss(self.D_aux(i_t_aux), SOURCE)
        extra = self.target_terms(t_main, t_aux)      # weighted target losses of a method built on this one
        with clock("step.backward"):
            (hp.lambda_adv_main * adv_main + hp.lambda_adv_aux * adv_aux
             + sum(w * v for w, v in extra.values())).backward()
        for D in discriminators:
            D.requires_grad_(True)
        with clock("step.discriminators"):
            s_main, s_aux = s_main.float(), s_aux.float()
            d_src = (self.gan_loss(self.D_main(self.maps(s_main.detach())), SOURCE)
                     + self.gan_loss(self.D_aux(self.maps(s_aux.detach())), SOURCE)) / 2
            d_tgt = (self.gan_loss(self.D_main(i_t_main.detach()), TARGET)
                     + self.gan_loss(self.D_aux(i_t_aux.detach()), TARGET)) / 2
            (d_src + d_tgt).backward()
        return {**{name: v.detach() for name, (_, v) in extra.items()}, "adv_main": adv_main.detach(),
                "adv_aux": adv_aux.detach(), "d_src": d_src.detach(), "d_tgt": d_tgt.detach()}

    def target_norm(self):
        """The BatchNorm mode of G's forward on the unlabelled domain (`bn_target`)."""
        if self.hp.bn_target == "running":
            return batchnorm_mode(self.G, train=False)
        return contextlib.nullcontext()

    def maps(self, logits: torch.Tensor) -> torch.Tensor:
        """What D sees of a prediction: ADVENT's weighted self-information map (AdaptSegNet: softmax)."""
        return self_information(F.softmax(logits, dim=1))

    def gan_loss(self, d_logits: torch.Tensor, domain: float) -> torch.Tensor:
        """The adversarial loss against a domain label: BCE on D's logits (vanilla GAN)."""
        return bce_to(d_logits, domain)

    def target_terms(self, t_main: torch.Tensor, t_aux: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """{name: (weight, loss)} added to G's adversarial loss on the target predictions (none here;
        UDAS adds its primary/auxiliary consistency)."""
        return {}

    def update(self) -> None:
        # 4. the optimiser steps (fit calls this once the losses are finite)
        self.run.sync_grads(self.D_main, self.D_aux)
        for opt_or_sched in (self.opt_G, self.opt_D, self.sched_G, self.sched_D):
            opt_or_sched.step()


@register("advent", AdventConfig, PRESETS, trained=trained_model)
def advent(run: Run, hp: AdventConfig, data: UDAData) -> Step:
    G = build_model(run, hp, data.num_classes)
    step = AdventStep(run, hp, data, G, hp.iterations, minent=hp.variant == "minent")
    return fit(run, step, stage="inter", iterations=hp.iterations, eval_every=hp.eval_every)
