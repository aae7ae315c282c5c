"""MS-UDA: multi-spectral unsupervised domain adaptation for thermal segmentation (Kim et al.,
RAL 2021), the baseline MML extends.

Algorithm (one iteration; a day RGB-T pair x = (x_rgb, x_th) of MFNet with the expert's hard
pseudo label y; encoders E_rgb, E_th, one shared decoder D, a discriminator ψ on predictions):
  0. (once each, artifacts every trial reads) the expert's pseudo labels on MFNet's day RGB images
     (MML's, methods/mml.py), and a CycleGAN trained from day to night thermal images of MFNet's
     training split (the stage UDAS translates with, methods/cyclegan.py): its day -> night generator.
  1. fake night: with probability p_night the thermal batch is replaced by its translation.
  2. P_rgb = D(E_rgb(x_rgb)), P_th = D(E_th(x_th)); ŷ = argmax P_rgb (detached): the RGB stream
     teaches the thermal one, one way.
  3. L_adv = LS-GAN(ψ(P_th), RGB): the thermal prediction fools ψ (ψ frozen here).
  4. each part gets the gradient of its own loss:
       E_rgb <- CE(P_rgb, y)
       E_th  <- CE(P_th, ŷ) + γ · L_adv
       D     <- α · CE(P_rgb, y) + β · CE(P_th, ŷ) + γ · L_adv
     and ψ <- (LS-GAN(ψ(P_rgb), RGB) + LS-GAN(ψ(P_th), THERMAL)) / 2 on detached predictions.
  5. SGD steps for E_rgb, E_th, D (poly); an Adam step for ψ.
Inference uses the thermal stream only: D(E_th(x_th)); the RGB stream is scored beside it (rgb.*).
The networks are MML's without its attention blocks (methods/nets/two_stream.py).

`adapt=False` is the source-only row of MS-UDA's and MML's tables: what the expert's labels alone
teach each stream, with the same networks, data, optimiser and schedule:
  2'. E_rgb <- CE(P_rgb, y),  E_th <- CE(P_th, y),  D <- α · CE(P_rgb, y) + β · CE(P_th, y)
      (no RGB -> thermal transfer, no ψ, no fake night).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from udalab.datasets.transforms import THERMAL_MEAN, THERMAL_STD
from udalab.methods.cyclegan import CycleGANStage, train_stage
from udalab.methods.engine import ConfigError, Run, Step, UDAData, autocast, fit, register, scale_size, unwrap
from udalab.methods.engine.artifacts import get_or_build_trained
from udalab.methods.nets.discriminator import smallest_input
from udalab.methods.mml import MINI as MML_MINI
from udalab.methods.mml import SMOKE as MML_SMOKE
from udalab.methods.mml import ExpertStage, MMLStep, day_pairs, route_gradients, trained_mml
from udalab.methods.nets.cyclegan import ResnetGenerator
from udalab.methods.parts.losses import lsgan, seg_ce
from udalab.methods.parts.optim import SGDPoly

RGB, THERMAL = 0.0, 1.0  # discriminator targets: RGB prediction 0, thermal 1 (the reference)


@dataclass
class MSUDAConfig(SGDPoly, CycleGANStage, ExpertStage):
    # model: two ResNet-50 encoders from ImageNet (thermal conv1: the mean RGB filter), one decoder
    backbone_depth: int = 50
    pretrained: str = "imagenet"
    decoder_dim: int = 256
    # data: MFNet 640x480, batch 16, flips, day pairs (yeong5366/MS-UDA's training script)
    size: tuple = (640, 480)
    batch_size: int = 16
    # optimisation: SGD 0.002 (momentum 0.9, wd 5e-4), poly 0.9; ψ: Adam 2e-4 (0.9, 0.99);
    # 100 epochs of the ~400 day training pairs at batch 16
    iterations: int = 2_500
    poly_iterations: int | None = None
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    lr_d: float = 2e-4
    # losses: α 1, β 0.25 (the reference also uses 0.1), γ 0.01, LS-GAN
    alpha: float = 1.0
    beta: float = 0.25
    gamma: float = 0.01
    # fake night: each thermal batch replaced by its CycleGAN day -> night version with p 0.5
    p_night: float = 0.5
    cyclegan_iterations: int = 200 * 400        # 200 epochs (100 + 100 decaying) of the day images
    eval_every: int = 250
    # False: the source-only baseline (step 2' above); not a setting of the paper
    adapt: bool = True
    precision: str = "fp32"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.p_night <= 1.0:
            raise ConfigError(f"p_night must be in [0, 1], got {self.p_night}")
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


# The mini data: MML's mini networks and schedule (so the two compare at equal cost), and UDAS's
# mini CycleGAN (16 filters, 3 blocks, 64-px crops, 600 steps).
_SHARED = ("backbone_depth", "pretrained", "decoder_dim", "size", "batch_size", "iterations", "eval_every",
           "expert_preset")
MINI = {**{k: MML_MINI[k] for k in _SHARED}, "cyclegan_iterations": 600, "cyclegan_ngf": 16,
        "cyclegan_blocks": 3, "cyclegan_crop": (64, 64)}
SMOKE = {**{k: MML_SMOKE[k] for k in _SHARED}, "cyclegan_iterations": 4, "cyclegan_ngf": 4,
         "cyclegan_blocks": 1, "cyclegan_crop": (32, 32)}
PRESETS = {"mini": MINI, "smoke": SMOKE}


# ---------------------------------------------------------------------------------------
# 0. The fake-night generator, an artifact.


def night_generator(hp: MSUDAConfig, mfnet_root: Path, run: Run) -> ResnetGenerator:
    """The day -> night thermal generator, trained the first time any trial asks for this CycleGAN
    config on this MFNet folder (thermal views: the channel replicated to 3, as CycleGAN's input)."""
    cg = hp.cyclegan()
    key = {"cyclegan": cg.key(), "seed": hp.cyclegan_seed, "source": "mfnet_thermal_day",
           "target": "mfnet_thermal_night", "root": str(mfnet_root)}

    def build(tmp: Path, partial: Path) -> None:
        step, reports = train_stage(cg, source=key["source"], target=key["target"], data_root={"mfnet": str(mfnet_root)},
                                    seed=hp.cyclegan_seed, device=run.device, checkpoint_dir=partial)
        torch.save(unwrap(step.G_AB).state_dict(), tmp / "G_day_to_night.pt")
        (tmp / "meta.json").write_text(json.dumps({"day": len(step.source.files), "night": len(step.target.files),
                                                   "last_report": reports[-1] if reports else None}, default=str))

    root = get_or_build_trained("cyclegan", key, build)
    G = ResnetGenerator(cg.ngf, cg.n_blocks)
    G.load_state_dict(torch.load(root / "G_day_to_night.pt", map_location="cpu", weights_only=True))
    return G.to(run.device).eval().requires_grad_(False)


@torch.no_grad()
def fake_night(G: ResnetGenerator, x_rgbt: torch.Tensor) -> torch.Tensor:
    """The batch with its thermal channel (normalised by THERMAL_MEAN/STD) replaced by G's night version."""
    th = x_rgbt[:, 3:4] * THERMAL_STD + THERMAL_MEAN                    # [0, 1]
    night = G((th * 2 - 1).expand(-1, 3, -1, -1)).mean(1, keepdim=True)   # [-1, 1], grey
    return torch.cat([x_rgbt[:, :3], ((night + 1) / 2 - THERMAL_MEAN) / THERMAL_STD], 1)


# ---------------------------------------------------------------------------------------
# The training step.


class MSUDAStep(MMLStep):
    """MML's networks without attention, optimisers, evaluation and state; MS-UDA's iteration."""

    def __init__(self, run: Run, hp: MSUDAConfig, data, train_set, night: ResnetGenerator | None):
        super().__init__(run, hp, data, train_set, attention=False)
        self.night = night

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        hp, net = self.hp, self.net
        x, y = batch["pair"]["image"], batch["pair"]["label"]
        self.opt.zero_grad(set_to_none=True)
        self.opt_psi.zero_grad(set_to_none=True)

        # 1. fake night for this batch with probability p_night
        night = self.night is not None and float(torch.rand((), generator=gen)) < hp.p_night
        if night:
            x = fake_night(self.night, x)

        # 2. both streams; the RGB stream's argmax teaches the thermal one
        with autocast(self.run.device, hp.precision):
            p_rgb, p_th = net.rgb(x).float(), net.thermal(x).float()
        y_hat = p_rgb.detach().argmax(1)
        ce_rgb, ce_th = seg_ce(p_rgb, y), seg_ce(p_th, y_hat)

        # 3. the thermal prediction fools ψ (frozen)
        self.psi.requires_grad_(False)
        adv = lsgan(self.psi(F.softmax(p_th, 1)), RGB)
        self.psi.requires_grad_(True)

        # 4. each part's own loss, then ψ on detached predictions (halved); 5. in update()
        route_gradients(((net.E_rgb, ce_rgb), (net.E_th, ce_th + hp.gamma * adv),
                         (net.D, hp.alpha * ce_rgb + hp.beta * ce_th + hp.gamma * adv)))
        d = (lsgan(self.psi(F.softmax(p_rgb.detach(), 1)), RGB) + lsgan(self.psi(F.softmax(p_th.detach(), 1)), THERMAL)) / 2
        d.backward()
        return {"ce_rgb": ce_rgb.detach(), "ce_th": ce_th.detach(), "adv": adv.detach(), "dis": d.detach(),
                "stat.night": torch.tensor(float(night))}


class SourceOnlyStep(MMLStep):
    """Step 2' (adapt=False): both streams learn the expert's labels; ψ is built but never trained."""

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        hp, net = self.hp, self.net
        x, y = batch["pair"]["image"], batch["pair"]["label"]
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.run.device, hp.precision):
            p_rgb, p_th = net.rgb(x).float(), net.thermal(x).float()
        ce_rgb, ce_th = seg_ce(p_rgb, y), seg_ce(p_th, y)
        route_gradients(((net.E_rgb, ce_rgb), (net.E_th, ce_th), (net.D, hp.alpha * ce_rgb + hp.beta * ce_th)))
        return {"ce_rgb": ce_rgb.detach(), "ce_th": ce_th.detach()}


@register("ms_uda", MSUDAConfig, PRESETS, datasets=("mfnet_rgbt_day", "mfnet@3"),
          trained=partial(trained_mml, attention=False))
def ms_uda(run: Run, hp: MSUDAConfig, data: UDAData) -> Step:
    train = day_pairs(run, hp, data)                                                                   # 0.
    if not hp.adapt:                                                                                   # 2'.
        return fit(run, SourceOnlyStep(run, hp, data, train), stage="source_only", iterations=hp.iterations,
                   eval_every=hp.eval_every)
    night = night_generator(hp, Path(data.target.root), run) if hp.p_night > 0 else None               # 0.
    return fit(run, MSUDAStep(run, hp, data, train, night), stage="ms_uda", iterations=hp.iterations,
               eval_every=hp.eval_every)
