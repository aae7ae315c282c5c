"""Source only: the "no adaptation" row of every table.

The DeepLab-v2 multi-level model trained on labelled source images alone, with the same
optimiser, schedule, resolution and iterations as ADVENT, so that the difference to the
adapted rows is the adaptation.
"""
from __future__ import annotations

from udalab.methods import register
from udalab.methods.advent import PRESETS, AdventConfig, build_model, evaluate_main
from udalab.methods.engine import LossMeter, Run, autocast, batches, check_finite, make_hparams, unwrap
from udalab.methods.losses import seg_ce
from udalab.methods.optim import poly, sgd_head_10x
from udalab.methods.uda_data import build_uda_data

SourceOnlyConfig = AdventConfig  # same model/optimiser/data fields; the adversarial ones are unused


@register("source_only")
def train_loop(config: dict) -> None:
    run = Run.start(config)
    hp = make_hparams(SourceOnlyConfig, config, PRESETS)
    data = build_uda_data(config, hp.source_size, hp.target_size)

    G = build_model(run, hp, data.num_classes)
    opt = sgd_head_10x(unwrap(G), hp.lr, hp.momentum, hp.weight_decay)
    sched = poly(opt, hp.iterations, hp.poly_power)

    start = 0
    if (state := run.restore()) is not None:
        unwrap(G).load_state_dict(state["G"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["iteration"]
    if run.finished_before(hp.iterations):
        return

    source = batches(data.source, hp.batch_size, seed=run.seed, stream=0, start=start,
                     rank=run.rank, world=run.world, device=run.device)
    meter = LossMeter()
    G.train()
    for it in range(start, hp.iterations):
        s = next(source)
        opt.zero_grad(set_to_none=True)
        with autocast(run.device, hp.precision):
            main, aux = G(s["image"])
            loss_main, loss_aux = seg_ce(main, s["label"]), seg_ce(aux, s["label"])
        loss = loss_main + hp.lambda_seg_aux * loss_aux
        check_finite({"seg_main": loss_main.detach(), "seg_aux": loss_aux.detach()}, it + 1)
        loss.backward()
        opt.step()
        sched.step()
        meter.add(seg_main=loss_main.detach(), seg_aux=loss_aux.detach())

        if (it + 1) % hp.eval_every == 0 or it + 1 == hp.iterations:
            run.report({"iteration": it + 1, "stage": "source", **evaluate_main(run, G, data, hp), **meter.pop(),
                        "done": it + 1 == hp.iterations},
                       state={"iteration": it + 1, "G": unwrap(G).state_dict(), "opt": opt.state_dict(),
                              "sched": sched.state_dict()})
