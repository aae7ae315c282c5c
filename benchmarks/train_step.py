"""Milliseconds per training iteration of each method at the papers' resolution, fp32 vs bf16.

One iteration is what the method's loop does per step (forward, backward, optimiser steps of
every network involved), on synthetic tensors of the papers' sizes: GTA5 1280x720 source,
Cityscapes 1024x512 target, batch 1 + 1, DeepLab-v2 ResNet-101 at output stride 8.
Runs without Ray (the lent GPU machine has none):

    python benchmarks/train_step.py                          # GPU, paper sizes, fp32 + bf16
    python benchmarks/train_step.py --device cpu --size-scale 0.125 --depth 18 --iters 2
"""
from __future__ import annotations

import argparse

import torch
from timing import device_name, time_step, write_rows  # benchmarks/timing.py

from udalab.methods.advent import AdventConfig, AdventStage
from udalab.methods.deeplab import DeepLabV2
from udalab.methods.engine import Run, autocast, make_hparams
from udalab.methods.intrada import self_train_step
from udalab.methods.losses import seg_ce
from udalab.methods.optim import poly, sgd_head_10x

NUM_CLASSES = 19



def make_steps(method: str, run: Run, hp: AdventConfig, src_hw, tgt_hw):
    dev = run.device
    x_s = torch.randn(hp.batch_size, 3, *src_hw, device=dev)
    y_s = torch.randint(0, NUM_CLASSES, (hp.batch_size, *src_hw), device=dev)
    x_t = torch.randn(hp.batch_size, 3, *tgt_hw, device=dev)
    G = DeepLabV2(NUM_CLASSES, hp.backbone_depth, "none", hp.output_stride, freeze_bn=hp.freeze_bn).to(dev).train()
    if method == "source_only":
        opt = sgd_head_10x(G, hp.lr, hp.momentum, hp.weight_decay)
        sched = poly(opt, hp.iterations, hp.poly_power)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast(dev, hp.precision):
                main, aux = G(x_s)
                loss = seg_ce(main, y_s) + hp.lambda_seg_aux * seg_ce(aux, y_s)
            loss.backward()
            opt.step()
            sched.step()
        return step
    stage = AdventStage(run, hp, G, NUM_CLASSES, hp.iterations)
    stage.train()
    if method == "advent":
        return lambda: stage.step(x_s, y_s, x_t)
    if method in ("intrada", "intrada_selftrain"):
        # intra stage: pseudo labels from the frozen inter model, then ADVENT easy -> hard
        G_inter = DeepLabV2(NUM_CLASSES, hp.backbone_depth, "none", hp.output_stride).to(dev).eval()

        def step():
            with torch.no_grad(), autocast(dev, hp.precision):
                pseudo = torch.nn.functional.interpolate(G_inter(x_t)[0], size=tgt_hw, mode="bilinear").argmax(1)
            if method == "intrada":
                stage.step(x_t, pseudo, x_t)
            else:
                self_train_step(stage, x_t, pseudo)
        return step
    raise ValueError(method)


def bench(method: str, precision: str, args) -> dict:
    device = torch.device(args.device)
    run = Run({"seed": 0}, ray=False, rank=0, world=1, device=device)
    hp = make_hparams(AdventConfig, {"scale": "paper", "precision": precision, "pretrained": "none",
                                      "backbone_depth": args.depth})
    src_hw = (round(720 * args.size_scale), round(1280 * args.size_scale))
    tgt_hw = (round(512 * args.size_scale), round(1024 * args.size_scale))
    step = make_steps(method, run, hp, src_hw, tgt_hw)
    timing = time_step(step, device, args.warmup, args.iters)
    return {"method": method, "precision": precision, **timing,
            "source": f"{src_hw[1]}x{src_hw[0]}",
            "target": f"{tgt_hw[1]}x{tgt_hw[0]}", "depth": args.depth}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", nargs="+", default=["source_only", "advent", "intrada"])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--size-scale", type=float, default=1.0, help="scale the papers' image sizes")
    p.add_argument("--depth", type=int, default=101)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    name = device_name(args.device)
    rows = [bench(m, prec, args) for m in args.methods for prec in args.precision]
    print(f"device: {name}, torch {torch.__version__}")
    print(f"{'method':12s} {'precision':9s} {'ms/iter':>9s} {'min':>8s} {'peak GiB':>9s}  sizes (src / tgt)")
    for r in rows:
        print(f"{r['method']:12s} {r['precision']:9s} {r['ms_median']:9.1f} {r['ms_min']:8.1f} {r['peak_gib']:9.2f}"
              f"  {r['source']} / {r['target']}, ResNet-{r['depth']}")
    write_rows(args.json, name, rows)
    return rows


if __name__ == "__main__":
    main()
