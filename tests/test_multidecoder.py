"""The multi-decoder U-Net: focal loss, the schedule, weight copy, per-stage gradients, export, resume."""
import pytest
import torch
import torch.nn.functional as F

from udalab.methods import run_local
from udalab.methods.engine import ConfigError, Run
from udalab.methods.engine.config import make_hparams
from udalab.methods.engine.run import LocalSession
from udalab.methods.multidecoder import PRESETS, DecoderStageStep, MultiDecoderConfig, copy_decoder
from udalab.methods.nets.unet import MultiDecoderUNet, export_semantic
from udalab.methods.parts.losses import focal_loss


def _model(hp) -> MultiDecoderUNet:
    return MultiDecoderUNet(hp.backbone_depth, hp.pretrained, hp.decoder_channels, 21)


def _hp(**over):
    return make_hparams(MultiDecoderConfig, {"preset": "smoke", **over}, PRESETS)


def test_focal_loss_is_its_formula_and_ce_at_gamma_zero():
    torch.manual_seed(0)
    logits, label = torch.randn(2, 5, 4, 6), torch.randint(5, (2, 4, 6))
    label[0, 0, :3] = 255
    ce = F.cross_entropy(logits, label, ignore_index=255, reduction="none")[label != 255]
    assert focal_loss(logits, label, gamma=2.0, alpha=0.5) == pytest.approx(float((0.5 * (1 - torch.exp(-ce)) ** 2 * ce).mean()))
    assert focal_loss(logits, label, gamma=0.0) == pytest.approx(float(F.cross_entropy(logits, label, ignore_index=255)))


@pytest.mark.parametrize("schedule, stages", [
    ("d+copy>s>b", [("d", True), ("s", False), ("b", False)]), ("s>b", [("s", False), ("b", False)]),
    ("b", [("b", False)]), ("s", [("s", False)])])
def test_schedule_parses_the_papers_rows(schedule, stages):
    hp = _hp(schedule=schedule, iterations=10)
    assert hp.stages() == stages and sum(hp.stage_iterations()) == 10
    assert _hp(schedule="d+copy>s>b", iterations=10, first_share=0.5).stage_iterations() == [5, 3, 2]


@pytest.mark.parametrize("bad", ["x>b", "b+copy", "s>d+copy>b", "s+clone>b"])
def test_bad_schedule_names_the_grammar(bad):
    with pytest.raises(ConfigError, match="schedule"):
        _hp(schedule=bad)


def test_weight_copy_copies_all_but_the_output_layer():
    torch.manual_seed(0)
    model = _model(_hp())
    head_before = {k: v.clone() for k, v in model.semantic.state_dict().items() if k.startswith("head.")}
    names = copy_decoder(model.depth, model.semantic)
    src, dst = model.depth.state_dict(), model.semantic.state_dict()
    assert names and all(torch.equal(src[k], dst[k]) for k in names)
    assert set(names) == {k for k in src if not k.startswith("head.")}
    assert all(torch.equal(dst[k], v) for k, v in head_before.items())        # 21-class head untouched


@pytest.mark.parametrize("decoder, trained", [("s", {"encoder", "semantic"}), ("d", {"encoder", "depth"}),
                                              ("b", {"encoder", "semantic", "depth"})])
def test_each_stage_sends_gradients_to_its_parts_only(decoder, trained):
    torch.manual_seed(0)
    hp = _hp()
    model = _model(hp)
    step = DecoderStageStep(Run({"seed": 0}, LocalSession(device="cpu")), hp, None,
                            model, decoder, None, 2)
    batch = {"voc": {"image": torch.randn(2, 3, 48, 48), "label": torch.randint(21, (2, 48, 48)),
                     "depth": torch.rand(2, 1, 48, 48)}}
    step.train_step(batch, 0, torch.Generator())
    for part in ("encoder", "semantic", "depth"):
        grads = [p.grad for p in getattr(model, part).parameters()]
        if part in trained:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), part
        else:
            assert all(g is None for g in grads), part


