"""Tables, figures and report assembly on hand-made trials frames (fast: no Ray)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from udalab.analysis import figures as F
from udalab.analysis import store
from udalab.analysis import tables as T
from udalab.analysis.report import build_report, render_index, write_index, write_report
from udalab.analysis.report_spec import ReportSpec
from udalab.datasets.labels import CLASS_NAMES, THING_CLASSES


def _frame(rows: list[dict], classes: tuple[str, ...] = ()) -> pd.DataFrame:
    """A trials frame in store.load_trials' schema from {method, <params>, seed, miou, ...} dicts."""
    out = []
    for i, r in enumerate(rows):
        rec = {"trial_id": f"t_{i:05d}", "status": r.pop("status", "TERMINATED"), "method": r.pop("method", "m")}
        metrics = {k: r.pop(k) for k in list(r) if k in ("miou", "pixel_acc", "iiou") or k.startswith("iou.")}
        seed = r.pop("seed", 0)
        rec.update(r)
        rec["seed"] = seed
        rec.update(metrics)
        rec.update(iterations=100, train_seconds=10.0 + i, wall_seconds=30.0 + i, gpu="cpu", error=None)
        out.append(rec)
    df = pd.DataFrame(out)
    return df.astype({"seed": "Int64", "iterations": "Int64", "error": "str", "gpu": "str"})


# MML Table 3 shape: L_att x L_KL on/off, 2 seeds each
MML = _frame([
    {"method": "mml", "att_loss": a, "kl_loss": k, "seed": s, "miou": base + s, "iou.car": base + 10 + s,
     "iou.person": base - 5, "iou.bicycle": base - 10 - s}
    for (a, k, base) in [(False, False, 60.0), (True, False, 65.0), (False, True, 70.0), (True, True, 77.0)]
    for s in (0, 1)
]).astype({"att_loss": "boolean", "kl_loss": "boolean"})


def test_ablation_table_checkmarks_mean_std_delta_bold():
    t = T.ablation_table(MML, metrics=("miou",), baseline={"att_loss": False, "kl_loss": False},
                         labels={"att_loss": "L_att", "kl_loss": "L_KL"})
    measured = [r for r in t.rows if r.kind != "published"]
    assert [c.label for c in t.columns] == ["L_att", "L_KL", "mIoU", "Δ mIoU", "seeds"]
    assert t.column("att_loss") == ["✗", "✓", "✗", "✓"] and t.column("kl_loss") == ["✗", "✗", "✓", "✓"]
    # mean ± sample std of (base, base + 1) = base + 0.5 ± 0.7
    assert t.column("miou") == ["60.5 ± 0.7", "65.5 ± 0.7", "70.5 ± 0.7", "77.5 ± 0.7"]
    assert t.column("Δmiou") == ["baseline", "+5.0", "+10.0", "+17.0"]
    assert [r.cells["miou"].bold for r in measured] == [False, False, False, True]
    assert measured[0].kind == "baseline" and t.column("seeds") == ["2"] * 4

    md = t.to_markdown()
    assert "| L_att | L_KL | mIoU | Δ mIoU | seeds |" in md
    assert "| ✓ | ✓ | **77.5 ± 0.7** | +17.0 | 2 |" in md and "| ✗ | ✗ | 60.5 ± 0.7 | baseline | 2 |" in md
    h = t.to_html()
    assert "<b>77.5 ± 0.7</b>" in h and h.count("<b>") == 1 and "<td class=\"config\">✓</td>" in h
    tex = t.to_latex()
    assert r"\textbf{77.5 $\pm$ 0.7}" in tex and r"\checkmark & \checkmark" in tex
    assert r"$\times$ & $\times$ & 60.5 $\pm$ 0.7 & baseline" in tex
    assert r"\begin{tabular}{llrrr}" in tex and r"\toprule" in tex and tex.count(r"\\") == 5


