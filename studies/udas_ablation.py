"""UDAS: which step closes the gap (style transfer, UDA, Domain CutMix + self-training), beside AdaptSegNet and ADVENT.

The step ablation of the UDAS paper (Sec. 4.3.1): the same DeepLab-v2 trained with no
adaptation, with UDA only (AdaptSegNet's adversarial step + the primary/auxiliary
consistency), on the CycleGAN-translated source only (ST), ST + UDA, and ST + DA + SSL
(Domain CutMix with the labelled target images, K-view pseudo labels above τ,
self-training). The comparison rows run AdaptSegNet and ADVENT as their papers do.
Published: 28.5 / 30.8 / 36.6 / 44.4 / 63.5 mIoU; AdaptSegNet 42.4, ADVENT 45.5.
`--optuna` searches self-training: the confidence threshold τ (paper 0.6), the number of
views K (paper 3), the rounds and the weight of the KL consistency on the labelled target
images (λ_st_kl). Only step-2 settings are searched, so every configuration of one seed reads
the same UDA stage (trained once, an artifact) and a trial costs its self-training alone; the
UDA stage's own λ_kl is not searched (each value would train the stage again).

    python studies/udas_ablation.py                 # 7 rows x 3 seeds on the mini data
    python studies/udas_ablation.py --smoke         # every step row, 1 seed, tiny schedule
    python studies/udas_ablation.py --optuna        # Optuna over τ, K, rounds, λ_st_kl
    python studies/udas_ablation.py --data-root /data --address auto   # paper scale

The CycleGAN translation is built once per CycleGAN config (whatever the trial's seed) and
shared by every row that translates, the UDA stage once per its settings and seed: set
UDALAB_ARTIFACTS to shared storage on a cluster.
"""
from ray import tune

from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

NO_SSL = {"cutmix": False, "rounds": 0}
STEPS = {"no_adaptation": {"translate": False, "uda": False, **NO_SSL},
         "uda": {"translate": False, **NO_SSL},
         "st": {"uda": False, **NO_SSL},
         "st+uda": {**NO_SSL},
         "st+da+ssl": {}}                     # the method's defaults: every step on


STEP_NAMES = {"no_adaptation": "no adaptation", "uda": "UDA", "st": "ST", "st+uda": "ST + UDA",
              "st+da+ssl": "ST + DA + SSL", "adaptsegnet": "AdaptSegNet", "advent": "ADVENT"}


def step_of(row: dict) -> str | None:
    """The published table's `step` value of a trial row (None for the comparison methods)."""
    if row.get("method", "udas") != "udas":
        return None
    ssl = row.get("rounds", 1) > 0 or row.get("cutmix", True)
    name = "+".join(n for n, on in (("st", row.get("translate", True)), ("uda", row.get("uda", True))) if on)
    return "st+da+ssl" if ssl else (name or "no_adaptation")


STUDY = Study(
    name="udas_ablation",
    description=__doc__.split("\n\n")[0],
    method="udas",
    rows=[*STEPS.values(), {"method": "adaptsegnet"}, {"method": "advent"}],
    smoke_rows=(0, 1, 2, 3, 4),
    seeds=(0, 1, 2),
    search={"tau": tune.uniform(0.3, 0.95), "views": tune.choice([1, 2, 3, 4, 5]),
            "rounds": tune.choice([1, 2, 3]), "lambda_st_kl": tune.loguniform(0.1, 10.0)},
    num_samples=16,
    report=ReportSpec(
        title="UDAS step ablation (GTA5 → Cityscapes)",
        reference="udas_steps",
        baseline={"step": "no_adaptation"},
        group=None,
        derived={"step": lambda r: step_of(r) or r.get("method")},
        columns=("step",),
        name=lambda r: STEP_NAMES.get(r["step"], r["step"]),
        paper={"tau": 0.6, "views": 3},                    # Sec. 4.2.5 (rounds and λ_st_kl: not stated)
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