def test_export_has_no_depth_and_the_same_semantic_logits():
    torch.manual_seed(0)
    model = _model(_hp()).eval()
    deployed = export_semantic(model).eval()
    assert not any("depth" in name for name, _ in deployed.named_parameters())
    assert sum(p.numel() for p in deployed.parameters()) < sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, 64, 48)
    assert torch.equal(deployed(x), model(x)[0])


def test_resume_inside_the_stage_after_the_copy_does_not_copy_again(tmp_path, killed_after):
    """7 steps of d+copy>s>b in stages of 2, 3, 2, killed at step 4 (inside s, after the copy): the
    resumed run ends as the uninterrupted one (a second copy would overwrite the semantic decoder's
    first steps)."""
    from udalab.datasets import mini_root

    mini_root("voc")
    config = {"method": "multidecoder", "preset": "smoke", "seed": 0, "iterations": 7, "first_share": 2 / 7}
    full = run_local("multidecoder", config)          # reports every 2 steps of a stage and at its end
    assert [(r["iteration"], r["stage"]) for r in full] == [(2, "1-d"), (4, "2-s"), (5, "2-s"), (7, "3-b")]
    assert {"iiou", "test.miou", "loss.seg", "loss.depth"} <= set(full[-1])
    with killed_after(4):
        run_local("multidecoder", config, checkpoint_dir=tmp_path)
    resumed = run_local("multidecoder", config, checkpoint_dir=tmp_path)
    from udalab.methods.engine.run import without_timings as strip
    assert [r["iteration"] for r in resumed] == [5, 7]
    for got, want in zip(resumed, full[2:]):
        assert strip(got) == pytest.approx(strip(want), nan_ok=True)


def test_the_study_declares_table_3_with_the_papers_columns():
    from types import SimpleNamespace

    from udalab.analysis.reference import reference
    from udalab.studies.multidecoder_schedule import STUDY, TABLE_3, columns_of
    from udalab.studies.run.trials import check_trial_configs, trial_settings

    ref = reference("multidecoder_schedule")
    table_3 = ref[ref["priority"].notna()]
    published = {(r["priority"], r["weight_copy"], r["order"]) for _, r in table_3.iterrows()}
    ours = {tuple(columns_of(s)[k] for k in ("priority", "weight_copy", "order")) for s in TABLE_3}
    assert ours == published and len(table_3) == 8
    # Table 2's single decoder and joint training sit beside the study's two extra rows
    assert sorted(ref[ref["priority"].isna()]["order"]) == sorted(columns_of(s)["order"] for s in ("s", "b"))
    assert len({STUDY.rows[i]["schedule"] for i in STUDY.smoke_rows} & set(TABLE_3)) >= 4
    for optuna in (False, True):
        args = SimpleNamespace(preset=None, smoke=False, data_root=None, set=[], optuna=optuna)
        check_trial_configs(STUDY, args, trial_settings(STUDY, args))


def test_pictures_show_the_depth_decoder_only_where_the_schedule_trains_it(tmp_path):
    """The single decoder ("s") never trains its depth decoder: the report shows no depth prediction
    for it (it would be the initialisation's), but does for a schedule that trains depth."""
    import json

    from udalab.datasets import mini_root

    mini_root("voc")
    shown = {}
    for schedule in ("s", "d>s"):
        folder = tmp_path / schedule.replace(">", "_")
        run_local("multidecoder", {"preset": "smoke", "seed": 0, "schedule": schedule, "iterations": 4},
                  checkpoint_dir=folder)
        index = json.loads((folder / "pictures" / "index.json").read_text())
        files = {p.name for p in (folder / "pictures").iterdir()}
        shown[schedule] = {name for name in index["pictures"] if f"0_{name}.png" in files}
    assert "depth" in shown["d>s"] and "depth" not in shown["s"]
    assert shown["s"] >= {"pred"} and shown["d>s"] - shown["s"] == {"depth"}