def test_ablation_table_published_rows_beside_matching_configuration():
    t = T.ablation_table(MML, metrics=("miou", "iou.car"), reference="mml_ablation",
                         baseline={"att_loss": False, "kl_loss": False})
    kinds = [r.kind for r in t.rows]
    assert kinds == ["baseline", "published", "measured", "published", "measured", "published", "measured", "published"]
    pub = [r for r in t.rows if r.kind == "published"]
    assert [r.cells["miou"].text() for r in pub] == ["61.1", "66.6", "70.4", "78.2"]
    assert [r.cells["iou.car"].text() for r in pub] == ["73.4", "81.7", "87.8", "91.2"]
    assert all(not r.cells["miou"].bold for r in pub) and pub[0].cells["seeds"].text() == "published"
    assert pub[-1].cells["att_loss"].text() == "✓" and "Table 3" in pub[-1].source
    md = t.to_markdown()
    assert "| *✓* | *✓* | *78.2* | *91.2* | – | *published* |" in md
    assert r"\textit{78.2}" in t.to_latex()
    assert 'class="published"' in t.to_html()


def test_factor_columns_schedule_table_and_missing_values():
    # multi-decoder Table 3 shape: priority x weight copy x order, one seed, an unfinished config
    rows = []
    for prio, copy, order, miou in [("semantic", True, "d→b", 73.0), ("semantic", False, "b", 74.8),
                                    ("depth", True, "s→b", 77.9), ("depth", False, "b", float("nan"))]:
        rows.append({"method": "multidecoder", "priority": prio, "weight_copy": copy, "order": order,
                     "miou": miou, "iiou": miou / 2, "pixel_acc": 98.0,
                     "status": "RUNNING" if math.isnan(miou) else "TERMINATED"})
    df = _frame(rows).astype({"weight_copy": "boolean"})
    t = T.ablation_table(df, metrics=("miou", "iiou", "pixel_acc"), reference="multidecoder_schedule",
                         labels={"weight_copy": "copy"})
    assert [c.key for c in t.columns if c.kind == "config"] == ["priority", "weight_copy", "order"]
    measured = [r for r in t.rows if r.kind != "published"]
    assert [r.cells["priority"].text() for r in measured] == ["semantic", "semantic", "depth", "depth"]
    assert [r.cells["weight_copy"].text() for r in measured] == ["✓", "✗", "✓", "✗"]
    assert measured[3].cells["miou"].text() == "–" and measured[3].cells["seeds"].note == "1 running"
    assert measured[2].cells["miou"].bold and measured[0].cells["miou"].text() == "73.0"  # one seed: no ±
    assert not any(r.cells["pixel_acc"].bold for r in measured)                          # all equal: no bold
    assert t.column("Δmiou") == ["–"] * len(t.rows)                                       # no baseline given
    pub = {r.cells["order"].text(): r.cells["miou"].text() for r in t.rows if r.kind == "published"}
    assert pub == {"d→b": "72.97", "s→b": "77.89", "b": "74.75"} or len(pub) == 3
    assert "(1 running)" in t.to_markdown() and r"d$\to$b" in t.to_latex()


