"""Make docs/hrda_lr_vs_hr.png: LR vs HR crops side by side, from a finished hrda_crop_size run.

Each trial of the crop-size study keeps its last checkpoint's pictures (prediction, and for LR + HR
the scale attention) of the same four validation images. This puts input, ground truth, LR 0.75,
HR 0.75, LR 1.0, LR + HR 1.0 and LR + HR 1.0's scale attention in one row per image, one seed.

    python studies/hrda_crop_size.py --local --jobs 2 --cpus-per-trial 1
    python tools/make_lr_vs_hr.py results/hrda_crop_size_local [--seed 0] [--images 0 1]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from udalab.studies.hrda_crop_size import STUDY

DOCS = Path(__file__).resolve().parents[1] / "docs"
# (column title, row of the study, picture)
COLUMNS = [("input", ("lr+hr", 1.0), "image"), ("ground truth", ("lr+hr", 1.0), "label"),
           ("LR 0.75", ("lr", 0.75), "pred"), ("HR 0.75", ("hr", 0.75), "pred"),
           ("LR 1.0", ("lr", 1.0), "pred"), ("LR + HR 1.0", ("lr+hr", 1.0), "pred"),
           ("LR + HR 1.0: scale attention", ("lr+hr", 1.0), "attention")]
TITLE_H, GAP = 18, 4


def row_index(mode: str, ratio: float) -> int:
    """The study row with self-training at this crop geometry."""
    for i, row in enumerate(STUDY.rows):
        if row["mode"] == mode and row["crop_ratio"] == ratio and row["self_training"]:
            return i
    raise KeyError(f"hrda_crop_size has no self-training row {mode} {ratio}")


def pictures_dir(results: Path, row: int, seed: int) -> Path:
    """The local runner's layout: _train/train-row<i>-seed<s>/checkpoint_local/pictures."""
    path = results / "_train" / f"train-row{row}-seed{seed}" / "checkpoint_local" / "pictures"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: run the study with --local first "
                                f"(python studies/hrda_crop_size.py --local) and pass its results folder")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="the study's results folder (…/hrda_crop_size_local)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, nargs="+", default=[0, 1], help="indices of the saved validation images")
    p.add_argument("--out", type=Path, default=DOCS / "hrda_lr_vs_hr.png")
    args = p.parse_args(argv)
    tiles = [[Image.open(pictures_dir(args.results, row_index(*row), args.seed) / f"{i}_{kind}.png").convert("RGB")
              for _, row, kind in COLUMNS] for i in args.images]
    w, h = tiles[0][0].size
    sheet = Image.new("RGB", (len(COLUMNS) * (w + GAP) - GAP, len(tiles) * (h + TITLE_H)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            x, y = c * (w + GAP), r * (h + TITLE_H)
            draw.text((x + 2, y + 3), COLUMNS[c][0], fill="black")
            sheet.paste(tile.resize((w, h), Image.NEAREST), (x, y + TITLE_H))
    sheet.save(args.out)
    print(f"{args.out}: seed {args.seed}, images {args.images}, {sheet.size[0]} x {sheet.size[1]} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
