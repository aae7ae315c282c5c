"""How good are UDAS's pseudo labels at each confidence threshold τ? Without Ray.

For each seed, the UDA stage of the udas_ablation study's ST + DA + SSL row (the shared
artifact every trial of that seed reads; trained here the first time if no trial has yet)
labels the unlabelled target train images as self-training's round 1 does (the pool's images that
have labels: not train_extra's): K photometric
AutoAugment views (+ an undone flip), the most confident view per pixel, kept where its
confidence >= τ. Against those images' own labels, which no method reads, it reports per τ:

    q          the fraction of pixels kept (what self-training reports as stat.q)
    precision  of the kept pixels that have a label, the fraction labelled right
    recall     of the labelled pixels, the fraction kept and right
    miou       the pseudo labels' mIoU, a pixel not kept counting as missed (over the classes the
               images hold): pixel precision is mostly road, building and sky; this is per class

The views are drawn once per seed and thresholded at every τ (the run draws them with the
same generator, so τ = the run's τ gives the run's labels).

    python benchmarks/udas_pseudo_labels.py --seeds 0 1 2 --taus 0.3 0.6 0.8 0.9 0.95 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
from types import SimpleNamespace


def measure(seed: int, taus: list[float], views: int | None = None, preset: str = "mini",
            overrides: dict | None = None) -> dict:
    """The pseudo labels of `seed`'s UDA stage at each of `taus`; `overrides`: settings of the
    study's row changed (e.g. {"translate": False}), as --set would."""
    import torch
    from torch.utils.data import Subset

    from udalab.datasets.labels import IGNORE_INDEX
    from udalab.methods.advent import build_model
    from udalab.methods import get_method
    from udalab.methods.engine import Run
    from udalab.methods.engine.run import LocalSession
    from udalab.methods.udas import labelling_seed, shared_uda, split_target, view_confidence
    from udalab.studies.run.trials import trial_run_config, trial_settings
    from udalab.studies.udas_ablation import STUDY

    args = SimpleNamespace(preset=preset, smoke=False, data_root=None, set=[], optuna=False)
    row = next(r for r in STUDY.grid_rows() if r.get("method", "udas") == "udas" and r.get("rounds", 1) > 0)
    config = trial_run_config({"row": row, "seed": seed}, trial_settings(STUDY, args))   # the study's trial
    config.update(overrides or {})
    if views is not None:
        config["views"] = views
    method = get_method("udas")
    hp = method.hparams(config)
    run = Run(config, LocalSession(device="cpu"))
    data = method.data(config, hp)
    state, reports, artifact = shared_uda(config, data)()
    G = build_model(run, hp, data.num_classes)
    G.load_state_dict(state["G"])
    _, unlabelled = split_target(hp, data.target)

    kept, right, both, labelled, pixels = [0] * len(taus), [0] * len(taus), [0] * len(taus), 0, 0
    n = data.num_classes
    tp, predicted = torch.zeros(len(taus), n), torch.zeros(len(taus), n)
    present = torch.zeros(n)
    scored = Subset(data.target, unlabelled)     # the pool's images that have labels to score against
    for batch, conf, label in view_confidence(run, hp, G, scored, labelling_seed(seed, 1)):  # round 1's
        truth = batch["label"]
        valid = truth != IGNORE_INDEX
        pixels += truth.numel()
        labelled += int(valid.sum())
        present += torch.bincount(truth[valid].long(), minlength=n)[:n]
        for i, tau in enumerate(taus):
            keep = conf >= tau
            kept[i] += int(keep.sum())
            both[i] += int((keep & valid).sum())
            hit = keep & valid & (label == truth)
            right[i] += int(hit.sum())
            tp[i] += torch.bincount(label[hit].long(), minlength=n)[:n]
            predicted[i] += torch.bincount(label[keep & valid].long(), minlength=n)[:n]
    return {"seed": seed, "views": hp.views, "artifact": artifact, "uda_test_miou": reports[-1].get("test.miou"),
            "images": len(unlabelled),
            "taus": {str(t): {"q": 100 * kept[i] / pixels, "precision": 100 * right[i] / max(1, both[i]),
                              "recall": 100 * right[i] / max(1, labelled),
                              "miou": float(100 * (tp[i] / (predicted[i] + present - tp[i]).clamp(min=1))[present > 0].mean())}
                   for i, t in enumerate(taus)}}


def table(results: list[dict]) -> str:
    taus = list(results[0]["taus"])
    lines = [f"K = {results[0]['views']}, seeds {', '.join(str(r['seed']) for r in results)} "
             f"({results[0]['images']} unlabelled target train images); mean ± std over seeds",
             "", "| τ | q % | precision % | recall % | mIoU % |", "|---|---|---|---|---|"]
    for t in taus:
        cells = []
        for k in ("q", "precision", "recall", "miou"):
            v = [r["taus"][t][k] for r in results]
            cells.append(f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--taus", type=float, nargs="+", default=[0.3, 0.6, 0.8, 0.9, 0.95])
    p.add_argument("--views", type=int, default=None, help="K (default: the preset's)")
    p.add_argument("--preset", default="mini", choices=["mini", "smoke"])
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    results = [measure(s, args.taus, args.views, args.preset) for s in args.seeds]
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
