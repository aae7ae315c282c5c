"""DAFormer (Hoyer, Dai & Van Gool, CVPR 2022): DACS self-training with a Transformer.

Per iteration t (Sec. 3.1 and Algorithm of DACS, Tranheden et al. 2021):

    1. teacher  φ ← α_t φ + (1 - α_t) θ,  α_t = min(1 - 1/(t+1), α)            (EMA, methods/parts/ema.py)
    2. source   L_S  = CE(f_θ(x_S), y_S)  [+ λ_FD · ImageNet feature distance on thing classes]
    3. target   p_T  = argmax g_φ(x_T),   q_T = |{max prob ≥ τ}| / |pixels|   (the teacher normalises
                by the target batch's statistics; margins of the crop, or of the image (HRDA), get
                weight 0: ego car and rectification border)
    4. mix      M = ClassMix(y_S) (half the classes of the source batch);  x_M = M·x_S + (1-M)·x_T,
                y_M, w_M likewise;  colour jitter (p 0.8) + blur (p 0.5)
    5. L = L_S + CE_w(f_θ(x_M), y_M, w_M);  AdamW step (head lr x10), warm-up + poly

Source images are drawn by rare-class sampling (Sec. 3.3: class c with probability
∝ exp((1 - f_c)/T), then an image containing c, whose crop is re-drawn until it shows c). The "segmentor" is the part HRDA
replaces (methods/hrda.py): here one network at the crop's resolution.

`self_training=False` trains the same network on the source alone (the papers'
"source only" row). The EMA teacher and the iteration counter are saved in every
checkpoint, so a resumed run continues with the teacher it had.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from udalab.datasets.labels import THING_CLASSES
from udalab.datasets.rcs import RareClassSampler, class_stats
from udalab.methods.engine import (ConfigError, HParams, Prediction, Run, Step, Stream, UDAData, autocast, evaluate,
                                   fit, register, unwrap)
from udalab.methods.engine import pictures
from udalab.methods.nets.backbones import load_mit
from udalab.methods.nets.mit import MiT
from udalab.methods.nets.segformer import EncoderDecoder
from udalab.methods.parts.crops import Box, balanced_box, crop, crop_batch, random_box
from udalab.methods.parts.ema import EMATeacher
from udalab.methods.parts.losses import downscale_label_ratio, weighted_ce
from udalab.methods.parts.mixing import classmix_masks, mix, strong_augment
from udalab.methods.parts.optim import adamw_head_10x, warmup_poly

log = logging.getLogger("udalab")


@dataclasses.dataclass
class DAFormerConfig(HParams):
    # model: MiT-B5 + DAFormer decoder, ImageNet init (Hoyer et al. 2022, Sec. 3.2, 4.1)
    backbone: str = "mit_b5"
    decoder: str = "daformer"              # "segformer": the plain SegFormer MLP head (Table 4)
    decoder_dim: int = 256                 # embedding / fusion channels of the decoder (Sec. 3.2)
    pretrained: str = "imagenet"
    drop_path_rate: float = 0.1            # MiT config of the reference
    # data: GTA5 resized to 1280x720, Cityscapes to 1024x512, 512x512 crops, batch 2 (Sec. 4.1)
    source_size: tuple = (1280, 720)
    target_size: tuple = (1024, 512)
    crop_size: tuple = (512, 512)
    source_cat_max_ratio: float = 0.75     # source crops re-drawn while one class covers > 75 % (reference)
    flip: bool = True
    batch_size: int = 2
    # optimisation: AdamW 6e-5, wd 0.01, head x10, 1500 warm-up, poly 1.0, 40k iterations (Sec. 4.1)
    iterations: int = 40_000
    lr: float = 6e-5
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    warmup_iters: int = 1500
    poly_power: float = 1.0
    # self-training (DACS; Sec. 3.1): EMA α 0.999, confidence τ 0.968, λ_T = q_T
    self_training: bool = True
    ema_alpha: float = 0.999
    pseudo_threshold: float = 0.968
    pl_margins: tuple = (15, 120, 0, 0)    # pseudo-label weight 0 on the top 15 and bottom 120 rows (ego car,
    #                                        rectification border) of the 512-px target crop (DAFormer ref.)
    color_jitter: float = 0.2              # DACS strong augmentation: strength 0.2, applied when
    color_jitter_p: float = 0.8            # U(0,1) > 0.2 in the reference, i.e. with probability 0.8
    blur: bool = True
    # rare-class sampling (Sec. 3.3): T = 0.01, images with > 3000 pixels of the class
    rcs: bool = True
    rcs_temperature: float = 0.01
    rcs_min_pixels: int = 3000
    rcs_min_crop_ratio: float = 0.5        # the source crop is re-drawn (10x) until it holds > 0.5 x 3000 px of it
    # thing-class ImageNet feature distance (Sec. 3.4): λ_FD = 0.005, cells with >= 75 % of one class
    fd_lambda: float = 0.005
    fd_min_ratio: float = 0.75
    # evaluation: whole Cityscapes val images at 1024x512 (the reference's test_cfg mode "whole"); "slide":
    # windows of the crop size, stride half
    eval_every: int = 4000
    eval_size: tuple = (1024, 512)
    inference: str = "whole"
    precision: str = "fp32"                # "bf16": autocast forward passes (the reference trains in fp32)

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.ema_alpha < 1.0:
            raise ConfigError(f"ema_alpha must be in [0, 1), got {self.ema_alpha}")
        if not 0.0 <= self.pseudo_threshold <= 1.0:
            raise ConfigError(f"pseudo_threshold must be in [0, 1], got {self.pseudo_threshold}")
        if self.iterations <= 0 or self.eval_every <= 0 or self.batch_size <= 0:
            raise ConfigError("iterations, eval_every and batch_size must be positive")
        if len(self.pl_margins) != 4:
            raise ConfigError(f"pl_margins must be (top, bottom, left, right) pixels, got {self.pl_margins}")
        if self.inference not in ("whole", "slide"):
            raise ConfigError(f"inference must be 'whole' or 'slide', got {self.inference!r}")
        if self.rcs_temperature <= 0:
            raise ConfigError(f"rcs_temperature must be > 0, got {self.rcs_temperature}")
        if self.crop_size[0] > min(self.source_size[0], self.target_size[0]) or \
                self.crop_size[1] > min(self.source_size[1], self.target_size[1]):
            raise ConfigError(f"crop_size {self.crop_size} is larger than the images "
                              f"(source {self.source_size}, target {self.target_size})")

    def train_crop(self) -> tuple[int, int]:
        """(W, H) of the training crop (HRDA: the context window at its relative size)."""
        return tuple(self.crop_size)


# The embedded mini data: the paper's geometry / 8 (Cityscapes 128x64, GTA 160x90, 64-px crops), MiT-B0
# from the ImageNet stand-in with a 64-channel decoder, 20x the paper's learning rate, EMA α 0.95 (the
# teacher averages over ~3 % of the 600 steps, as the paper's 0.999 does over its 40k), RCS at > 50
# pixels and the pseudo-label margins scaled by the geometry, sliding-window inference (a MiT-B0 trained
# on 64-px crops does badly on the whole image), no feature distance (a second encoder pass per step).
# Measured in records/daformer_lr and records/daformer_ema_alpha (docs/results.md).
MINI = dict(backbone="mit_b0", decoder_dim=64, pretrained="standin", source_size=(160, 90), target_size=(128, 64),
            crop_size=(64, 64), batch_size=4, iterations=600, warmup_iters=60, lr=1.2e-3, ema_alpha=0.95,
            eval_every=200, eval_size=(128, 64), inference="slide", fd_lambda=0.0, rcs_min_pixels=50,
            pl_margins=(2, 15, 0, 0))
SMOKE = {**MINI, "pretrained": "none", "source_size": (80, 45), "target_size": (64, 32), "crop_size": (32, 32),
         "batch_size": 2, "iterations": 4, "warmup_iters": 2, "eval_every": 2, "eval_size": (64, 32),
         "rcs_min_pixels": 5, "pl_margins": (1, 8, 0, 0)}
PRESETS = {"mini": MINI, "smoke": SMOKE}


# ---------------------------------------------------------------------------------------
# The segmentor: what HRDA replaces. forward() returns the supervised loss of a batch.


class Segmentor(nn.Module):
    """One network at the input's resolution (DAFormer). What HRDA changes of the training crops is
    said here too: `sync_crop` (source and target cut at one window) and `margins_of` (the pseudo-label
    margins of the "crop" or of the "image"). Crop corners lie on any pixel, in DAFormer as in HRDA
    (mmseg's RandomCrop in both references' data pipelines)."""

    sync_crop = False
    margins_of = "crop"

    def __init__(self, net: EncoderDecoder):
        super().__init__()
        self.net = net

    def draw(self, n: int, height: int, width: int, gen: torch.Generator):
        return None  # no per-sample randomness inside the forward pass

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None, aux=None) -> dict:
        feats = self.net.features(x)
        logits = self.net.decoder(feats)
        w = torch.ones_like(y, dtype=torch.float32) if weight is None else weight
        return {"loss": weighted_ce(logits, y, w), "feat": feats[-1], "fd_image": x, "fd_label": y}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.net(x).float(), size=x.shape[-2:], mode="bilinear", align_corners=False)

    def prediction(self, hp: DAFormerConfig, num_classes: int) -> Prediction:
        """The image at eval_size, whole or in crop-size windows moved by half a window (`inference`)."""
        w, h = hp.crop_size
        window = dict(window=(h, w), stride=(h // 2, w // 2)) if hp.inference == "slide" else {}
        return Prediction(self.predict, num_classes, input_size=hp.eval_size, modules=(self,), **window)


def build_segmentor(hp: DAFormerConfig, num_classes: int) -> Segmentor:
    return Segmentor(EncoderDecoder(num_classes, hp.backbone, hp.decoder, hp.pretrained, hp.drop_path_rate,
                                    hp.decoder_dim))


def trained_segmentor(build):
    """load_trained's hook for a DACS method built on `build(hp, num_classes)`: its final student."""
    def trained(hp: DAFormerConfig, num_classes: int, state: dict) -> Prediction:
        segmentor = build(dataclasses.replace(hp, pretrained="none"), num_classes)
        segmentor.load_state_dict(state["student"])
        return segmentor.eval().prediction(hp, num_classes)
    return trained


