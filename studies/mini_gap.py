"""How large is each mini twin's domain gap? Source only against target-supervised, per pair.

For every pair the DeepLab-v2 source-only loop (methods/source_only.py, the mini preset) is
trained on the labelled source and scored on target val; the gap's upper end is the same loop
trained on the labelled target train split itself ("target supervised", one row per target,
shared by the pairs with that target). The gap of a pair is the paired Δ target supervised -
source only on the same seed (`STUDY.paired`):

    GTA5 -> Cityscapes          19 classes
    SYNTHIA -> Cityscapes       16 classes (SYNTHIA's; its 13-class mIoU from the per-class IoUs)
    MFNet RGB -> thermal        9 classes (and MML's 3: car, person, bicycle)
    MFNet day -> night (RGB)    9 classes (and 3)

Whether colour alone tells a pair's domains apart (it should not: the gap is realism) is
`udalab data realism` (datasets/realism.py).

    python studies/mini_gap.py --local --jobs 2                  # 7 rows x 3 seeds, 300 iterations
    python studies/mini_gap.py --local --rows 0 4 --set iterations=600 --set eval_every=600
"""
from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

CS = {"target_size": [128, 64], "eval_size": [128, 64]}
MF = {"source_size": [128, 96], "target_size": [128, 96], "eval_size": [128, 96]}
PAIRS = {   # name: the source-only row (its data and sizes)
    "GTA5 -> Cityscapes": {"source": "gta5", "target": "cityscapes", "source_size": [128, 72], **CS},
    "SYNTHIA -> Cityscapes": {"source": "synthia", "target": "cityscapes", "source_size": [128, 76], **CS},
    "MFNet RGB -> thermal": {"source": "mfnet_rgb", "target": "mfnet_thermal", **MF},
    "MFNet day -> night (RGB)": {"source": "mfnet_rgb_day", "target": "mfnet_rgb_night", **MF},
}
TARGET_SUPERVISED = {   # target: the row trained on its labelled train split
    "cityscapes": {"source": "cityscapes", "target": "cityscapes", "source_size": [128, 64], **CS},
    "mfnet_thermal": {"source": "mfnet_thermal", "target": "mfnet_thermal", **MF},
    "mfnet_rgb_night": {"source": "mfnet_rgb_night", "target": "mfnet_rgb_night", **MF},
}
ROWS = list(PAIRS.values()) + list(TARGET_SUPERVISED.values())
# (target supervised, source only) of every pair: the gap
GAPS = tuple((len(PAIRS) + list(TARGET_SUPERVISED).index(row["target"]), i) for i, row in enumerate(PAIRS.values()))


def row_name(r: dict) -> str:
    if r["source"] == r["target"]:
        return f"{r['target']} target supervised"
    return next(name for name, row in PAIRS.items() if (row["source"], row["target"]) == (r["source"], r["target"]))


STUDY = Study(
    name="mini_gap",
    description=__doc__.split("\n\n")[0],
    method="source_only",
    rows=ROWS,
    paired=GAPS,
    smoke_rows=(0, 4),                  # GTA5 -> Cityscapes and Cityscapes target supervised
    seeds=(0, 1, 2),
    budget={"mini": {"iterations": 300, "eval_every": 300}},
    report=ReportSpec(
        title="The mini twins' domain gaps: source only vs target supervised (target val)",
        baseline={"source": "gta5", "target": "cityscapes"},
        group=None,
        name=row_name,
        metric="miou",
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
