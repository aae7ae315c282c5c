"""`udalab data ...`: make the mini twins, check a dataset folder, print its statistics,
fill VOC's pseudo-depth folder.

    udalab data make-mini [NAME ...]                 all mini twins (or the named ones)
    udalab data check DATASET --root DIR [--split S] every file: layout, pairing, decoding,
                                                     label ids, sizes; each problem with its fix
    udalab data stats DATASET [--root DIR]           images per split, class pixel frequencies
    udalab data pseudo-depth --root VOCROOT --model PATH_OR_HF_ID
    udalab data realism [--images N] [--json FILE]   does colour alone tell the mini twins' domains
                                                     apart? (datasets/realism.py)

DATASET is a dataset name (gta5, cityscapes, synthia, mfnet, voc, or a view such as
mfnet_thermal_day); without --root the embedded mini twin is used.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


def progress(items, desc: str = "", total: int | None = None, stream=None, quiet: bool = False):
    """`for x in progress(items, "check"): ...` with a tqdm bar on stderr (one line a terminal
    redraws; in a log file a line every 10 s at most); the items themselves when quiet."""
    if quiet:
        return items
    from tqdm.auto import tqdm

    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(items, desc=desc, total=total, file=stream, dynamic_ncols=tty, mininterval=0.2 if tty else 10.0,
                unit="file")


def _progress(quiet: bool = False):
    """progress(items, desc, total) -> iterable: a tqdm bar, or the items themselves when quiet."""
    return lambda items, desc="", total=None: progress(items, desc, total, quiet=quiet)


def add_arguments(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("data", help="mini twins, dataset checks and statistics, VOC pseudo depth",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", required=True)
    from udalab.datasets.mini import MINI_DATASETS

    m = sub.add_parser("make-mini", help="generate the mini twins into $UDALAB_DATA_CACHE (all, or the named ones)")
    m.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(MINI_DATASETS)} (default: all)")
    c = sub.add_parser("check", help="walk every file of a dataset folder and report every problem with its fix")
    c.add_argument("dataset", help="dataset name: gta5, cityscapes, synthia, mfnet, voc (or a view)")
    c.add_argument("--root", default=None, help="dataset folder (default: the embedded mini twin)")
    c.add_argument("--split", action="append", default=None, help="split(s) to check (default: all found)")
    c.add_argument("--workers", type=int, default=1, help="decode in this many processes (default 1)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("stats", help="images per split and class pixel frequencies (cached, see datasets/rcs.py)")
    s.add_argument("dataset")
    s.add_argument("--root", default=None)
    s.add_argument("--split", action="append", default=None)
    s.add_argument("--quiet", action="store_true")
    d = sub.add_parser("pseudo-depth", help="fill VOC's PseudoDepth/ folder from a monocular depth model")
    d.add_argument("--root", required=True, help="VOC root (the folder holding VOCdevkit/VOC2012, or VOC2012)")
    d.add_argument("--model", required=True,
                   help="local model folder or Hugging Face id in the local cache, e.g. "
                        "depth-anything/Depth-Anything-V2-Small-hf or facebook/dpt-dinov2-small-kitti")
    d.add_argument("--split", action="append", default=None, help="VOC split(s) (default: train and val)")
    d.add_argument("--device", default=None)
    d.add_argument("--overwrite", action="store_true", help="recompute images that already have a depth map")
    d.add_argument("--quiet", action="store_true")
    r = sub.add_parser("realism", help="colour check of the mini twins' street pairs: the domain gap is realism, "
                                       "not colour (datasets/realism.py)")
    r.add_argument("--images", type=int, default=None, help="images per dataset (default: all)")
    r.add_argument("--json", default=None, help="also write the checks to this JSON file")
    return p


def run(args) -> int:
    from udalab.datasets.errors import DatasetError

    try:
        if args.data_command == "make-mini":
            return _make_mini(args)
        if args.data_command == "check":
            return _check(args)
        if args.data_command == "stats":
            return _stats(args)
        if args.data_command == "pseudo-depth":
            return _pseudo_depth(args)
        if args.data_command == "realism":
            from udalab.datasets.realism import run as run_realism

            return run_realism(args)
    except DatasetError as e:
        print(f"udalab data {args.data_command}: {e}", file=sys.stderr)
        return 2
    raise SystemExit(f"unknown data command {args.data_command!r}")


# ---------------------------------------------------------------------------------------


def _make_mini(args) -> int:
    from udalab.datasets.mini import MINI_DATASETS, mini_root

    for name in args.names or MINI_DATASETS:
        t0 = time.perf_counter()
        root = mini_root(name)
        print(f"{name:11s} {root}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _resolve(name: str, root):
    from udalab.datasets import DATASETS, root_key, split_name
    from udalab.datasets.errors import DatasetError
    from udalab.datasets.mini import mini_root

    base = split_name(name)[0]
    if base not in DATASETS:
        raise DatasetError(f"unknown dataset {base!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[base], Path(root) if root is not None else mini_root(root_key(name))


def check_item(ds, i: int, depth: bool) -> tuple[bool, list[str], tuple | None, list[int]]:
    """Check one (image, label) pair: (fine, problems, image (H, W) or None, train ids seen)."""
    from udalab.datasets.errors import DatasetError

    img_path, lbl_path = ds.files[i]
    problems: list[str] = []
    ids: list[int] = []
    try:
        image_hw = tuple(ds.read_image(img_path).shape[-2:])
    except DatasetError as e:
        problems.append(str(e))
        image_hw = None
    try:
        label = None if lbl_path is None else ds.encode(ds.read_label(lbl_path), lbl_path)   # None: unlabelled split
        ids = [] if label is None else np.unique(label).tolist()
    except DatasetError as e:
        problems.append(str(e))
        label = None
    if image_hw is not None and label is not None and image_hw != tuple(label.shape):
        problems.append(f"size mismatch: image {img_path} is {image_hw[1]}x{image_hw[0]} but label {lbl_path} "
                        f"is {label.shape[1]}x{label.shape[0]}; replace the broken pair")
    if depth and image_hw is not None:
        try:
            d = ds.load_depth(i)
            if d.shape != image_hw:
                problems.append(f"size mismatch: pseudo depth {ds.depth_dir / (img_path.stem + '.png')} is "
                                f"{d.shape[1]}x{d.shape[0]} but image {img_path} is {image_hw[1]}x"
                                f"{image_hw[0]}; re-run `udalab data pseudo-depth --overwrite`")
        except DatasetError as e:
            problems.append(str(e))
    return not problems, problems, image_hw, ids


_WORKER: dict = {}


def _init_worker(ds, depth) -> None:
    _WORKER["ds"], _WORKER["depth"] = ds, depth


def _check_in_worker(i: int):
    return check_item(_WORKER["ds"], i, _WORKER["depth"])


def check_dataset(name: str, root=None, splits=None, progress=None, workers: int = 1) -> dict:
    """Walk every file of a dataset folder. Returns {"root", "splits": {split: {...}}, "problems": [str]};
    never raises for a broken file: each problem is a message naming the file and the fix.
    workers > 1 decodes in that many processes (results keep the file order)."""
    from concurrent.futures import ProcessPoolExecutor

    from udalab.datasets.errors import DatasetError
    from udalab.datasets.voc import VOC

    cls, root = _resolve(name, root)
    report = {"root": str(root), "dataset": name, "splits": {}, "problems": []}
    problems = report["problems"]
    if not root.is_dir():
        problems.append(f"{root} does not exist: pass the dataset folder with --root")
        return report
    for split in splits or cls.available_splits(root):
        try:
            ds = cls(root, split, strict=False)
        except DatasetError as e:
            problems.append(str(e))
            continue
        info = {"images": len(ds.files) + len(ds.missing), "ok": 0, "sizes": Counter(), "ids": Counter()}
        report["splits"][split] = info
        problems += [ds.missing_problem(img, lbl) for img, lbl in ds.missing]
        depth = isinstance(ds, VOC) and ds.depth_dir.is_dir()
        n = len(ds.files)
        if workers > 1 and n > 1:
            pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(ds, depth))
            results = pool.map(_check_in_worker, range(n), chunksize=max(1, min(64, n // (4 * workers))))
        else:
            pool, results = None, (check_item(ds, i, depth) for i in range(n))
        try:
            for ok, found, image_hw, ids in (progress(results, f"check {split}", n) if progress else results):
                problems += found
                info["ids"].update(ids)
                if image_hw is not None:
                    info["sizes"][f"{image_hw[1]}x{image_hw[0]}"] += 1
                info["ok"] += ok
        finally:
            if pool is not None:
                pool.shutdown()
    return report


def _check(args) -> int:
    report = check_dataset(args.dataset, args.root, args.split, _progress(args.quiet), workers=args.workers)
    print(f"{args.dataset} at {report['root']}")
    for split, info in report["splits"].items():
        sizes = ", ".join(f"{s} ({n})" for s, n in info["sizes"].most_common(3))
        more = f" +{len(info['sizes']) - 3} other sizes" if len(info["sizes"]) > 3 else ""
        ids = sorted(info["ids"])
        print(f"  {split:6s} {info['images']:6d} images, {info['ok']} fine; sizes {sizes or '-'}{more}; "
              f"train ids {ids[:25]}{' ...' if len(ids) > 25 else ''}")
    problems = report["problems"]
    if not problems:
        print("no problems found")
        return 0
    print(f"{len(problems)} problem(s):")
    for p in problems:
        print(f"  - {p}")
    return 1


def _stats(args) -> int:
    from udalab.datasets.errors import DatasetError
    from udalab.datasets.rcs import class_stats

    cls, root = _resolve(args.dataset, args.root)
    print(f"{args.dataset} at {root}")
    for split in args.split or cls.available_splits(root):
        try:
            ds = cls(root, split)
        except DatasetError as e:
            print(f"  {split}: {e}")
            continue
        if not ds.labelled:
            print(f"\n  {split}: {len(ds)} images without labels")
            continue
        bar = _progress(args.quiet)
        st = class_stats(ds, progress=lambda items: bar(items, f"stats {split}"))
        f = st.frequencies()
        present = (st.counts > 0).sum(0)
        print(f"\n  {split}: {len(ds)} images, {int(st.counts.sum())} labelled pixels")
        extra = ""
        if hasattr(ds, "time") and split:
            from udalab.datasets.mfnet import time_of

            times = Counter(time_of(p.name) for p, _ in ds.files)
            extra = f" (day {times.get('day', 0)}, night {times.get('night', 0)})"
            print(f"  {'':6s}{extra}")
        print(f"  {'id':>4s} {'class':16s} {'pixels %':>9s} {'images':>7s}")
        for c in range(st.num_classes):
            mark = "" if ds.eval_classes is None or c in ds.eval_classes else "  (not evaluated)"
            print(f"  {c:4d} {st.class_names[c]:16s} {100 * f[c]:9.3f} {present[c]:7d}{mark}")
    return 0


def _pseudo_depth(args) -> int:
    from udalab.datasets.pseudo_depth import fill_pseudo_depth, load_estimator

    estimator, kind = load_estimator(args.model, args.device)
    out = fill_pseudo_depth(args.root, estimator, model=args.model, kind=kind, splits=args.split,
                            overwrite=args.overwrite, progress=lambda items: _progress(args.quiet)(items, "depth"))
    print(f"pseudo depth in {out['folder']}: {out['written']} written, {out['skipped']} already there")
    return 0
