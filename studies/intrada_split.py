"""IntraDA split ratio λ (Pan et al., CVPR 2020, Sec. 4.2 and Table 1).

λ = |easy| / |target| decides how many target images, ranked by the entropy of the
inter-domain (ADVENT) model, are self-trained on with pseudo labels and aligned against
the rest. The paper finds λ = 0.67 best on GTA5 -> Cityscapes; λ = 1 is plain
self-training (no hard split); λ = 0 leaves the ADVENT model as it is. Source-only and
ADVENT rows complete the table.

    python studies/intrada_split.py               # grid over λ, 3 seeds, mini data
    python studies/intrada_split.py --optuna      # Optuna search over λ
    python studies/intrada_split.py --data-root /data --address auto   # real data, cluster
"""
from ray import tune

from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

LAMBDAS = (0.0, 0.2, 0.4, 0.6, 0.67, 0.8, 1.0)

STUDY = Study(
    name="intrada_split",
    description=__doc__.split("\n\n")[0],
    method="intrada",
    source="gta5",
    target="cityscapes",
    rows=[{"method": "source_only"}, {"method": "advent"}] + [{"lambda_split": lam} for lam in LAMBDAS],
    smoke_rows=(0, 6),                       # source only and IntraDA at λ = 0.67
    seeds=(0, 1, 2),
    search={"lambda_split": tune.uniform(0.0, 1.0)},
    num_samples=12,
    metric="miou",
    mode="max",
    report=ReportSpec(
        title="IntraDA: split ratio λ (GTA5 → Cityscapes)",
        x="lambda_split",
        reference="intrada",
        baseline={"method": "source_only"},
        labels={"lambda_split": "λ"},
        name=lambda r: {"source_only": "source only", "advent": "ADVENT"}.get(r["method"])
        or f"IntraDA λ {r.get('lambda_split', 0.67):g}",
        class_groups="stuff_thing",
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
