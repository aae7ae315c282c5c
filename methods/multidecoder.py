"""Multi-decoder U-Net with a pseudo-depth decoder and a decoder training schedule (the
multi-decoder pseudo-depth paper; its tables cited below).

Model: a U-Net with one ResNet encoder and two decoders with skip connections from it, a
semantic one (21 VOC classes) and a depth one (1 channel). Losses: L_seg = α(1 - e^(-CE))^γ · CE
(focal, γ = 2), L_depth = MSE against the pseudo depth normalised per image (methods/parts/losses.py),
"both" = 0.85 L_seg + 0.15 L_depth. Adam 1e-4.

Algorithm (the schedule, `schedule` = stages joined by ">", e.g. "d+copy>s>b"):
  1. the first stage trains the encoder and one decoder: "s" (semantic, L_seg) or "d" (depth, L_depth);
  2. "+copy": the first-trained decoder's weights are copied into the other, all but the output layer;
  3. then either the other decoder ("s" / "d") and then both ("b"), or both directly;
     a stage trains the encoder and its decoder(s) only; the others get no gradient.
Each stage is a `fit`, so a resumed run lands in its stage; the copy happens once, at the start
of the stage after it. Paper rows: Table 3's priority x copy x order ("s+copy>d>b", "s+copy>b",
"s>d>b", "s>b", "d+copy>s>b", "d+copy>b", "d>s>b", "d>b"), Table 2's single decoder ("s": the
depth decoder never trains) and joint training ("b"). The deployed model drops the depth
decoder (`export_semantic`). Metrics: mIoU, pixel accuracy and iIoU (VOC's instance masks:
objects of the 20 classes, background excluded, since a background "instance" is the whole
scene; datasets/metrics.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from udalab.datasets.labels import IGNORE_INDEX
from udalab.methods.engine import (ConfigError, HParams, Prediction, Run, Step, Stream, UDAData, autocast, evaluate, fit,
                                   register, scale_size)
from udalab.methods.engine import pictures
from udalab.methods.nets.unet import MultiDecoderUNet, UNetDecoder
from udalab.methods.parts.losses import focal_loss, normalised_depth_mse

DECODERS = {"s": "semantic", "d": "depth"}


@dataclass
class MultiDecoderConfig(HParams):
    # model: U-Net, ResNet-50 encoder from ImageNet, decoder channels 256-128-64-32-16
    # (segmentation_models_pytorch's Unet on resnet50)
    backbone_depth: int = 50
    pretrained: str = "imagenet"
    decoder_channels: tuple = (256, 128, 64, 32, 16)
    # data: VOC 2012 train with pseudo depth, random crops (the paper states no size: 320 px here)
    size: tuple | None = None
    crop_size: tuple = (320, 320)
    batch_size: int = 8
    # optimisation: Adam 1e-4 (the paper); per-stage length: `iterations` split over the stages
    lr: float = 1e-4
    iterations: int = 30_000
    first_share: float = 0.0             # 0: equal stages; else the first stage's share of `iterations`
    # losses: focal γ = 2 (α 1), both = 0.85 L_seg + 0.15 L_depth (the paper)
    focal_gamma: float = 2.0
    focal_alpha: float = 1.0
    depth_weight: float = 0.15
    # the schedule: the paper's best, depth first, weight copy, then semantic, then both
    schedule: str = "d+copy>s>b"
    eval_every: int = 2000
    eval_size: tuple | None = None       # VOC images vary in size: predicted as loaded (or resized to this)
    precision: str = "fp32"

    def validate(self) -> None:
        super().validate()
        stages = self.stages()
        if not 0.0 <= self.first_share < 1.0:
            raise ConfigError(f"first_share must be in [0, 1), got {self.first_share}")
        if not 0.0 <= self.depth_weight <= 1.0:
            raise ConfigError(f"depth_weight must be in [0, 1], got {self.depth_weight}")
        if min(self.stage_iterations()) < 1:
            raise ConfigError(f"iterations={self.iterations} leaves a stage of {stages} with no step")

    def stages(self) -> list[tuple[str, bool]]:
        """[(decoder "s" | "d" | "b", copy after it)] of `schedule`, checked."""
        out = []
        for part in self.schedule.split(">"):
            name, _, flag = part.strip().partition("+")
            if name not in ("s", "d", "b") or flag not in ("", "copy"):
                raise ConfigError(f"schedule {self.schedule!r}: each stage is s, d or b, the first optionally "
                                  f"with +copy, joined by '>' (e.g. 'd+copy>s>b')")
            out.append((name, flag == "copy"))
        if any(c for _, c in out[1:]) or (out[0][1] and out[0][0] == "b"):
            raise ConfigError(f"schedule {self.schedule!r}: only a first stage of one decoder (s or d) copies")
        return out

    def images(self) -> dict:
        """VOC as loaded (or at `size`), random crops, flips."""
        return {"source_size": self.size, "target_size": self.size, "crop": self.crop_size, "flip": True}

    def stage_iterations(self) -> list[int]:
        n = len(self.stages())
        if n == 1:
            return [self.iterations]
        first = round(self.first_share * self.iterations) if self.first_share else self.iterations // n
        rest = self.iterations - first
        return [first] + [rest // (n - 1) + (1 if k < rest % (n - 1) else 0) for k in range(n - 1)]

    def shortened(self, iterations: int, eval_every: int) -> dict:
        """Each stage `iterations` long (equal stages: `first_share` 0)."""
        return {**super().shortened(iterations * len(self.stages()), eval_every), "first_share": 0.0,
                "eval_every": eval_every}

    def scaled(self, factor: float) -> dict:
        return {**super().scaled(factor), **{k: scale_size(getattr(self, k), factor)
                                             for k in ("size", "crop_size", "eval_size")}}


MINI = dict(backbone_depth=18, pretrained="standin", decoder_channels=(64, 32, 32, 16, 16), crop_size=(96, 96),
            batch_size=4, lr=1e-3, iterations=600, eval_every=200)
SMOKE = {**MINI, "pretrained": "none", "decoder_channels": (16, 16, 8, 8, 8), "crop_size": (48, 48), "batch_size": 2,
         "iterations": 6, "eval_every": 2, "eval_size": (48, 48)}
PRESETS = {"mini": MINI, "smoke": SMOKE}


def copy_decoder(src: UNetDecoder, dst: UNetDecoder) -> list[str]:
    """Step 2: every tensor of `src` into `dst` except the output layer (`head`); returns the names copied."""
    names = [k for k in src.state_dict() if not k.startswith("head.")]
    dst.load_state_dict({k: v for k, v in src.state_dict().items() if k in names}, strict=False)
    return names


# ---------------------------------------------------------------------------------------
# One stage.


class DecoderStageStep(Step):
    def __init__(self, run: Run, hp: MultiDecoderConfig, data, model: MultiDecoderUNet, decoder: str,
                 copy_from: str | None, iterations: int):
        self.run, self.hp, self.data, self.model = run, hp, data, model
        self.decoder, self.copy_from = decoder, copy_from
        self.networks = (model,)
        trained = [model.encoder] + ([model.semantic, model.depth] if decoder == "b" else
                                     [getattr(model, DECODERS[decoder])])
        for part in (model.encoder, model.semantic, model.depth):       # 3. only this stage's parts learn
            part.requires_grad_(any(part is t for t in trained))
        self.opt = torch.optim.Adam([p for t in trained for p in t.parameters()], lr=hp.lr)
        self.saved = ("model", "opt")

    def begin(self) -> None:
        if self.copy_from is not None:                                  # 2. weight copy, once
            src = getattr(self.model, DECODERS[self.copy_from])
            dst = self.model.depth if self.copy_from == "s" else self.model.semantic
            copy_decoder(src, dst)

    def streams(self) -> dict[str, Stream]:
        return {"voc": Stream(self.data.source, self.hp.batch_size, id=0)}

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        hp = self.hp
        x, y, depth = batch["voc"]["image"], batch["voc"]["label"], batch["voc"]["depth"]
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.run.device, hp.precision):
            feats = self.model.encoder(x)
            seg = focal_loss(self.model.semantic(feats), y, hp.focal_gamma, hp.focal_alpha) \
                if self.decoder in ("s", "b") else None
            dep = normalised_depth_mse(self.model.depth(feats), depth, y != IGNORE_INDEX) \
                if self.decoder in ("d", "b") else None
        if self.decoder == "b":
            loss = (1 - hp.depth_weight) * seg + hp.depth_weight * dep
        else:
            loss = seg if seg is not None else dep
        loss.backward()
        return {k: v.detach() for k, v in (("seg", seg), ("depth", dep)) if v is not None}

    def update(self) -> None:
        self.run.sync_grads(self.model)
        self.opt.step()

    def evaluate(self, dataset, record=None) -> dict:
        return evaluate(semantic_prediction(self.hp, self.model, self.data.num_classes), dataset,
                        class_names=self.data.class_names, device=self.run.device, iiou=True, record=record)

    def pictures(self, dataset, indices):
        """The depth decoder's prediction (its own range, far light) where the schedule trains it (the
        single decoder's never learns: its output would be the initialisation's), and the pseudo depth
        where the dataset has it (voc_depth)."""
        model = self.model
        out, caps = {}, {}
        if any(name in ("d", "b") for name, _ in self.hp.stages()):
            depth = pictures.outputs(lambda x: model.depth(model.encoder(x)), dataset, indices, self.run.device,
                                     self.hp.eval_size)
            out["depth"] = {i: pictures.grey(v) for i, v in depth.items()}
            caps["depth"] = "the depth decoder's prediction (stretched to its range; dropped at deployment)"
        if indices and "depth" in dataset[indices[0]]:
            out["pseudo_depth"] = {i: pictures.grey(dataset[i]["depth"]) for i in indices}
            caps["pseudo_depth"] = "the pseudo depth it learns from"
        return out, caps


def semantic_prediction(hp: MultiDecoderConfig, model: MultiDecoderUNet, num_classes: int) -> Prediction:
    """The semantic decoder on the image as loaded (or at eval_size): the deployed model's prediction."""
    return Prediction(model.predict, num_classes, input_size=hp.eval_size, modules=(model,))