def test_class_table_stuff_thing_groups():
    classes = ("road", "sky", "car", "person")
    df = _frame([{"method": m, "seed": s, "miou": v, **{f"iou.{c}": v + k + s for k, c in enumerate(classes)}}
                 for m, v in (("source_only", 10.0), ("hrda", 20.0)) for s in (0, 1)])
    t = T.class_table(df, class_groups=T.STUFF_THING)
    assert set(T.STUFF_THING["thing"]) == set(THING_CLASSES) and "road" in T.STUFF_THING["stuff"]
    assert set(T.STUFF_THING["stuff"]) | set(T.STUFF_THING["thing"]) == set(CLASS_NAMES)
    labels = [(c.group, c.label) for c in t.columns if c.kind == "metric"]
    assert labels == [("stuff", "road"), ("stuff", "sky"), ("stuff", "stuff mIoU"), ("thing", "person"),
                      ("thing", "car"), ("thing", "thing mIoU"), ("", "mIoU")]
    hrda = t.rows[1].cells
    # per trial: stuff = mean(road, sky) = v + 0.5 + s, thing = mean(car, person) = v + 2.5 + s; seeds 0, 1
    assert hrda["_group.stuff"].text() == "21.0" and hrda["_group.thing"].text() == "23.0"
    assert hrda["iou.car"].bold and not t.rows[0].cells["iou.car"].bold
    assert "± 0.7" in hrda["iou.road"].title
    h = t.to_html()
    assert ('<tr><th colspan="1"></th><th colspan="3" class="grp">stuff</th><th colspan="3" class="grp">thing</th>'
            '<th colspan="1"></th></tr>') in h
    tex = t.to_latex()
    assert r"\multicolumn{3}{c}{stuff}" in tex and r"\multicolumn{3}{c}{thing}" in tex and r"\cmidrule(lr)" in tex
    assert "stuff mIoU" in t.to_markdown()


def test_latex_escaping_and_markdown_pipes():
    df = _frame([{"method": "a_b", "tag": "x|y & 50%", "miou": 1.0}, {"method": "c", "tag": "z", "miou": 2.0}])
    t = T.ablation_table(df)
    assert r"a\_b" in t.to_latex() and r"x|y \& 50\%" in t.to_latex()
    assert r"x\|y & 50%" in t.to_markdown()
    assert "x|y &amp; 50%" in t.to_html()


# ---------------------------------------------------------------------------------------
# Figures


def _lambda_frame():
    rows = []
    for s in (0, 1, 2):
        rows.append({"method": "source_only", "seed": s, "miou": 10.0 + s})
        for lam in (0.2, 0.67, 1.0):
            rows.append({"method": "intrada", "lambda_split": lam, "seed": s, "miou": 12 + 4 * lam - 3 * (lam - 0.67) ** 2 + s})
    return _frame(rows)


def test_metric_curve_bands_flat_lines_and_published():
    df = _lambda_frame()
    agg = T.aggregate(df)
    cfg = store.config_columns(df)
    from udalab.analysis.reference import reference, reference_info

    fig = F.metric_curve(agg, "lambda_split", "miou", "method", cfg, T.varying_columns(agg, cfg),
                         reference("intrada"), reference_info("intrada")["config"], "secondary")
    names = [t.name for t in fig.data]
    assert "intrada (mean over seeds)" in names and any("source_only (no lambda_split" in n for n in names)
    curve = next(t for t in fig.data if t.name == "intrada (mean over seeds)")
    assert list(curve.x) == [0.2, 0.67, 1.0] and curve.y[0] == pytest.approx(12 + 0.8 - 3 * 0.47 ** 2 + 1)
    band = next(t for t in fig.data if t.name == "intrada ±std")
    assert band.fill == "toself" and len(band.x) == 6 and max(band.y) > max(curve.y)
    pub = next(t for t in fig.data if t.name.startswith("published"))
    assert sorted(pub.y) == [45.5, 46.3] and pub.yaxis == "y2"     # mini data: own axis
    same = F.metric_curve(agg, "lambda_split", "miou", "method", cfg, [], reference("intrada"),
                          reference_info("intrada")["config"], "same")
    assert all(getattr(t, "yaxis", None) in (None, "y") for t in same.data)


