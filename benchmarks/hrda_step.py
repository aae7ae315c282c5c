"""Milliseconds per training iteration of DAFormer and HRDA at the papers' sizes, fp32 vs bf16,
beside a plain SegFormer MiT-B5 supervised step: Hugging Face transformers' and udalab's.

Rows (synthetic tensors, random init, AdamW; one row per model x precision):

    segformer_hf     transformers' SegformerForSemanticSegmentation (MiT-B5) fwd+bwd+step, 2x512²
    segformer_ours   udalab's MiT-B5 + SegFormer head, the same step                      2x512²
    daformer         one DACS iteration: EMA, source fwd+bwd, teacher, ClassMix, mixed fwd+bwd, step
                     (MiT-B5 + DAFormer head, 2 + 2 crops of 512²)
    hrda             one HRDA iteration (1024² context -> 512² LR, 512² detail, sliding-window
                     teacher, scale attention), 2 + 2 crops

Runs without Ray (the lent GPU machine has none):

    python benchmarks/hrda_step.py --json records/hrda_step_NAME/bench.json           # GPU, paper sizes
    python benchmarks/hrda_step.py --device cpu --backbone mit_b0 --size-scale 0.125 --iters 1
    python benchmarks/hrda_step.py --device cpu --backbone mit_b0 --size-scale 0.125 --compile

--channels-last stores the models and inputs channels-last; --compile runs torch.compile on each
network's parts (encoder, decoder heads, HRDA's scale attention; the EMA teacher's too), and the
row's `first_ms` is the first call's time, compilation included (HRDA's varying window sizes
compile more than once: every warm-up call is in `warmup_ms`).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from timing import device_name, time_step, write_rows  # benchmarks/timing.py

from udalab.datasets.labels import CLASS_NAMES, IGNORE_INDEX
from udalab.methods.daformer import PRESETS as DAFORMER_PRESETS
from udalab.methods.daformer import DACSStep, DAFormerConfig, Segmentor
from udalab.methods.engine import Run, autocast
from udalab.methods.engine.run import LocalSession
from udalab.methods.engine.config import make_hparams
from udalab.methods.hrda import PRESETS as HRDA_PRESETS
from udalab.methods.hrda import HRDAConfig, HRDASegmentor
from udalab.methods.nets.segformer import EncoderDecoder
from udalab.methods.engine.uda_data import UDAData

NUM_CLASSES = 19
ROWS = ("segformer_hf", "segformer_ours", "daformer", "hrda")



def _fmt(x, cl: bool):
    return x.contiguous(memory_format=torch.channels_last) if cl and x.ndim == 4 else x


def compile_parts(*models: nn.Module) -> None:
    """torch.compile each model's EncoderDecoder parts in place (module.compile(): the same module,
    state dict and parameters). The parts, not the segmentor: a segmentor calls net.encoder and
    net.decoder itself, and the EMA teacher needs its own compiled copies, not the student's."""
    for model in models:
        for m in list(model.modules()):
            if isinstance(m, EncoderDecoder):
                m.encoder.compile()
                m.decoder.compile()
        if hasattr(model, "attention") and isinstance(model.attention, nn.Module):
            model.attention.compile()


def supervised_step(model, device, precision, side: int, batch: int, hf: bool, cl: bool):
    x = _fmt(torch.randn(batch, 3, side, side, device=device), cl)
    y = torch.randint(0, NUM_CLASSES, (batch, side, side), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(pixel_values=x).logits if hf else model(x)
            logits = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)
        loss.backward()
        opt.step()
    return step