def trained_multidecoder(hp: MultiDecoderConfig, num_classes: int, state: dict) -> Prediction:
    model = MultiDecoderUNet(hp.backbone_depth, "none", hp.decoder_channels, num_classes)
    model.load_state_dict(state["model"])
    return semantic_prediction(hp, model.eval(), num_classes)


def run_schedule(run: Run, hp: MultiDecoderConfig, data, model: MultiDecoderUNet) -> Step:
    """Steps 1-3: one fit per stage of the schedule; returns the last stage's step."""
    stages, lengths = hp.stages(), hp.stage_iterations()
    for k, ((decoder, _), n) in enumerate(zip(stages, lengths)):
        copy_from = stages[0][0] if k == 1 and stages[0][1] else None
        step = fit(run, DecoderStageStep(run, hp, data, model, decoder, copy_from, n), stage=f"{k + 1}-{decoder}",
                   iterations=n, eval_every=hp.eval_every, last=k == len(stages) - 1)
    return step


@register("multidecoder", MultiDecoderConfig, PRESETS, datasets=("voc_depth", "voc"), trained=trained_multidecoder)
def multidecoder(run: Run, hp: MultiDecoderConfig, data: UDAData) -> Step:
    model = MultiDecoderUNet(hp.backbone_depth, hp.pretrained, hp.decoder_channels, data.num_classes).to(run.device)
    return run_schedule(run, hp, data, model)