def test_metric_curve_grouped_by_column_hrda_crop_shape():
    """The HRDA crop-size study's shape: x = crop_ratio, one curve per group value (a derived column)."""
    rows = []
    for lr, hr, name in ((True, False, "LR only"), (False, True, "HR only"), (True, True, "LR+HR")):
        for ratio in (0.25, 0.5, 1.0):
            for s in (0, 1):
                rows.append({"method": "hrda", "use_lr": lr, "use_hr": hr, "crop_ratio": ratio, "seed": s,
                             "miou": 50 + 10 * ratio + (5 if hr else 0) + s})
    rows.append({"method": "hrda", "self_training": False, "crop_ratio": 1.0, "seed": 0, "miou": 40.0})
    df = _frame(rows).astype({"self_training": "boolean"})
    # derived functions see only the values a row sets: r.get(name, default) works for the others
    spec = ReportSpec(title="HRDA crop", x="crop_ratio", group="mode", class_groups="stuff_thing",
                      derived={"mode": lambda r: ("source only" if not r.get("self_training", True) else
                                                  "LR+HR" if r["use_lr"] and r["use_hr"] else
                                                  "LR only" if r["use_lr"] else "HR only")})
    rep = build_report(df, spec, preset="mini", study_name="hrda_crop_size")
    fig = rep.figures["fig-metric"]
    curves = {t.name: t for t in fig.data if t.name.endswith("(mean over seeds)")}
    assert set(curves) == {"LR only (mean over seeds)", "HR only (mean over seeds)", "LR+HR (mean over seeds)",
                           "source only (mean over seeds)"}
    assert list(curves["HR only (mean over seeds)"].x) == [0.25, 0.5, 1.0]
    assert list(curves["LR only (mean over seeds)"].y) == pytest.approx([53.0, 55.5, 60.5])
    assert rep.tables["results"].column("mode")[:3] == ["LR only"] * 3


def test_bars_heatmap_search_and_cost_figures():
    agg = T.aggregate(MML)
    cfg = store.config_columns(MML)
    from udalab.analysis.reference import reference, reference_info

    bars = F.ablation_bars(agg, ("miou",), cfg, T.varying_columns(agg, cfg), "method", reference("mml_ablation"),
                           reference_info("mml_ablation")["config"], "same")
    assert [t.type for t in bars.data] == ["bar", "bar"] and list(bars.data[1].y) == [61.1, 66.6, 70.4, 78.2]
    assert list(bars.data[0].error_y.array) == pytest.approx([0.7071] * 4, abs=1e-3)
    stars = F.ablation_bars(agg, ("miou",), cfg, T.varying_columns(agg, cfg), "method", reference("mml_ablation"),
                            reference_info("mml_ablation")["config"], "secondary")
    top = max(list(stars.data[1].y) + [m + e for m, e in zip(stars.data[0].y, stars.data[0].error_y.array)])
    assert stars.data[1].mode == "markers" and stars.layout.yaxis2.range == stars.layout.yaxis.range  # one scale
    assert stars.layout.yaxis.range[0] == 0 and stars.layout.yaxis.range[1] == pytest.approx(1.05 * top)
    heat = F.class_heatmap(agg, ["car", "person", "bicycle"], cfg, T.varying_columns(agg, cfg), "method",
                           reference("mml_ablation"), reference_info("mml_ablation")["config"])
    assert heat.data[0].z.shape == (8, 3) and heat.data[0].y[1].startswith("published")
    df = _lambda_frame()
    df = df[df["method"] == "intrada"]
    hist = F.optuna_history(df, "miou")
    assert list(hist.data[1].y) == sorted(hist.data[1].y)  # best so far never drops
    par = F.parallel_coordinates(df, ["lambda_split"], "miou")
    assert par.data[0].type == "parcoords" and len(par.data[0].dimensions) == 2
    imp = F.importances(MML, ["att_loss", "kl_loss"], "miou")
    assert set(imp) == {"att_loss", "kl_loss"} and sum(imp.values()) == pytest.approx(1.0)
    cost = F.cost_per_trial(MML, cfg, T.varying_columns(agg, cfg))
    assert list(cost.data[0].x) == [30.0 + i for i in range(8)] and "cpu" in cost.layout.title.text
    assert cost.data[0].orientation == "h" and cost.data[0].y[0] == "mml, att_loss=✗, kl_loss=✗, seed 0 (00000)"