def dacs_iteration(row: str, device, precision: str, backbone: str, scale: float, batch: int, cl: bool,
                   compiled: bool = False):
    cls, presets = (HRDAConfig, HRDA_PRESETS) if row == "hrda" else (DAFormerConfig, DAFORMER_PRESETS)
    hp = make_hparams(cls, {"preset": "paper", "precision": precision, "pretrained": "none", "backbone": backbone,
                            "fd_lambda": 0.0, "batch_size": batch}, presets)
    crop = hp.train_crop()
    h, w = round(crop[1] * scale), round(crop[0] * scale)
    if row == "hrda":
        k = hp.grid
        h, w = max(k, h // k * k), max(k, w // k * k)
        hp = make_hparams(cls, {"preset": "paper", "precision": precision, "pretrained": "none",
                                "backbone": backbone, "fd_lambda": 0.0, "batch_size": batch, "crop_size": (w, h),
                                "source_size": (w, h), "target_size": (w, h)}, presets)
        student = HRDASegmentor(hp, NUM_CLASSES)
    else:
        student = Segmentor(EncoderDecoder(NUM_CLASSES, backbone, "daformer", "none"))
    if cl:
        student = student.to(memory_format=torch.channels_last)
    run = Run({"seed": 0}, LocalSession(device=str(device)))
    dacs = DACSStep(run, hp, UDAData(None, None, None, None, NUM_CLASSES, CLASS_NAMES), student)  # EMA, AdamW, poly
    dacs.student.train()
    if compiled:
        compile_parts(dacs.student, dacs.teacher.model)
    xs = _fmt(torch.randn(batch, 3, h, w, device=device), cl)
    xt = _fmt(torch.randn(batch, 3, h, w, device=device), cl)
    ys = torch.randint(0, NUM_CLASSES, (batch, h, w), device=device)
    valid = torch.ones(batch, h, w, device=device)  # no pseudo-label margins
    state = {"it": 0}

    def step():
        gen = torch.Generator().manual_seed(state["it"])
        dacs.losses(xs, ys, xt, valid, gen, state["it"] + 1)
        dacs.update()
        state["it"] += 1
    return step, f"{batch}x{w}x{h}"


def build(row: str, args, precision: str):
    device = torch.device(args.device)
    side = round(512 * args.size_scale)
    variant = args.backbone.removeprefix("mit_")
    if row == "segformer_hf":
        import transformers

        depths = {"b0": [2, 2, 2, 2], "b1": [2, 2, 2, 2], "b2": [3, 4, 6, 3], "b3": [3, 4, 18, 3],
                  "b4": [3, 8, 27, 3], "b5": [3, 6, 40, 3]}[variant]
        hidden = [32, 64, 160, 256] if variant == "b0" else [64, 128, 320, 512]
        cfg = transformers.SegformerConfig(depths=depths, hidden_sizes=hidden, num_labels=NUM_CLASSES,
                                           decoder_hidden_size=256 if variant == "b0" else 768)
        model = transformers.SegformerForSemanticSegmentation(cfg).to(device).train()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if args.compile:
            model.compile()
        return supervised_step(model, device, precision, side, args.batch, True, args.channels_last), f"{args.batch}x{side}²"
    if row == "segformer_ours":
        model = EncoderDecoder(NUM_CLASSES, args.backbone, "segformer", "none",
                               decoder_dim=256 if variant == "b0" else 768).to(device).train()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if args.compile:
            compile_parts(model)
        return supervised_step(model, device, precision, side, args.batch, False, args.channels_last), f"{args.batch}x{side}²"
    return dacs_iteration(row, device, precision, args.backbone, args.size_scale, args.batch, args.channels_last,
                          args.compile)


def bench(row: str, precision: str, args) -> dict:
    device = torch.device(args.device)
    step, sizes = build(row, args, precision)
    timing = time_step(step, device, args.warmup, args.iters)
    return {"row": row, "precision": precision, **timing,
            "sizes": sizes, "backbone": args.backbone, "channels_last": args.channels_last, "compile": args.compile}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--backbone", default="mit_b5")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size-scale", type=float, default=1.0, help="scale the papers' crop sizes")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks' parts (see above)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (1 avoids oversubscription on a busy CPU)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    rows = []
    for row in args.rows:
        if row == "segformer_hf":
            try:
                import transformers  # noqa: F401
            except ImportError:
                print("segformer_hf skipped: transformers is not installed (pip install 'udalab[hf]')")
                continue
        rows += [bench(row, prec, args) for prec in args.precision]
    name = device_name(args.device)
    print(f"device: {name}, torch {torch.__version__}, {args.backbone}")
    print(f"{'row':15s} {'precision':9s} {'ms/iter':>9s} {'min':>8s} {'peak GiB':>9s}  sizes")
    for r in rows:
        print(f"{r['row']:15s} {r['precision']:9s} {r['ms_median']:9.1f} {r['ms_min']:8.1f} {r['peak_gib']:9.2f}  {r['sizes']}")
    write_rows(args.json, name, rows)
    return rows


if __name__ == "__main__":
    main()