# ---------------------------------------------------------------------------------------
# ImageNet feature distance (Sec. 3.4).


class FeatureDistance(nn.Module):
    """λ_FD · mean ‖F_ImageNet(x) − F_θ(x)‖₂ over bottleneck cells of thing classes."""

    def __init__(self, hp: DAFormerConfig, thing_ids: list[int], num_classes: int):
        super().__init__()
        self.encoder = MiT(hp.backbone.removeprefix("mit_"), drop_path_rate=0.0)
        if not load_mit(self.encoder, hp.pretrained):
            log.warning("feature distance (fd_lambda=%s) pulls towards a RANDOMLY INITIALISED encoder: without "
                        "ImageNet weights it only regularises towards noise; set fd_lambda=0", hp.fd_lambda)
        self.encoder.requires_grad_(False).eval()
        self.register_buffer("things", torch.tensor(thing_ids, dtype=torch.long))
        self.min_ratio, self.num_classes = hp.fd_min_ratio, num_classes

    def train(self, mode: bool = True):
        return super().train(False)  # frozen ImageNet model: always eval

    def forward(self, image: torch.Tensor, feat: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = self.encoder(image)[-1]
        dist = torch.linalg.vector_norm(feat.float() - ref.float(), dim=1)  # (N, h, w)
        factor = label.shape[-1] // feat.shape[-1]
        cells = downscale_label_ratio(label, factor, self.min_ratio, self.num_classes)[..., :dist.shape[-2],
                                                                                         :dist.shape[-1]]
        mask = torch.isin(cells, self.things)
        # mean over thing cells; 0 (with a gradient path) when the batch holds none
        return (dist * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------
# One iteration.


def draw_crops(s: dict, t: dict, hp, gen: torch.Generator, sync_crop: bool = False, margins_of: str = "crop"):
    """Crops of a source and a target batch, and where the target crops may carry pseudo labels.

    Source crops are re-drawn while one class dominates them (cat_max_ratio) and, for an image
    rare-class sampling drew for class c, until they hold more than rcs_min_pixels x
    rcs_min_crop_ratio pixels of c (10 tries each, the reference's order); target crops are
    uniform. With sync_crop each domain is first cropped to crop_size on its own, then one window
    of the training crop at one random position is cut from both (HRDA's synchronized crop: the
    whole source image stays reachable). Random horizontal flips. Returns xs, ys, xt and the
    target crops' pseudo-label mask (1, or 0 on the pl_margins of the crop or of the image)."""
    h, w = (hp.crop_size[1], hp.crop_size[0]) if sync_crop else hp.train_crop()[::-1]
    n = s["image"].shape[0]
    sampled = s.get("sampled_class")
    src_boxes = [source_box(s["label"][i], h, w, gen, hp, None if sampled is None else int(sampled[i]))
                 for i in range(n)]
    tgt_boxes = [random_box(*t["image"].shape[-2:], h, w, gen) for _ in range(n)]
    if sync_crop:
        ww, wh = hp.train_crop()
        for i in range(n):
            inner = random_box(h, w, wh, ww, gen)
            src_boxes[i] = Box(src_boxes[i].y + inner.y, src_boxes[i].x + inner.x, wh, ww)
            tgt_boxes[i] = Box(tgt_boxes[i].y + inner.y, tgt_boxes[i].x + inner.x, wh, ww)
    flips = (torch.rand(2, n, generator=gen) < 0.5).tolist() if hp.flip else [[False] * n] * 2
    xs, ys = crop_batch(s["image"], s["label"], src_boxes, flips[0])
    xt, _ = crop_batch(t["image"], None, tgt_boxes, flips[1])
    if margins_of == "image":
        whole = margin_mask(*t["image"].shape[-2:], hp.pl_margins, xt.device).expand(n, 1, -1, -1)
        valid = crop_batch(whole, None, tgt_boxes, flips[1])[0][:, 0]
    else:
        valid = margin_mask(*xt.shape[-2:], hp.pl_margins, xt.device).expand(n, 1, -1, -1)[:, 0]
    return xs, ys, xt, valid


def source_box(label: torch.Tensor, h: int, w: int, gen: torch.Generator, hp, sampled_class: int | None) -> Box:
    box = balanced_box(label, h, w, gen, hp.source_cat_max_ratio)
    if sampled_class is None:
        return box
    for _ in range(10):  # rare-class sampling: the crop must show the class it was drawn for
        if int((crop(label, box) == sampled_class).sum()) > hp.rcs_min_pixels * hp.rcs_min_crop_ratio:
            break
        box = balanced_box(label, h, w, gen, hp.source_cat_max_ratio)
    return box


def margin_mask(height: int, width: int, margins, device) -> torch.Tensor:
    """(1, H, W) ones with (top, bottom, left, right) margins at 0."""
    top, bottom, left, right = margins
    mask = torch.ones(1, height, width, device=device)
    mask[:, :top] = 0
    mask[:, :, :left] = 0
    if bottom:
        mask[:, -bottom:] = 0
    if right:
        mask[:, :, -right:] = 0
    return mask


def teacher_labels(teacher: nn.Module, xt: torch.Tensor, valid: torch.Tensor, hp):
    """Teacher argmax labels, their weight (q_T, one scalar per batch as DACS, times the margin
    mask `valid`) and q_T itself."""
    prob = F.softmax(teacher.predict(xt), dim=1)
    conf, label = prob.max(1)
    q = (conf >= hp.pseudo_threshold).float().mean()  # stays on the device: no sync
    return label, q * valid, q


def mixed_picture(source: dict, target_image: torch.Tensor) -> np.ndarray:
    """Step 4's mix of one source sample onto one target image (at the target's size), as RGB."""
    h, w = target_image.shape[-2:]
    xs = F.interpolate(source["image"][None].float(), size=(h, w), mode="bilinear", align_corners=False)
    ys = F.interpolate(source["label"][None, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    masks = classmix_masks(ys, torch.Generator().manual_seed(0))
    return pictures.image_picture(mix(masks, xs, target_image[None].float())[0])


def source_sampler(hp, dataset):
    """Rare-class sampling over the source dataset (None: uniform epochs)."""
    if not hp.rcs:
        return None
    sampler = RareClassSampler(class_stats(dataset), temperature=hp.rcs_temperature, min_pixels=hp.rcs_min_pixels)
    return sampler.sample  # (index, class): the crop is then drawn to show the class


class DACSStep(Step):
    """Steps 1-5 of one DACS iteration on a segmentor (DAFormer's, or HRDA's multi-resolution one)."""

    def __init__(self, run: Run, hp: DAFormerConfig, data: UDAData, segmentor: nn.Module):
        self.run, self.hp, self.data = run, hp, data
        self.student = run.prepare(segmentor)
        self.networks = (self.student,)
        self.teacher = EMATeacher(unwrap(self.student), hp.ema_alpha) if hp.self_training else None
        things = [data.class_names.index(c) for c in THING_CLASSES if c in data.class_names]
        self.fd = FeatureDistance(hp, things, data.num_classes).to(run.device) if hp.fd_lambda > 0 else None
        self.opt = adamw_head_10x(unwrap(self.student), hp.lr, hp.weight_decay, head_mult=hp.head_lr_mult)
        self.sched = warmup_poly(self.opt, hp.iterations, hp.warmup_iters, hp.poly_power)
        self.amp = lambda: autocast(run.device, hp.precision)
        self.saved = ("student", "opt", "sched") + (("teacher",) if self.teacher is not None else ())

    def streams(self) -> dict[str, Stream]:
        return {"source": Stream(self.data.source, self.hp.batch_size, id=0,
                                 sampler=source_sampler(self.hp, self.data.source)),
                "target": Stream(self.data.target, self.hp.batch_size, id=1)}

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        seg = unwrap(self.student)
        xs, ys, xt, valid = draw_crops(batch["source"], batch["target"], self.hp, gen, seg.sync_crop, seg.margins_of)
        return self.losses(xs, ys, xt, valid, gen, it)

    def losses(self, xs, ys, xt, valid, gen: torch.Generator, it: int) -> dict[str, torch.Tensor]:
        """Steps 1-4 on cropped batches: gradients of all losses accumulated, nothing updated yet."""
        hp, student, teacher, seg, clock = self.hp, self.student, self.teacher, unwrap(self.student), self.run.clock
        self.opt.zero_grad(set_to_none=True)

        # 1. EMA teacher (before the student moves: φ_t from θ_t)
        if teacher is not None:
            with clock("step.ema"):
                teacher.update(seg, it)

        # 2. supervised source loss (+ ImageNet feature distance on thing classes)
        with clock("step.forward"), self.amp():
            out = student(xs, ys, None, seg.draw(xs.shape[0], *xs.shape[-2:], gen))
        losses = {"src": out["loss"]}
        if self.fd is not None:
            with clock("step.feature_distance"):
                losses["fd"] = self.fd(out["fd_image"], out["feat"], out["fd_label"])
        with clock("step.backward"):
            (losses["src"] + hp.fd_lambda * losses.get("fd", 0.0)).backward()

        # 3-4. pseudo labels on the target, ClassMix, strong augmentation, weighted loss
        if teacher is not None:
            with clock("step.teacher_labels"), torch.no_grad(), self.amp(), teacher.predicting() as model:
                pl, pl_weight, q = teacher_labels(model, xt, valid, hp)
            with clock("step.mix"):
                masks = classmix_masks(ys, gen)
                xm = strong_augment(mix(masks, xs, xt), gen, hp.color_jitter, hp.color_jitter_p, hp.blur)
                ym = mix(masks, ys, pl)
                wm = mix(masks, torch.ones_like(pl_weight), pl_weight)
            with clock("step.forward"), self.amp():
                out_m = student(xm, ym, wm, seg.draw(xm.shape[0], *xm.shape[-2:], gen))
            with clock("step.backward"):
                out_m["loss"].backward()
            losses.update({"mix": out_m["loss"], "stat.q": q})
        return {k: v.detach() for k, v in losses.items()}

    def update(self) -> None:
        # 5. AdamW step, warm-up + poly schedule (fit calls this once the losses are finite)
        self.opt.step()
        self.sched.step()

    def evaluate(self, dataset, record=None) -> dict:
        prediction = unwrap(self.student).prediction(self.hp, self.data.num_classes)
        return evaluate(prediction, dataset, class_names=self.data.class_names, device=self.run.device, record=record)

    def pictures(self, dataset, indices):
        """The EMA teacher's pseudo labels of the chosen images (pixels below τ ignored, white), one
        ClassMix image each (a source image's classes pasted onto it, as step 4 mixes) and, for HRDA's
        multi-resolution segmentor, its scale attention (white: the HR detail prediction)."""
        out, captions, seg = {}, {}, unwrap(self.student)
        if self.teacher is not None:
            with self.teacher.predicting() as model:
                logits = pictures.outputs(model.predict, dataset, indices, self.run.device, self.hp.eval_size)
            tau = self.hp.pseudo_threshold
            out["pseudo"] = {i: pictures.confident_labels(v, tau) for i, v in logits.items()}
            captions["pseudo"] = (f"the teacher's pseudo labels, pixels below τ = {tau:g} white (their loss weight "
                                  f"scales with the share above τ)")
            out["mixed"] = {i: mixed_picture(self.data.source[j], dataset[i]["image"])
                            for i, j in pictures.paired_sources(dataset, indices, self.data.source).items()}
            captions["mixed"] = ("a ClassMix image: half the classes of a source image (resized to this one) pasted "
                                 "onto it, before colour jitter and blur")
        if hasattr(seg, "crop_picture"):   # HRDA: the geometry of its training crops
            out["crops"] = {i: seg.crop_picture(dataset[i]["image"]) for i in indices}
            captions["crops"] = "the training crop drawn on this image: context (LR) window yellow, detail (HR) window red"
        if getattr(seg, "mode", None) == "lr+hr":
            att = pictures.outputs(seg.scale_attention, dataset, indices, self.run.device, self.hp.eval_size)
            out["attention"] = {i: pictures.grey(v, 0.0, 1.0) for i, v in att.items()}
            captions["attention"] = "the scale attention: black = the LR context prediction, white = the HR detail one"
        return out, captions


def dacs(run: Run, hp: DAFormerConfig, data: UDAData, segmentor: nn.Module) -> Step:
    """One DACS stage on a segmentor ("source" when self_training is off)."""
    return fit(run, DACSStep(run, hp, data, segmentor), stage="dacs" if hp.self_training else "source",
               iterations=hp.iterations, eval_every=hp.eval_every)


@register("daformer", DAFormerConfig, PRESETS, trained=trained_segmentor(build_segmentor))
def daformer(run: Run, hp: DAFormerConfig, data: UDAData) -> Step:
    return dacs(run, hp, data, build_segmentor(hp, data.num_classes))
