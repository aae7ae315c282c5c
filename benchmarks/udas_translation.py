"""Does UDAS's CycleGAN translation keep what the source labels say? Without Ray.

Step 0 (ST) of the udas_ablation study replaces the source images by their CycleGAN translation to
the target's style and keeps the source labels. A translation that turns one class into what
another class looks like in the target teaches the segmenter wrong labels. For a model trained on
the untranslated source (the study's no-adaptation row: any run folder `udalab predict` reads), and
the translation its config gives with `translate` on (the study's shared artifact, built here if no
trial has built it yet; `--cyclegan-semantic W`: the CycleGAN trained with CyCADA's semantic
consistency at weight W instead), it reports per class:

    iou_source        the model's test IoU on the source train images, against their labels
    iou_translated    its IoU on the same images translated, against the same labels: a class whose
                      translation no longer looks like that class to a source model falls here
                      (CyCADA's semantic consistency, measured rather than trained)
    colour_*          the class's mean RGB (0-255) in the source, in its translation and in the
                      target's train images (their labels, which no method reads)
    pixels, pixels_target   the class's share of the source's / the target's labelled pixels

    python benchmarks/udas_translation.py RESULTS/udas_ablation_local/_train/train-row0-seed0 ... --json out.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def class_colours(dataset, num_classes: int) -> tuple[list[list[float] | None], list[int]]:
    """Per class: its pixels' mean RGB in 0-255 (None where it has none), and its pixel count."""
    import torch

    from udalab.datasets.transforms import denormalize

    sums, counts = torch.zeros(num_classes, 3, dtype=torch.float64), torch.zeros(num_classes, dtype=torch.long)
    for i in range(len(dataset)):
        sample = dataset[i]
        rgb = denormalize(sample["image"]).clamp(0, 1).reshape(3, -1).T.double() * 255
        label = sample["label"].reshape(-1)
        if label.numel() != rgb.shape[0]:
            raise ValueError(f"sample {i} of {type(dataset).__name__}: image and label differ in size")
        keep = label < num_classes
        sums.index_add_(0, label[keep], rgb[keep])
        counts += torch.bincount(label[keep], minlength=num_classes)
    return ([(s / c).tolist() if c else None for s, c in zip(sums, counts.tolist())], counts.tolist())


def measure(model: str | Path, device: str = "cpu", images: int | None = None,
            cyclegan_semantic: float | None = None) -> dict:
    """The translation's per-class semantic consistency and colours, for the trained run `model`, on
    the first `images` of each set (None: all); the translation's CyCADA weight `cyclegan_semantic`
    (None: the run's own)."""
    import torch
    from torch.utils.data import Subset

    from udalab.datasets import build_dataset
    from udalab.methods import get_method
    from udalab.methods.engine import Run, evaluate
    from udalab.methods.engine.registry import load_trained
    from udalab.methods.engine.run import LocalSession
    from udalab.methods.udas import translated_source

    trained = load_trained(model, device)
    if trained.config.get("method") != "udas":
        raise SystemExit(f"{model}: a {trained.config.get('method')} run; this measures a UDAS run's translation")
    config = {**trained.config, "translate": True}
    if cyclegan_semantic is not None:
        config["cyclegan_semantic"] = cyclegan_semantic
    method = get_method("udas")
    hp = method.hparams(config)
    data = method.data(config, hp)
    run = Run(config, LocalSession(device=device))
    translated = translated_source(config, hp, data, run)
    source = build_dataset(config.get("source", "gta5"), root=data.source.root, split="train", size=hp.source_size)
    target = build_dataset(config.get("target", "cityscapes"), root=data.target.root, split="train",
                           size=hp.target_size)
    if len(translated) != len(source) or not all(torch.equal(source[i]["label"], translated[i]["label"])
                                                 for i in (0, len(source) - 1)):
        raise SystemExit(f"the translation ({len(translated)} images) is not the source's ({len(source)}) in its order")
    if images is not None:
        source, translated, target = (Subset(ds, range(min(images, len(ds)))) for ds in (source, translated, target))
    names = list(data.class_names)
    scores = {name: evaluate(trained.prediction, ds, class_names=names, device=run.device)
              for name, ds in (("source", source), ("translated", translated))}
    colours = {name: class_colours(ds, data.num_classes) for name, ds in
               (("source", source), ("translated", translated), ("target", target))}
    total, total_target = sum(colours["source"][1]), sum(colours["target"][1])
    classes = {}
    for c, name in enumerate(names):
        if not colours["source"][1][c]:
            continue
        classes[name] = {"pixels": colours["source"][1][c] / total, "pixels_target": colours["target"][1][c] / total_target,
                         "iou_source": scores["source"][f"iou.{name}"],
                         "iou_translated": scores["translated"][f"iou.{name}"],
                         **{f"colour_{k}": colours[k][0][c] for k in colours}}
    return {"model": str(trained.checkpoint), "seed": config.get("seed"), "images": len(source),
            "cyclegan_semantic": hp.cyclegan_semantic,
            "iteration": trained.history[-1].get("iteration"),
            "miou_source": scores["source"]["miou"], "miou_translated": scores["translated"]["miou"],
            "classes": classes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="trained UDAS runs without translation (the study's no-adaptation row)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=None, help="the first N images of each set (default: all)")
    p.add_argument("--cyclegan-semantic", type=float, default=None, metavar="W",
                   help="measure the CycleGAN trained with CyCADA's semantic consistency at weight W")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    out = [measure(m, args.device, args.images, args.cyclegan_semantic) for m in args.models]
    for r in out:
        print(f"seed {r['seed']}: mIoU on the source {r['miou_source']:.1f}, on its translation {r['miou_translated']:.1f}")
        for name, c in r["classes"].items():
            if c["pixels"] >= 0.01:
                print(f"  {name:14s} {100 * c['pixels']:5.1f} % of pixels  IoU {c['iou_source']:5.1f} -> "
                      f"{c['iou_translated']:5.1f}  colour {_rgb(c['colour_source'])} -> {_rgb(c['colour_translated'])}"
                      f" (target {_rgb(c['colour_target'])})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _rgb(c) -> str:
    return "–" if c is None else "(" + ", ".join(f"{v:3.0f}" for v in c) + ")"


if __name__ == "__main__":
    raise SystemExit(main())
