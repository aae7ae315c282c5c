"""Does HRDA ≥ DAFormer > source only hold on the mini data? Each segmentor between its own source-only and oracle rows.

DAFormer's and HRDA's segmentors each train three ways on mini GTA5 -> mini Cityscapes, scored
on target val and the held-out test split:

    DAFormer source only   MiT + DAFormer head on mini GTA5 alone (no self-training)
    DAFormer               DACS self-training at the low resolution (Cityscapes 128x64, 64-px crops)
    HRDA source only       HRDA's multi-resolution segmentor on mini GTA5 alone
    HRDA                   LR context (128 px at full resolution -> 64 px) + HR detail (64 px), fused
    DAFormer oracle        DAFormer's segmentor trained on mini Cityscapes train itself
    HRDA oracle            HRDA's segmentor trained on mini Cityscapes train itself

`STUDY.paired` pairs each self-training row and each oracle row with its segmentor's source-only
row on the same seed: the share of its own gap a segmentor's self-training closes is the ratio of
the two Δs, (UDA - source only) / (oracle - source only).

    python studies/mini_hrda.py --local --jobs 2                 # 6 rows x 3 seeds
    python studies/mini_hrda.py --local --rows 1 3 --set iterations=1200 --set eval_every=300
"""
from udalab.analysis.report_spec import ReportSpec
from udalab.studies import mini_adaptation
from udalab.studies.run.command import main
from udalab.studies.study import Study


def row_name(r: dict) -> str:
    """mini_adaptation's name of the row, "<segmentor> oracle" for a row trained on the target."""
    if r.get("source") == "cityscapes":
        return f"{mini_adaptation.FAMILY[r['method']]} oracle"
    return mini_adaptation.row_name(r)


STUDY = Study(
    name="mini_hrda",
    description=__doc__.split("\n\n")[0],
    method="daformer",
    rows=[
        {"method": "daformer", "self_training": False},
        {"method": "daformer"},
        {"method": "hrda", "self_training": False},
        {"method": "hrda"},
        {"method": "daformer", "self_training": False, "source": "cityscapes"},
        {"method": "hrda", "self_training": False, "source": "cityscapes"},
    ],
    paired=((1, 0), (4, 0), (3, 2), (5, 2)),   # self-training and oracle, each against its source-only row
    smoke_rows=(0, 3),
    seeds=(0, 1, 2),
    report=ReportSpec(
        title="DAFormer and HRDA between their source-only and oracle rows (mini GTA5 → mini Cityscapes)",
        baseline={"method": "daformer", "self_training": False},
        group=None,
        name=row_name,
        class_groups="stuff_thing",
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
