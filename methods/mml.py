"""MML: multi-spectral mutual learning for RGB -> thermal segmentation (the mutual-learning extension
of MS-UDA, Kim et al. RAL 2021; its sections cited below), on MS-UDA's setting.

Algorithm (one iteration; a day RGB-T pair x = (x_rgb, x_th) of MFNet with the expert's hard
pseudo label y; encoders E_rgb, E_th, one shared decoder D with attention blocks at 4 scales,
a discriminator ψ on predictions):
  0. (once, an artifact every trial reads) the expert, an RGB model trained on Cityscapes, labels
     MFNet's day RGB training images; its classes mapped to MFNet's (car; person and rider ->
     person; bicycle and motorcycle -> bicycle; every other class -> unlabeled). With
     day_labels="mfnet", MFNet's own labels of those images in the same label space instead.
  1. P_rgb = D(E_rgb(x_rgb)), P_th = D(E_th(x_th)).
  2. L_MML(P_s, P_t) = L_KL(P_s, P_t) + δ · L_KT(P_s, y), with L_KL(P_s, P_t) = Σ p_t log(p_t / p_s)
     (P_t detached: the other stream is the teacher) and L_KT the pixel CE with y; δ ramps from
     delta_start to delta_end over training (methods/parts/ramps.py; the paper: linear 0.2 -> 1).
  3. L_adv = BCE(ψ(P_th), RGB): the thermal prediction fools ψ (ψ frozen here);
     L_att = Σ_scales MSE(KAM_th, KAM_rgb) + MSE(CAM_th, CAM_rgb) over the decoder's attention maps.
  4. each part gets the gradient of its own loss, as the paper's update rules route them:
       E_rgb <- L_MML(P_rgb, P_th)
       E_th  <- L_MML(P_th, P_rgb) + γ · L_adv
       D     <- α · L_MML(P_rgb, P_th) + β · L_MML(P_th, P_rgb) + γ · L_adv + L_att
     and ψ <- L_Dis = (BCE(ψ(P_rgb), RGB) + BCE(ψ(P_th), THERMAL)) / 2 on detached predictions.
  5. SGD steps for E_rgb, E_th, D (poly); an Adam step for ψ.
Inference uses the thermal stream only: D(E_th(x_th)). `kl_loss` / `att_loss` switch L_KL / L_att
off (the paper's Table 3). Scored as the paper: car, person, bicycle on thermal images, day and
night also apart (`day.miou`, `night.miou`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Subset

from udalab.datasets.labels import IGNORE_INDEX
from udalab.datasets.mfnet import CITYSCAPES_TO_MFNET, EVAL_3, VIEWS, time_of, write_pseudo_labels
from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from udalab.methods.advent import main_prediction
from udalab.methods.engine import (ConfigError, HParams, Prediction, Run, Step, Stream, UDAData, autocast, evaluate, fit,
                                   register, scale_size)
from udalab.methods.engine import pictures
from udalab.methods.engine.artifacts import get_or_build, get_or_build_trained, link_tree
from udalab.methods.engine.registry import train_loop
from udalab.methods.engine.run import LocalSession
from udalab.methods.nets.discriminator import FCDiscriminator, bce_to, smallest_input
from udalab.methods.nets.two_stream import MMLNet
from udalab.methods.parts.losses import seg_ce
from udalab.methods.parts.optim import SGDPoly, adam_discriminator, poly
from udalab.methods.parts.ramps import SHAPES, ramp

log = logging.getLogger("udalab")
DAY_LABELS = ("expert", "mfnet")
RGB, THERMAL = 0.0, 1.0  # discriminator labels (z = 0 RGB, z = 1 thermal)


@dataclass
class ExpertStage(HParams):
    """The expert whose pseudo labels MML and MS-UDA learn from (an artifact): an RGB DeepLab-v2 trained on
    Cityscapes with this preset of source_only (the paper's expert is an HRNet; a Cityscapes model is what
    matters), `expert_overrides` (source_only's fields) over that preset's settings."""

    expert_preset: str = "paper"
    expert_overrides: dict = field(default_factory=dict)
    # "expert": the expert's pseudo labels (the papers). "mfnet": MFNet's own labels of the same day
    # images in the expert's label space (classes other than car, person, bicycle -> unlabeled): a
    # control that asks what the losses do once the labels are right; not a setting of the papers.
    day_labels: str = "expert"

    def validate(self) -> None:
        super().validate()
        if self.day_labels not in DAY_LABELS:
            raise ConfigError(f"day_labels must be one of {DAY_LABELS}, got {self.day_labels!r}")

    def nested_runs(self) -> dict[str, dict]:
        if self.day_labels != "expert":
            return super().nested_runs()
        return {**super().nested_runs(), "expert_overrides": {"method": "source_only", "preset": self.expert_preset}}


@dataclass
class MMLConfig(SGDPoly, ExpertStage):
    # model: MS-UDA's ResNet-50 encoders from ImageNet (thermal conv1: the mean of the RGB filters)
    backbone_depth: int = 50
    pretrained: str = "imagenet"
    decoder_dim: int = 256                 # the shared decoder's width (not stated; RTFNet-style)
    # data: MFNet 640x480, batch 8, flips; day images for training (Sec. 4.1)
    size: tuple = (640, 480)
    batch_size: int = 8
    # optimisation: SGD 0.002, momentum 0.9, wd 5e-4, poly 0.9; Adam 0.002 for ψ; 300 epochs of the
    # ~400 day training pairs at batch 8 (Sec. 4.1)
    iterations: int = 15_000
    poly_iterations: int | None = None
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    lr_d: float = 0.002
    # losses: α, β, γ = 1, 0.25, 0.01; δ linear 0.2 -> 1 (Sec. 3.4)
    alpha: float = 1.0
    beta: float = 0.25
    gamma: float = 0.01
    delta_start: float = 0.2
    delta_end: float = 1.0
    delta_shape: str = "linear"
    kl_loss: bool = True
    att_loss: bool = True
    eval_every: int = 1000
    precision: str = "fp32"

    def validate(self) -> None:
        super().validate()
        if self.delta_shape not in SHAPES:
            raise ConfigError(f"delta_shape must be one of {SHAPES}, got {self.delta_shape!r}")
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise ConfigError(f"alpha, beta and gamma must be >= 0, got {self.alpha}, {self.beta}, {self.gamma}")
        if self.eval_every <= 0 or self.batch_size <= 0:
            raise ConfigError("eval_every and batch_size must be positive")

    def images(self) -> dict:
        return {"source_size": self.size, "target_size": self.size}

    def shortened(self, iterations: int, eval_every: int) -> dict:
        return {**super().shortened(iterations, eval_every), "eval_every": eval_every}

    def scaled(self, factor: float) -> dict:
        return {**super().scaled(factor), "size": scale_size(self.size, factor, least=smallest_input())}


# The mini data (MFNet / 4 = 160x120): ResNet-18 encoders from the ImageNet stand-in, a 64-wide
# decoder, batch 4, 600 steps, ADVENT's mini source-only as the expert (on mini Cityscapes).
MINI = dict(backbone_depth=18, pretrained="standin", decoder_dim=64, size=(160, 120), batch_size=4,
            iterations=600, eval_every=200, expert_preset="mini")
SMOKE = {**MINI, "pretrained": "none", "decoder_dim": 16, "size": (80, 60), "batch_size": 2, "iterations": 4,
         "eval_every": 2, "expert_preset": "smoke"}
PRESETS = {"mini": MINI, "smoke": SMOKE}


def thermal_prediction(net: MMLNet, num_classes: int, size) -> Prediction:
    """Inference: the thermal stream alone, on the image at `size`."""
    return Prediction(net.thermal, num_classes, input_size=size, modules=(net,))


def evaluate_streams(net: MMLNet, dataset, data, size, device, record=None) -> dict:
    """Thermal-only predictions (the result: miou, iou.<class>), scored on car / person / bicycle
    (the dataset's eval classes) over all images and day and night apart (day.*, night.*); the RGB
    stream's beside them (rgb.*: the per-stream rows of Table 1)."""
    def score(stream, ds, record=None):
        return evaluate(Prediction(stream, data.num_classes, input_size=size), ds, class_names=data.class_names,
                        device=device, eval_classes=data.eval_classes, record=record)

    metrics = score(net.thermal, dataset, record)
    for time in ("day", "night"):
        idx = [i for i, (img, _) in enumerate(dataset.files) if time_of(img.name) == time]
        if idx:
            metrics.update({f"{time}.{k}": v for k, v in score(net.thermal, Subset(dataset, idx)).items()})
    rgb = score(net.rgb, dataset)
    metrics.update({f"rgb.{k}": v for k, v in rgb.items() if k in ("miou", "pixel_acc") or k.startswith("iou.")})
    return metrics


def stream_pictures(net: MMLNet, dataset, indices, size, device):
    """The thermal input the prediction is made from, and the RGB stream's prediction beside it."""
    rgb = pictures.outputs(net.rgb, dataset, indices, device, size)
    return ({"thermal": {i: pictures.grey(dataset[i]["image"][3]) for i in indices},
             "rgb_pred": {i: v.argmax(0).to(torch.uint8).numpy() for i, v in rgb.items()}},
            {"thermal": "the thermal input (the prediction sees only this)",
             "rgb_pred": "the RGB stream's prediction (trained beside the thermal one, unused at inference)"})


# ---------------------------------------------------------------------------------------
# 0. The expert's pseudo labels, an artifact.


def expert_pseudo_labels(config: dict, hp: MMLConfig, mfnet_root: Path, run: Run) -> tuple[Path, str]:
    """(root, label_dir) of MFNet's day training images with the expert's pseudo labels: a mirror of
    the MFNet folder (links) plus pseudo/<expert>/, built the first time any trial asks for this
    expert. The expert (source only on Cityscapes) trains as a run of its own, checkpointing into the
    artifact's partial folder."""
    expert_config = {"method": "source_only", "preset": hp.expert_preset, "seed": 0, "source": "cityscapes",
                     "target": "cityscapes", "data_root": {"cityscapes": (config.get("data_root") or {}).get("cityscapes")},
                     **hp.expert_overrides}
    key = {"expert": expert_config, "mfnet_root": str(mfnet_root), "split": "train", "time": "day"}
    name = "deeplab_cityscapes"

    def build(tmp: Path, partial: Path) -> None:
        session = LocalSession(partial, device=str(run.device))
        expert = train_loop(expert_config, session)
        prediction = main_prediction(expert.hp, expert.G, expert.data.num_classes).to(run.device)
        mean = torch.tensor(IMAGENET_MEAN, device=run.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=run.device).view(1, 3, 1, 1)

        def predict(image: torch.Tensor) -> np.ndarray:
            x = (image[None].to(run.device).float() / 255 - mean) / std
            train_ids = prediction.labels(x, image.shape[-2:])[0].cpu().numpy().astype(np.uint8)
            return CITYSCAPES_TO_MFNET[train_ids]

        link_tree(mfnet_root, tmp / "data")
        day_rgb = VIEWS["mfnet_rgb_day"](tmp / "data", split="train")
        write_pseudo_labels(day_rgb, predict, name)
        quality = pseudo_label_quality(day_rgb, f"pseudo/{name}")
        (tmp / "meta.json").write_text(json.dumps({"expert_miou_on_cityscapes_val": session.reports[-1].get("miou"),
                                                   "images": len(day_rgb), "pseudo_labels_vs_labels": quality},
                                                  default=str) + "\n")

    root = get_or_build_trained("expert", key, build)
    meta = json.loads((root / "meta.json").read_text())
    if "pseudo_labels_vs_labels" in meta:       # what every trial learns from, said in each trial's log
        log.info("expert pseudo labels on MFNet day train, scored against its own labels: %s",
                 {k: round(v, 1) for k, v in meta["pseudo_labels_vs_labels"].items()})
    return root / "data", f"pseudo/{name}"


def mfnet_day_labels(mfnet_root: Path) -> tuple[Path, str]:
    """(root, label_dir) of MFNet's day training images with their own labels in the expert's label
    space: car, person and bicycle kept, every other class unlabeled (day_labels="mfnet")."""
    name = "mfnet_car_person_bicycle"

    def build(tmp: Path) -> None:
        link_tree(mfnet_root, tmp / "data")
        day = VIEWS["mfnet_rgb_day"](tmp / "data", split="train")
        out = tmp / "data" / "pseudo" / name
        out.mkdir(parents=True)
        for i in range(len(day)):
            y = day.load_label(i)
            Image.fromarray(np.where(np.isin(y, EVAL_3), y, 0).astype(np.uint8), mode="L").save(
                out / day.prediction_name(i))

    root = get_or_build("day_labels", {"mfnet_root": str(mfnet_root), "split": "train", "time": "day",
                                       "kept": list(EVAL_3)}, build)
    return root / "data", f"pseudo/{name}"


def pseudo_label_quality(dataset, label_dir: str) -> dict:
    """mIoU and IoU of car / person / bicycle of the pseudo labels under `label_dir` against the
    dataset's own labels (MFNet's train labels exist; the methods never read them)."""
    from udalab.datasets.metrics import ConfusionMatrix

    truth = VIEWS["mfnet_rgb_day"](dataset.root, split=dataset.split)
    pseudo = VIEWS["mfnet_rgb_day"](dataset.root, split=dataset.split, label_dir=label_dir)
    cm = ConfusionMatrix(len(truth.class_names))
    for i in range(len(truth)):
        pred = pseudo.load_label(i).astype(np.int64)
        pred[pred == IGNORE_INDEX] = 0                     # no label: scored as "unlabeled"
        cm.update(torch.from_numpy(pred),
                  torch.from_numpy(truth.load_label(i).astype(np.int64)))
    out = cm.summary(truth.class_names, eval_classes=(1, 2, 3))
    return {k: v for k, v in out.items() if k == "miou" or k in ("iou.car", "iou.person", "iou.bicycle")}


# ---------------------------------------------------------------------------------------
# The training step.


def kl(p_student_logits: torch.Tensor, p_teacher_logits: torch.Tensor) -> torch.Tensor:
    """L_KL(P_s, P_t) = Σ_c p_t log(p_t / p_s), per pixel, averaged; the teacher P_t is detached."""
    log_s = F.log_softmax(p_student_logits, 1)
    log_t = F.log_softmax(p_teacher_logits.detach(), 1)
    return (log_t.exp() * (log_t - log_s)).sum(1).mean()


def route_gradients(routed) -> None:
    """Each part's .grad from its own loss only ((module, loss) pairs over one shared graph): the
    papers' per-part update rules, where a loss reaches some parts of a network and not others."""
    for k, (part, loss) in enumerate(routed):
        params = [p for p in part.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=k < len(routed) - 1, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g


class MMLStep(Step):
    """MML's iteration; also the frame of MS-UDA's (methods/ms_uda.py: the same networks without
    attention, the same optimisers, evaluation, pictures and state)."""

    def __init__(self, run: Run, hp: MMLConfig, data, train_set, attention: bool = True):
        self.run, self.hp, self.data, self.train_set = run, hp, data, train_set
        # three parts, three gradients: no DDP
        self.net = MMLNet(hp.backbone_depth, hp.pretrained, hp.decoder_dim, data.num_classes, attention).to(run.device)
        self.psi = FCDiscriminator(data.num_classes).to(run.device)
        self.networks = (self.net, self.psi)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        self.opt_psi = adam_discriminator(self.psi.parameters(), hp.lr_d)
        length = hp.poly_length(hp.iterations)
        self.sched, self.sched_psi = poly(self.opt, length, hp.poly_power), poly(self.opt_psi, length, hp.poly_power)
        self.saved = ("net", "psi", "opt", "opt_psi", "sched", "sched_psi")

    def streams(self) -> dict[str, Stream]:
        return {"pair": Stream(self.train_set, self.hp.batch_size, id=0)}

    def delta(self, it: int) -> float:
        return ramp(it / max(self.hp.iterations - 1, 1), self.hp.delta_start, self.hp.delta_end, self.hp.delta_shape)

    def losses(self, x: torch.Tensor, y: torch.Tensor, it: int) -> dict[str, torch.Tensor]:
        """Steps 1-3: every loss of one iteration (graphs kept for step 4)."""
        hp, net = self.hp, self.net
        with autocast(self.run.device, hp.precision):
            p_rgb = net.rgb(x).float()
            maps_rgb = net.D.maps()
            p_th = net.thermal(x).float()
            maps_th = net.D.maps()
        delta = self.delta(it)
        out = {"kt_rgb": seg_ce(p_rgb, y), "kt_th": seg_ce(p_th, y)}
        out["kl_rgb"] = kl(p_rgb, p_th) if hp.kl_loss else p_rgb.new_zeros(())
        out["kl_th"] = kl(p_th, p_rgb) if hp.kl_loss else p_th.new_zeros(())
        out["mml_rgb"] = out["kl_rgb"] + delta * out["kt_rgb"]
        out["mml_th"] = out["kl_th"] + delta * out["kt_th"]
        self.psi.requires_grad_(False)
        out["adv"] = bce_to(self.psi(F.softmax(p_th, 1)), RGB)
        self.psi.requires_grad_(True)
        out["att"] = (sum(F.mse_loss(kt, kr) + F.mse_loss(ct, cr) for (kt, ct), (kr, cr) in zip(maps_th, maps_rgb))
                      if hp.att_loss else p_th.new_zeros(()))
        out["p_rgb"], out["p_th"] = p_rgb.detach(), p_th.detach()
        return out

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        hp, net = self.hp, self.net
        self.opt.zero_grad(set_to_none=True)
        self.opt_psi.zero_grad(set_to_none=True)
        out = self.losses(batch["pair"]["image"], batch["pair"]["label"], it)
        # 4. each part's own loss (the paper's update rules)
        routed = ((net.E_rgb, out["mml_rgb"]),
                  (net.E_th, out["mml_th"] + hp.gamma * out["adv"]),
                  (net.D, hp.alpha * out["mml_rgb"] + hp.beta * out["mml_th"] + hp.gamma * out["adv"] + out["att"]))
        route_gradients(routed)
        d = (bce_to(self.psi(F.softmax(out["p_rgb"], 1)), RGB) + bce_to(self.psi(F.softmax(out["p_th"], 1)), THERMAL)) / 2
        d.backward()
        keep = ("kl_rgb", "kl_th", "kt_rgb", "kt_th", "adv", "att")
        return {**{k: out[k].detach() for k in keep}, "dis": d.detach(), "stat.delta": torch.tensor(self.delta(it))}

    def update(self) -> None:
        # 5. SGD for the encoders and the decoder, Adam for ψ
        self.run.sync_grads(self.net, self.psi)
        for opt_or_sched in (self.opt, self.opt_psi, self.sched, self.sched_psi):
            opt_or_sched.step()

    def evaluate(self, dataset, record=None) -> dict:
        return evaluate_streams(self.net, dataset, self.data, self.hp.size, self.run.device, record)

    def pictures(self, dataset, indices):
        """The thermal input the prediction is made from, and the RGB stream's prediction beside it
        (training only: inference never sees RGB)."""
        return stream_pictures(self.net, dataset, indices, self.hp.size, self.run.device)


def trained_mml(hp: MMLConfig, num_classes: int, state: dict, attention: bool = True) -> Prediction:
    """The thermal stream of a trained two-stream network (`load_trained`)."""
    net = MMLNet(hp.backbone_depth, "none", hp.decoder_dim, num_classes, attention)
    net.load_state_dict(state["net"])
    return thermal_prediction(net.eval(), num_classes, hp.size)


def day_pairs(run: Run, hp, data: UDAData):
    """Step 0: MFNet's day RGB-T training pairs with the expert's pseudo labels (the artifact), or
    with MFNet's own labels (day_labels="mfnet")."""
    if hp.day_labels == "mfnet":
        root, label_dir = mfnet_day_labels(Path(data.target.root))
    else:
        root, label_dir = expert_pseudo_labels(run.config, hp, Path(data.target.root), run)
    return VIEWS["mfnet_rgbt_day"](root, split="train", size=hp.size, flip=True, label_dir=label_dir)


@register("mml", MMLConfig, PRESETS, datasets=("mfnet_rgbt_day", "mfnet@3"), trained=trained_mml)
def mml(run: Run, hp: MMLConfig, data: UDAData) -> Step:
    train = day_pairs(run, hp, data)                                                                   # 0.
    return fit(run, MMLStep(run, hp, data, train), stage="mml", iterations=hp.iterations, eval_every=hp.eval_every)
