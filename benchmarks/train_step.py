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

from udalab.datasets.labels import CLASS_NAMES
from udalab.methods.advent import AdventStep, SegmentationStep, build_model
from udalab.methods.engine import Run
from udalab.methods.engine.run import LocalSession
from udalab.methods.engine.config import make_hparams
from udalab.methods.intrada import IntraDAConfig, IntraStep
from udalab.methods.engine.uda_data import UDAData

NUM_CLASSES = 19



def make_steps(method: str, run: Run, hp: IntraDAConfig, src_hw, tgt_hw):
    """One iteration of the method's Step (train_step + update) on fixed synthetic batches."""
    dev = run.device
    x_s = torch.randn(hp.batch_size, 3, *src_hw, device=dev)
    y_s = torch.randint(0, NUM_CLASSES, (hp.batch_size, *src_hw), device=dev)
    x_t = torch.randn(hp.batch_size, 3, *tgt_hw, device=dev)
    data = UDAData(None, None, None, None, NUM_CLASSES, CLASS_NAMES)
    G = build_model(run, hp, NUM_CLASSES)
    if method == "source_only":
        step, batch = SegmentationStep(run, hp, data, G, hp.iterations), {"source": {"image": x_s, "label": y_s}}
    elif method == "advent":
        step, batch = AdventStep(run, hp, data, G, hp.iterations), {"source": {"image": x_s, "label": y_s},
                                                                    "target": {"image": x_t}}
    elif method in ("intrada", "intrada_selftrain"):
        # intra stage: pseudo labels from the frozen inter model, then ADVENT easy -> hard (or self-training)
        step = IntraStep(run, hp, data, G)
        batch = {"easy": {"image": x_t}, **({"hard": {"image": x_t}} if method == "intrada" else {})}
    else:
        raise ValueError(method)
    for net in step.networks:
        net.train()
    gen = torch.Generator()

    def one_iteration():
        step.train_step(batch, 0, gen)
        step.update()
    return one_iteration


def bench(method: str, precision: str, args) -> dict:
    device = torch.device(args.device)
    run = Run({"seed": 0}, LocalSession(device=str(device)))
    hp = make_hparams(IntraDAConfig, {"preset": "paper", "precision": precision, "pretrained": "none",
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
