"""HRDA: relative crop size of the LR context and HR detail crops (Hoyer et al., ECCV 2022, Fig. 4/5).

A larger crop gives the network more context, a higher resolution more detail; HRDA asks
which matters where. Each row trains the same DAFormer self-training loop with one crop
geometry, the same window on source and target (synchronized crops, as the reference's
ablation does):

* LR only   context crops at 1/2 resolution, relative size 0.25 … 1.0 (1.0 = 512 px at LR)
* HR only   full-resolution crops, relative size 0.25 … 0.75 (of 1024 px)
* LR + HR   HRDA: LR context of that size + an HR detail crop of half its side, fused
            by the learned scale attention (1.0 = HRDA's 1024 context / 512 detail, 73.8 mIoU)

plus the source-only LR 1.0 model. The paper finds mIoU growing with crop size, HR beating LR
at equal relative size (small "thing" classes), LR better on large "stuff" classes, and the
combination best. `--optuna` searches the detail-loss weight λ_d (paper: 0.1).

    python studies/hrda_crop_size.py                # 11 rows x 3 seeds on the mini data
    python studies/hrda_crop_size.py --smoke        # seconds: 2 rows, 1 seed, tiny schedule
    python studies/hrda_crop_size.py --optuna       # Optuna over λ_d
    python studies/hrda_crop_size.py --data-root /data --address auto --workers 2   # paper scale
"""
from ray import tune

from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

LR_RATIOS = (0.25, 0.5, 0.75, 1.0)
HR_RATIOS = (0.25, 0.5, 0.75)          # 1.0 at HR (a 1024 crop at full resolution) did not fit in memory
LRHR_RATIOS = (0.5, 0.75, 1.0)
CROP_NAMES = {"lr": "LR only", "hr": "HR only", "lr+hr": "LR+HR"}

STUDY = Study(
    name="hrda_crop_size",
    description=__doc__.split("\n\n")[0],
    method="hrda",
    source="gta5",
    target="cityscapes",
    rows=([{"mode": "lr", "crop_ratio": 1.0, "self_training": False}]
          + [{"mode": "lr", "crop_ratio": r, "self_training": True} for r in LR_RATIOS]
          + [{"mode": "hr", "crop_ratio": r, "self_training": True} for r in HR_RATIOS]
          + [{"mode": "lr+hr", "crop_ratio": r, "self_training": True} for r in LRHR_RATIOS]),
    smoke_rows=(4, 10),                    # LR 1.0 (DAFormer-like) and LR+HR 1.0 (HRDA)
    seeds=(0, 1, 2),
    fixed={"sync_crop": True},
    # the mini schedule at which HRDA beats the source-only row on the v3 twins (record
    # hrda_crop_size_2400_v3; at 300 steps it did not); 4 evaluations: the report's learning curves
    budget={"mini": {"iterations": 2400, "eval_every": 600}},
    search={"hr_loss_weight": tune.uniform(0.0, 0.5)},
    num_samples=12,
    metric="miou",
    mode="max",
    report=ReportSpec(
        title="HRDA: relative crop size of context (LR) and detail (HR) crops, GTA5 → Cityscapes",
        x="crop_ratio",
        group="crop",
        derived={"crop": lambda r: ("source only" if not r.get("self_training", True)
                                    else CROP_NAMES.get(r.get("mode") or "lr+hr", r.get("mode")))},
        columns=("crop", "crop_ratio"),
        labels={"crop_ratio": "crop ratio"},
        name=lambda r: r["crop"] if r["crop"] == "source only" else f"{r['crop'].removesuffix(' only')} {r.get('crop_ratio', 1.0):g}",
        class_groups="stuff_thing",
        reference="hrda",
        baseline={"mode": "lr", "crop_ratio": 1.0, "self_training": True},
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