def test_named_configurations_label_every_table_bar_and_trial():
    """ReportSpec.name names each configuration as the paper does, in the table, the bars (horizontal,
    wrapped, the full config in the hover), the heatmap and the cost chart; a search keeps its points."""
    spec = ReportSpec(title="MML", reference="mml_ablation", group=None, columns=("att_loss", "kl_loss"),
                      name=lambda r: " + ".join(n for n, on in (("L_att", r["att_loss"]), ("L_KL", r["kl_loss"])) if on)
                      or "neither")
    rep = build_report(MML, spec, preset="mini", study_name="mml_ablation")
    table = rep.tables["results"]
    names = {"neither", "L_att", "L_KL", "L_att + L_KL"}
    assert table.columns[0].label == "configuration" and set(table.column(T.NAME_COLUMN)) >= names
    bars = rep.figures["fig-metric"]
    assert set(bars.data[0].x) == names
    assert F.tick_text("self-training ✓, warm-up ✗, RCS ✗") == "self-training<br>✓, warm-up ✗,<br>RCS ✗"
    assert bars.layout.xaxis.tickangle == 0 and all("=" in c for c in bars.data[0].customdata)
    assert set(rep.figures["fig-classes"].data[0].y) >= names
    assert {y.split(", seed")[0] for y in rep.figures["fig-cost"].data[0].y} == names
    # the bars draw the IoU metrics side by side; pixel accuracy (≈ 80 %) stays in the table
    with_acc = MML.assign(pixel_acc=80.0, **{"test.miou": MML["miou"] - 1, "test.pixel_acc": 81.0})
    rep = build_report(with_acc, spec, preset="mini", study_name="mml_ablation")
    assert [t.name for t in rep.figures["fig-metric"].data if t.type == "bar"] == \
        ["test mIoU measured (mean ± std)", "val mIoU measured (mean ± std)"]
    assert "test pixel acc." in [c.label for c in rep.tables["results"].columns]
    # the default name without `name`: the declared columns with their labels, no raw config dump
    spec = ReportSpec(title="MML", group=None, columns=("att_loss", "kl_loss"), labels={"att_loss": "L_att"})
    rep = build_report(MML, spec, preset="mini", study_name="mml_ablation")
    assert "L_att ✗, kl_loss ✗" in rep.tables["results"].column(T.NAME_COLUMN)
    rep = build_report(MML, spec, preset="mini", study_name="mml_ablation_optuna")
    assert "configuration" not in [c.label for c in rep.tables["results"].columns]


# ---------------------------------------------------------------------------------------
# Report and index


def test_report_sections_search_and_files(tmp_path):
    df = _lambda_frame()
    spec = ReportSpec(title="IntraDA λ", x="lambda_split", reference="intrada", baseline={"method": "source_only"})
    study = tmp_path / "intrada_split_optuna"
    path = write_report(study, spec, df=df, preset="mini", static_figures=False)
    text = path.read_text(encoding="utf-8")
    for h in ("Did we reproduce it?", "What the search found", "mIoU vs lambda_split", "Results per configuration",
              "Cost per trial", "Published: IntraDA"):
        assert f"<h2>{h}" in text, h
    for fid in ("fig-metric", "fig-history", "fig-parallel", "fig-cost"):
        assert f'id="{fid}"' in text, fid
    assert text.count("plotly.js v") == 1 and "<script src=" not in text     # embedded once, offline
    assert "best lambda_split (of 3 measured): measured <b>1</b>, published <b>0.67</b>" in text
    assert "Best trial" in text and "mini data: compare the shape" in text
    md = (study / "tables" / "results.md").read_text()
    assert "| source_only | – | 11.0 ± 1.0 | baseline | 3 |" in md
    assert (study / "tables" / "results.tex").read_text().startswith(r"\begin{table}")
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="intrada_split_optuna/report.html"' not in index  # no Tune state / trials.parquet there yet
    store.write_trials(study, df)
    write_index(tmp_path)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="intrada_split_optuna/report.html"' in index and "IntraDA λ" in index
    assert "finished" in index and "16.7 ± 1.0 (intrada, lambda_split=1, n=3)" in index


