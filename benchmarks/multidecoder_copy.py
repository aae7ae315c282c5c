"""Why does the weight copy slow the semantic decoder of a depth-first schedule? Without Ray.

The multi-decoder U-Net's depth-first schedules (methods/multidecoder.py) train the encoder and the
depth decoder first; "+copy" then copies the depth decoder into the semantic one (all but the
output layer) before the semantic stage. This trains the first stage once per seed and then the
rest of the schedule ("d+copy>s>b": semantic, then both) from the same stage-1 model under each
start of the semantic decoder:

    none        its own initialisation (the schedule "d>s>b")
    copy        the paper's copy: every block of the depth decoder (the schedule "d+copy>s>b")
    copy_deep   the copy of every block but the last (full-resolution) one, which keeps its own
                initialisation: is the harm in the layers nearest the output?

and measures, at the start and the end of the semantic stage, per decoder block (on the val
images, in eval mode): the share of dead channels (ReLU output 0 on at least 99 % of the pixels: a
dead channel passes no gradient back, so it stays dead) and the effective rank of the block's
output (exp of the entropy of its normalised singular values, pixels as samples); plus the val
and test mIoU after each stage. Batches and random draws are seeded by (seed, stream, iteration),
so "none" and "copy" train exactly as the study's runs of those schedules do.

    python benchmarks/multidecoder_copy.py --seeds 0 1 2 --json copy.json
    python benchmarks/multidecoder_copy.py --iterations 2400 --json copy_2400.json   # stages four times longer
"""
from __future__ import annotations

import argparse
import json

VARIANTS = ("none", "copy", "copy_deep")
DEAD_SHARE = 0.99               # a channel is dead when its ReLU output is 0 on this share of the pixels


def block_stats(model, dataset, images: int) -> list[dict]:
    """Per block of the semantic decoder: dead-channel share and effective rank of its output."""
    import torch

    outputs: dict[int, list] = {}
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: outputs.setdefault(k, []).append(
        o.detach().permute(0, 2, 3, 1).reshape(-1, o.shape[1]))) for k, b in enumerate(model.semantic.blocks)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(min(images, len(dataset))):
                model.predict(dataset[i]["image"][None])
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    out = []
    for k in sorted(outputs):
        f = torch.cat(outputs[k])
        dead = ((f > 0).float().mean(0) <= 1 - DEAD_SHARE)
        s = torch.linalg.svdvals(f - f.mean(0))
        p = s / s.sum().clamp_min(1e-12)
        rank = float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))
        out.append({"block": k, "channels": f.shape[1], "dead": float(dead.float().mean()), "effective_rank": rank})
    return out


def copy_blocks(src, dst, blocks) -> None:
    """The decoder blocks numbered in `blocks` of `src` into `dst` (weights and BatchNorm statistics)."""
    state = {k: v for k, v in src.state_dict().items() if k.startswith("blocks.") and int(k.split(".")[1]) in blocks}
    dst.load_state_dict(state, strict=False)


def measure(seed: int, variants=VARIANTS, images: int = 50, preset: str = "mini", iterations: int | None = None
            ) -> dict:
    import copy

    from udalab.methods import get_method
    from udalab.methods.engine import fit
    from udalab.methods.engine.run import LocalSession, Run
    from udalab.methods.multidecoder import DecoderStageStep, copy_decoder
    from udalab.methods.nets.unet import MultiDecoderUNet

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; one of {', '.join(VARIANTS)}")
    config = {"method": "multidecoder", "source": "voc_depth", "target": "voc", "preset": preset, "seed": seed,
              "schedule": "d+copy>s>b", "device": "cpu", **({"iterations": iterations} if iterations else {})}
    method = get_method("multidecoder")
    hp = method.hparams(config)
    first, second, third = hp.stage_iterations()
    run = Run.start(config, LocalSession(device="cpu"))
    data = method.data(config, hp)
    model = MultiDecoderUNet(hp.backbone_depth, hp.pretrained, hp.decoder_channels, data.num_classes)
    fit(run, DecoderStageStep(run, hp, data, model, "d", None, first), stage="1-d", iterations=first,
        eval_every=first, last=False)
    after_depth = copy.deepcopy(model.state_dict())
    n_blocks = len(model.semantic.blocks)

    result = {"seed": seed, "iterations": [first, second, third], "variants": {}}
    for variant in variants:
        model.load_state_dict(after_depth)
        if variant == "copy":
            copy_decoder(model.depth, model.semantic)           # the method's own step 2
        elif variant == "copy_deep":
            copy_blocks(model.depth, model.semantic, range(n_blocks - 1))
        start = block_stats(model, data.target_val, images)
        run = Run(config, LocalSession(device="cpu"))
        fit(run, DecoderStageStep(run, hp, data, model, "s", None, second), stage="2-s", iterations=second,
            eval_every=second, last=False)
        end = block_stats(model, data.target_val, images)
        fit(run, DecoderStageStep(run, hp, data, model, "b", None, third), stage="3-b", iterations=third,
            eval_every=third, last=True)
        reports = {r["stage"]: r for r in run.session.reports if "miou" in r}
        result["variants"][variant] = {
            "semantic_start": start, "semantic_end": end,
            **{f"{s}.{k}": reports[s][k] for s in ("2-s", "3-b") for k in ("miou", "test.miou")}}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--images", type=int, default=50, help="val images the block statistics read")
    p.add_argument("--preset", default="mini")
    p.add_argument("--iterations", type=int, default=None,
                   help="the whole schedule's iterations, three equal stages (default: the preset's)")
    p.add_argument("--json", default=None, help="write the measurements here")
    args = p.parse_args(argv)
    out = []
    for seed in args.seeds:
        m = measure(seed, args.variants, args.images, args.preset, args.iterations)
        out.append(m)
        for v, r in m["variants"].items():
            dead = " ".join(f"{b['dead']:.2f}" for b in r["semantic_start"])
            rank = " ".join(f"{b['effective_rank']:.1f}" for b in r["semantic_start"])
            print(f"seed {seed} {v:>9}: dead per block {dead}; eff. rank {rank}; val mIoU after s "
                  f"{r['2-s.miou']:.1f}, after b {r['3-b.miou']:.1f} (test {r['3-b.test.miou']:.1f})")
        if args.json:                               # after each seed: a stopped run keeps the seeds done
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
