"""Is there an intra-domain gap for IntraDA to close on the target data? Without Ray.

IntraDA (methods/intrada.py) rests on one premise: ranked by G_inter's mean entropy, the easy part
of the target is predicted better than the hard part, so G_inter's pseudo labels of the easy part
can teach the hard part. For each trained IntraDA run (its final checkpoint holds G_inter, the
ranking and G_intra), this measures that premise against the target training images' own labels,
which IntraDA never reads, on the images as they were loaded for training:

    inter.easy / inter.hard   G_inter's mIoU and pixel accuracy on the easy / hard split: the
                              easy split's are its pseudo labels' quality, the gap easy − hard
                              the intra-domain gap the ranking found
    intra.easy / intra.hard   the same of G_intra: what stage 3 changed on each split
    spearman                  rank correlation of an image's entropy with its pixel accuracy under
                              G_inter (the premise: negative)
    same_easy_split           the easy split ranked again here is the checkpoint's (a check that the
                              models and images are the run's; with entropy_max_abs_diff where the
                              checkpoint holds the entropies)

    python benchmarks/intrada_ranking.py RUN [RUN ...] --json out.json
    # RUN: a trained IntraDA run (a study's trial folder, a local runner's run folder, a checkpoint)
"""
from __future__ import annotations

import argparse
import json


def measure(path) -> dict:
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader

    from udalab.core import layout
    from udalab.datasets.metrics import ConfusionMatrix
    from udalab.methods import get_method
    from udalab.methods.advent import ALIGN_CORNERS, trained_model
    from udalab.methods.engine import Run
    from udalab.methods.engine.run import LocalSession
    from udalab.methods.intrada import rank_by_entropy
    from udalab.methods.nets.deeplab import upsample

    folder = layout.checkpoint_folder(path)
    saved = layout.read_checkpoint(folder)
    config, state = saved["config"], saved["state"]["state"]       # the step's own state
    if config is None or config.get("method") != "intrada" or "G_inter" not in state:
        raise SystemExit(f"{folder} is no finished IntraDA run with a stage 3 (its checkpoint holds no G_inter); "
                         "pass the folder of an IntraDA trial whose λ split is above 0")
    method = get_method("intrada")
    hp = method.hparams(config)
    data = method.data(config, hp)
    nets = {k: trained_model(hp, data.num_classes, state, key).modules[0] for k, key in (("inter", "G_inter"),
                                                                                         ("intra", "G"))}
    run = Run(config, LocalSession(device="cpu"))
    easy, _, entropy = rank_by_entropy(run, nets["inter"], data.target, hp.lambda_split)
    split = {i: "easy" for i in state["easy"]} | {i: "hard" for i in state["hard"]}

    cms = {(k, s): ConfusionMatrix(data.num_classes) for k in nets for s in ("easy", "hard")}
    accuracy: list[float] = []
    i = 0
    with torch.no_grad():
        for batch in DataLoader(data.target, batch_size=16):
            x, y = batch["image"], batch["label"]
            preds = {k: upsample(G(x)[0], x.shape[-2:], align_corners=ALIGN_CORNERS).argmax(1) for k, G in nets.items()}
            for j in range(len(x)):
                for k, pred in preds.items():
                    cms[k, split[i + j]].update(pred[j], y[j])
                keep = y[j] != 255
                accuracy.append(float((preds["inter"][j][keep] == y[j][keep]).float().mean()) if keep.any() else float("nan"))
            i += len(x)

    def scores(cm: ConfusionMatrix) -> dict:
        s = cm.summary(data.class_names, data.eval_classes)
        return {"miou": s["miou"], "pixel_acc": s["pixel_acc"]}

    per_image = pd.DataFrame({"entropy": entropy, "accuracy": accuracy})
    return {"run": str(folder), "seed": config["seed"], "lambda_split": hp.lambda_split,
            "images": {"easy": len(state["easy"]), "hard": len(state["hard"])},
            **{k: {s: scores(cms[k, s]) for s in ("easy", "hard")} for k in nets},
            "entropy": {s: float(per_image["entropy"][[j for j in split if split[j] == s]].mean()) for s in ("easy", "hard")},
            "spearman": float(per_image["entropy"].rank().corr(per_image["accuracy"].rank())),
            "same_easy_split": sorted(easy) == sorted(state["easy"]),
            **({"entropy_max_abs_diff": max(abs(a - b) for a, b in zip(entropy, state["entropy"]))}
               if "entropy" in state else {})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="trained IntraDA runs (trial, run or checkpoint folders)")
    p.add_argument("--json", default=None, help="write the measurements here")
    args = p.parse_args(argv)
    out = []
    for path in args.runs:
        m = measure(path)
        out.append(m)
        print(f"seed {m['seed']} λ {m['lambda_split']:g}: G_inter easy {m['inter']['easy']['miou']:.1f} / hard "
              f"{m['inter']['hard']['miou']:.1f} mIoU; G_intra easy {m['intra']['easy']['miou']:.1f} / hard "
              f"{m['intra']['hard']['miou']:.1f}; spearman(entropy, accuracy) {m['spearman']:+.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