def test_index_lists_states():
    html = render_index([
        {"name": "a", "trials": 2, "status": {"TERMINATED": 2}, "preset": "mini", "report": True, "title": "A",
         "best": ("x", 12.34, 0.5, 2), "error": None, "state": "finished", "updated": "2026-01-01 00:00"},
        {"name": "b", "trials": 0, "status": {}, "preset": "?", "report": False, "title": "b", "best": None,
         "error": None, "state": "no trials yet", "updated": ""},
    ], "results")
    assert "12.3 ± 0.5 (x, n=2)" in html and "no report yet: udalab report b" in html and "2 studies" in html


def test_index_picks_the_best_on_val_and_shows_its_test(tmp_path):
    """The index's best configuration is chosen on val (the split settings are chosen on) and shown
    with its held-out test mIoU, even where another configuration has the higher test score."""
    df = _lambda_frame()
    df["test.miou"] = np.where(df["lambda_split"] == 0.2, 30.0, df["miou"] - 2)   # λ 0.2: best on test only
    store.write_trials(tmp_path / "intrada_split", df)
    write_index(tmp_path)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "16.7 ± 1.0 (intrada, lambda_split=1, n=3); test 14.7 ± 1.0 (n=3)" in index


def test_report_without_static_export_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    path = write_report(tmp_path / "s", ReportSpec(title="t"), df=MML, preset="paper")
    text = path.read_text(encoding="utf-8")
    assert "Static PNG/SVG figures skipped: no Chromium or Chrome found" in text
    assert not (tmp_path / "s" / "figures").exists() and "mini data" not in text


def test_data_dependency_curve_published_per_group_and_log_axis():
    """UDAS data dependency: x = labelled images (log axis), one curve per method, each method's
    published points in its own curve's colour; UDAS with no labelled image (measured and published)
    stands apart under a tick "0", half a decade left of the smallest count, not joined to its curve."""
    rows = [{"method": m, "labelled": n, "seed": s, "miou": base + 5 * math.log10(n) + s}
            for m, base in (("supervised", 20.0), ("udas", 35.0)) for n in (100, 500, 1000, 2975) for s in (0, 1)]
    rows += [{"method": "udas", "labelled": 0, "seed": s, "miou": 30.0 + 2 * s} for s in (0, 1)]
    df = _frame(rows)
    rep = build_report(df, ReportSpec(title="UDAS data", x="labelled", x_log=True, reference="udas_data"),
                       preset="paper", study_name="udas_data")
    fig = rep.figures["fig-metric"]
    assert fig.layout.xaxis.type == "log"
    curves = {t.name: t for t in fig.data if t.name.endswith("(mean over seeds)")}
    pub = {t.name: t for t in fig.data if t.name.startswith("published")}
    assert set(curves) == {"supervised (mean over seeds)", "udas (mean over seeds)"}
    assert set(pub) == {"published supervised", "published udas", "published udas at 0"}
    assert sorted(pub["published udas"].y) == [55.6, 60.6, 61.3, 63.5] and min(pub["published udas"].x) == 100
    zero = 100 / math.sqrt(10)
    assert list(pub["published udas at 0"].x) == [pytest.approx(zero)] and list(pub["published udas at 0"].y) == [43.9]
    assert list(curves["udas (mean over seeds)"].x) == [100, 500, 1000, 2975]
    at0 = next(t for t in fig.data if t.name == "udas at 0")
    assert list(at0.x) == [pytest.approx(zero)] and list(at0.y) == [31.0] and at0.error_y.array[0] == pytest.approx(math.sqrt(2))
    assert fig.layout.xaxis.ticktext[0] == "0" and fig.layout.xaxis.tickvals[0] == pytest.approx(zero)
    assert list(fig.layout.xaxis.ticktext[1:]) == ["100", "1000"]
    assert pub["published supervised"].marker.color == curves["supervised (mean over seeds)"].line.color
    assert all(getattr(t, "yaxis", None) in (None, "y") for t in fig.data)   # paper scale: one axis
    # paper scale: reproduced within max(1, 2 std)? the verdict counts the pairs
    assert "of 9 published configurations reproduced" in rep.html


