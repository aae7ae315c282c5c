"""Source only: the "no adaptation" row of every table.

The DeepLab-v2 multi-level model trained on labelled source images alone, with the same
optimiser, schedule, resolution and iterations as ADVENT, so that the difference to the
adapted rows is the adaptation:

  1. L_seg = CE(G_main(x_s), y_s) + λ_seg_aux · CE(G_aux(x_s), y_s)
  2. SGD step of G (head x10, poly)
"""
from __future__ import annotations

import torch

from udalab.methods import register
from udalab.methods.advent import PRESETS, AdventConfig, AdventStep, build_model
from udalab.methods.engine import Run, Step, Stream, autocast, fit, make_hparams, unwrap
from udalab.methods.parts.losses import seg_ce
from udalab.methods.parts.optim import poly, sgd_head_10x
from udalab.methods.engine.uda_data import UDAData, build_uda_data

SourceOnlyConfig = AdventConfig  # same model/optimiser/data fields; the adversarial ones are unused


class SourceOnlyStep(Step):
    def __init__(self, run: Run, hp: AdventConfig, data: UDAData, G: torch.nn.Module):
        self.run, self.hp, self.data, self.G = run, hp, data, G
        self.networks = (G,)
        self.opt = sgd_head_10x(unwrap(G), hp.lr, hp.momentum, hp.weight_decay)
        self.sched = poly(self.opt, hp.poly_iterations or hp.iterations, hp.poly_power)  # as ADVENT

    def streams(self) -> dict[str, Stream]:
        return {"source": Stream(self.data.source, self.hp.batch_size, id=0)}

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        x, y = batch["source"]["image"], batch["source"]["label"]
        self.opt.zero_grad(set_to_none=True)
        # 1. multi-level segmentation loss
        with autocast(self.run.device, self.hp.precision):
            main, aux = self.G(x)
            seg_main, seg_aux = seg_ce(main, y), seg_ce(aux, y)
        (seg_main + self.hp.lambda_seg_aux * seg_aux).backward()
        return {"seg_main": seg_main.detach(), "seg_aux": seg_aux.detach()}

    def update(self) -> None:
        # 2. the optimiser step
        self.opt.step()
        self.sched.step()

    evaluate = AdventStep.evaluate  # G's main classifier on target val, as every DeepLab-v2 row

    def state_dict(self) -> dict:
        return {"G": unwrap(self.G).state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        unwrap(self.G).load_state_dict(state["G"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])


@register("source_only", SourceOnlyConfig, PRESETS)
def train_loop(config: dict) -> None:
    run = Run.start(config)
    hp = make_hparams(SourceOnlyConfig, config, PRESETS)
    data = build_uda_data(config, hp.source_size, hp.target_size)
    G = build_model(run, hp, data.num_classes)
    fit(run, SourceOnlyStep(run, hp, data, G), stage="source", iterations=hp.iterations, eval_every=hp.eval_every)
