"""AdaptSegNet: multi-level adversarial learning in the output space (Tsai et al., CVPR 2018).

Algorithm (one iteration, multi-level DeepLab-v2 G: primary classifier on layer4, auxiliary on
layer3; one fully convolutional discriminator per level, D_main and D_aux):
  1. source:  L_seg = CE(G_main(x_s), y_s) + λ_seg_aux · CE(G_aux(x_s), y_s)
  2. target:  P_t = softmax(G(x_t)), both levels upsampled to the input size
              G fools D: L_adv = λ_adv_main · L_gan(D_main(P_t), source) + λ_adv_aux · L_gan(D_aux(P_t), source)
  3. D learns softmax(G(x_s)) -> source and P_t -> target (detached; D frozen during step 2).
  4. SGD step of G (head x10, poly over 250k, stopped at 150k), Adam step of D (same poly).

It is ADVENT's adversarial step with the discriminators on the segmentation softmax instead
of the self-information maps (ADVENT, Sec. 3.2, built on this): `AdventStep` with `maps`
and `gan_loss` replaced, so both methods share one loop and one checkpoint layout. It is a
row of UDAS's comparison table (published 42.4 GTA5 -> Cityscapes) and the UDA step of UDAS.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from udalab.methods.advent import PRESETS as ADVENT_PRESETS
from udalab.methods.advent import AdversarialAlignment, AdventStep, DeepLabTraining, build_model, trained_model
from udalab.methods.engine import ConfigError, Run, Step, UDAData, fields_of, fit, register

GANS = ("vanilla", "lsgan")


@dataclass
class AdaptSegNetConfig(DeepLabTraining, AdversarialAlignment):
    """ADVENT's model, data and optimisers (the same reference family) with AdaptSegNet's schedule
    and adversarial loss. Reference: wasidennis/AdaptSegNet train_gta2cityscapes_multi.py."""

    iterations: int = 150_000             # NUM_STEPS_STOP (the reference stops early)
    poly_iterations: int | None = 250_000  # NUM_STEPS: the poly denominator for G and D
    lambda_seg_aux: float = 0.1           # LAMBDA_SEG (Sec. 4.1)
    lambda_adv_main: float = 0.001        # LAMBDA_ADV_TARGET2 (the primary level)
    lambda_adv_aux: float = 0.0002        # LAMBDA_ADV_TARGET1 (the auxiliary level)
    lr_d: float = 1e-4                    # Adam (0.9, 0.99), LEARNING_RATE_D
    gan: str = "vanilla"                  # "vanilla": BCE on D's logits; "lsgan": MSE (the README's
    #                                       LS-GAN variant, which uses λ_adv 0.01)

    def validate(self) -> None:
        super().validate()
        if self.gan not in GANS:
            raise ConfigError(f"gan must be one of {GANS}, got {self.gan!r}")


# The mini data: ADVENT's mini preset (the same DeepLab-v2 ResNet-18 from the stand-in, 600 steps,
# poly over the run's own length), so the two methods differ only in what D sees; except D's depth:
# the reference's four layers, with which UDAS's comparison rows measured AdaptSegNet.
PRESETS = {name: {**fields_of(AdaptSegNetConfig, preset), "d_layers": 4} for name, preset in ADVENT_PRESETS.items()}


class AdaptSegNetStep(AdventStep):
    def maps(self, logits: torch.Tensor) -> torch.Tensor:
        """Step 2: D sees the segmentation softmax (the output space), not its entropy."""
        return F.softmax(logits, dim=1)

    def gan_loss(self, d_logits: torch.Tensor, domain: float) -> torch.Tensor:
        if self.hp.gan == "lsgan":
            return F.mse_loss(d_logits, torch.full_like(d_logits, domain))
        return super().gan_loss(d_logits, domain)


@register("adaptsegnet", AdaptSegNetConfig, PRESETS, trained=trained_model)
def adaptsegnet(run: Run, hp: AdaptSegNetConfig, data: UDAData) -> Step:
    G = build_model(run, hp, data.num_classes)
    return fit(run, AdaptSegNetStep(run, hp, data, G, hp.iterations), stage="adapt", iterations=hp.iterations,
               eval_every=hp.eval_every)