def test_published_row_matching_several_configurations_is_not_paired():
    """DAFormer's SYNTHIA 60.9 names only the method: it must not sit beside (or be compared with) one
    of several configurations of that method."""
    df = _frame([{"method": "daformer", "crop_ratio": r, "seed": 0, "miou": 50 + 10 * r} for r in (0.5, 1.0)])
    t = T.ablation_table(df, reference="daformer_synthia")
    assert [r.kind for r in t.rows] == ["measured", "measured", "published"]
    assert t.rows[-1].cells["seeds"].text().startswith("published (DAFormer; matches 2")
    assert t.rows[-1].cells["crop_ratio"].text() == "–"
    rep = build_report(df, ReportSpec(title="crop", x="crop_ratio", reference="daformer_synthia"), preset="mini")
    assert "Not compared" in rep.html and "matches 2 configurations" in rep.html
    level = [tr for tr in rep.figures["fig-metric"].data if tr.name.startswith("published: DAFormer")]
    assert len(level) == 1 and list(level[0].y) == [60.9, 60.9]


def test_hrda_published_rows_pair_with_their_crop_setting():
    """HRDA's rows name mode, crop ratio and self-training: each sits beside exactly its configuration."""
    df = _frame([{"method": "hrda", "mode": m, "crop_ratio": r, "self_training": True, "seed": 0,
                  "miou": 50 + 10 * r + (1 if m == "lr+hr" else 0)} for m in ("lr", "lr+hr") for r in (0.5, 1.0)])
    t = T.ablation_table(df, reference="hrda")
    kinds = [(r.kind, r.cells["mode"].text(), r.cells["crop_ratio"].text()) for r in t.rows]
    published = [k for k in kinds if k[0] == "published"]
    assert len(published) == 2 and all(k[2] == "1" for k in published)
    assert sorted(k[1] for k in published) == ["lr", "lr+hr"]


@pytest.mark.parametrize("module", ["daformer_ablation", "hrda_crop_size", "intrada_split", "mml_ablation",
                                    "multidecoder_schedule", "udas_ablation"])
def test_every_study_names_each_row_as_its_paper(module):
    """One distinct, readable name per grid row (no name=value dump), first in the results table."""
    import importlib

    study = importlib.import_module(f"udalab.studies.{module}").STUDY
    rows = [store.trial_row(f"{i:05d}", "TERMINATED", {"row": row, "seed": 0}, {"miou": 10.0 + i})
            for i, row in enumerate(study.grid_rows())]
    rep = build_report(store.trials_frame(rows), study.report, preset="mini", study_name=study.name)
    table = rep.tables["results"]
    names = [r.cells[T.NAME_COLUMN].text() for r in table.rows if r.kind != "published"]
    assert table.columns[0].key == T.NAME_COLUMN
    raw = {k for row in study.rows for k in row}             # hyperparameter names: the config dump's words
    assert len(set(names)) == len(study.rows) and not any("=" in n or any(k in n for k in raw) for n in names), names


def test_verdict_counts_published_pairs_in_words():
    """The DAFormer ablation has one published row (the full method): the verdict says so in the singular."""
    from udalab.studies.daformer_ablation import STUDY

    rows = [store.trial_row(f"{i:05d}", "TERMINATED", {"row": row, "seed": 0}, {"miou": 10.0 + i})
            for i, row in enumerate(STUDY.grid_rows())]
    rep = build_report(store.trials_frame(rows), STUDY.report, preset="mini", study_name=STUDY.name)
    assert "1 configuration has a published number." in rep.html and "1 configurations" not in rep.html


def test_search_figures_mark_the_papers_values_and_draw_the_best_schedules():
    """A search's metric-against-parameter panels mark the paper's τ; MML's δ schedules of the best
    trials are drawn beside the paper's linear 0.2 -> 1."""
    from udalab.studies.mml_ablation import STUDY as MML_STUDY
    from udalab.studies.udas_ablation import STUDY as UDAS_STUDY

    rows = [store.trial_row(f"{i:05d}", "TERMINATED", {"method": "udas", "tau": tau, "views": 3, "seed": 0},
                            {"miou": 30 - 20 * (tau - 0.5) ** 2}) for i, tau in enumerate((0.3, 0.5, 0.7, 0.9))]
    rep = build_report(store.trials_frame(rows), UDAS_STUDY.report, preset="mini", study_name="udas_ablation_optuna")
    slices = rep.figures["fig-slices"]
    assert [a.text for a in slices.layout.annotations if a.text.startswith("paper")] == ["paper 0.6"]
    assert slices.data[1].x == (0.5,) and "tau = 0.5 (paper 0.6)" in rep.html
    schedules = [(0.1, 1.5, "sigmoid"), (0.2, 1.0, "step"), (0.5, 0.8, "linear")]
    rows = [store.trial_row(f"{i:05d}", "TERMINATED", {"method": "mml", "delta_start": a, "delta_end": b,
                                                       "delta_shape": c, "seed": 0}, {"miou": 50.0 + i})
            for i, (a, b, c) in enumerate(schedules)]
    fig = build_report(store.trials_frame(rows), MML_STUDY.report, preset="mini",
                       study_name="mml_ablation_optuna").figures["fig-schedule"]
    assert [t.name.split(":")[0] for t in fig.data] == ["#1", "#2", "#3", "paper (0.2, 1, linear)"]
    best, paper = fig.data[0], fig.data[-1]
    assert best.y[0] == pytest.approx(0.5) and best.y[-1] == pytest.approx(0.8)          # the best: linear 0.5 -> 0.8
    assert paper.y[0] == pytest.approx(0.2) and paper.y[25] == pytest.approx(0.6) and paper.y[-1] == pytest.approx(1.0)


def test_a_figure_kaleido_drops_is_tried_again_and_the_note_names_what_is_missing(tmp_path, monkeypatch):
    """plotly's write_images returns without the file of a figure kaleido failed to render (kaleido
    hands back the error instead of raising it): the export tries those once more, alone, and the
    note lists only files that exist, naming any still missing."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from udalab.analysis import export

    pytest.importorskip("kaleido")
    monkeypatch.setattr(export, "find_browser", lambda: "/usr/bin/chromium")
    calls = []

    def write_images(figs, paths, **kwargs):      # kaleido on a loaded machine: a render that times out
        calls.append([Path(p).name for p in paths])
        for p in paths:
            if Path(p).name != "b.png" or (len(calls) > 1 and not stubborn):
                Path(p).write_bytes(b"image")

    monkeypatch.setattr(pio, "write_images", write_images)
    figs = {"fig-a": go.Figure(), "fig-b": go.Figure()}
    stubborn = False
    files, note = export.export_figures(figs, tmp_path / "once")
    assert calls == [["a.png", "a.svg", "b.png", "b.svg"], ["b.png"]]
    assert sorted(Path(f).name for f in files) == ["a.png", "a.svg", "b.png", "b.svg"] and "Not written" not in note

    calls.clear()
    stubborn = True
    files, note = export.export_figures(figs, tmp_path / "never")
    assert calls == [["a.png", "a.svg", "b.png", "b.svg"], ["b.png"]]
    assert sorted(p.name for p in (tmp_path / "never").iterdir()) == ["a.png", "a.svg", "b.svg"]
    assert sorted(Path(f).name for f in files) == ["a.png", "a.svg", "b.svg"]
    assert note.startswith("Static figures: 3 files") and "Not written (kaleido gave no file, twice): b.png" in note
