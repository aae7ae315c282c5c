"""mini-VOC: object-centric scenes of the 20 PASCAL VOC classes in VOC 2012's layout, with a
depth map per image saved as the pseudo depth (PseudoDepth/, written by the same code as
`udalab data pseudo-depth`).

Each image shows one to three objects in front of an indoor (wall + floor) or outdoor (sky +
ground) background. Every class has its own silhouette built from a few parts, its own
colours and surface pattern (aeroplane: fuselage, wings and tail; bicycle: two rings and a
frame; cow: a black-spotted body on four legs; ...), with colour and size varying per
instance. Objects stand on the floor/ground at their depth: the nearer, the larger and the
lower in the image; shading darkens with depth (and haze outdoors), so depth and semantics
are related as in real photos. Labels are palette PNGs (0 background, 1..20, 255 void on a
one-pixel band around every object, as VOC's outlines), SegmentationObject/ holds the
instances, ImageSets/Segmentation/ the splits (train, val, trainval and a labelled held-out
test split that real VOC 2012 does not publish labels for); image sizes vary as in VOC. The
image is a photograph of the scene (mini_street.camera: exposure, white balance, vignetting,
lens blur, sensor noise) saved as JPEG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from udalab.datasets.mini_street import camera
from udalab.datasets.voc import PALETTE

SIZES = [(160, 120), (120, 160), (160, 128), (144, 144), (160, 104)]

# Parts in the object's unit box (x right, y down): ("r", x0, y0, x1, y1), ("e", cx, cy, rx, ry),
# ("p", [(x, y), ...]) polygon, ("ring", cx, cy, r_out, r_in); an optional colour after the geometry.
DARK, SKIN, GLASS = (25, 25, 25), (210, 165, 135), (60, 80, 110)
CLASSES = {
    1: ("aeroplane", 1.7, (205, 205, 215), "plain", [("e", .5, .5, .48, .1), ("p", [(.3, .5), (.62, .5), (.45, .97)]),
                                                      ("p", [(.3, .5), (.62, .5), (.45, .03)]),
                                                      ("p", [(.02, .5), (.14, .5), (.04, .18)])]),
    2: ("bicycle", 1.5, (30, 90, 210), "plain", [("ring", .22, .7, .2, .13), ("ring", .78, .7, .2, .13),
                                                  ("r", .22, .42, .78, .5), ("r", .45, .25, .52, .7),
                                                  ("r", .7, .2, .76, .7)]),
    3: ("bird", 1.2, (150, 100, 50), "dots", [("e", .48, .58, .34, .22), ("e", .8, .35, .13, .13),
                                              ("p", [(.9, .3), (1.0, .37), (.9, .42)], (240, 170, 20)),
                                              ("p", [(.02, .45), (.2, .5), (.2, .7)])]),
    4: ("boat", 1.5, (240, 240, 240), "plain", [("p", [(0, .62), (1, .62), (.85, .95), (.15, .95)]),
                                                ("r", .47, .05, .52, .62, (120, 80, 40)),
                                                ("p", [(.53, .08), (.53, .58), (.88, .58)], (230, 60, 50))]),
    5: ("bottle", 0.35, (40, 140, 60), "plain", [("r", .08, .38, .92, 1.0), ("r", .33, 0, .67, .4),
                                                 ("r", .08, .55, .92, .75, (235, 225, 200))]),
    6: ("bus", 2.0, (240, 200, 30), "plain", [("r", 0, .05, 1, .85), ("r", .04, .15, .96, .42, GLASS),
                                              ("e", .2, .87, .08, .12, DARK), ("e", .8, .87, .08, .12, DARK)]),
    7: ("car", 1.8, (200, 30, 30), "plain", [("r", 0, .45, 1, .85), ("p", [(.2, .45), (.3, .12), (.72, .12), (.85, .45)]),
                                             ("p", [(.28, .42), (.35, .18), (.68, .18), (.76, .42)], GLASS),
                                             ("e", .22, .86, .1, .14, DARK), ("e", .78, .86, .1, .14, DARK)]),
    8: ("cat", 1.1, (125, 125, 125), "stripes", [("e", .45, .62, .38, .3), ("e", .8, .3, .17, .17),
                                                 ("p", [(.66, .22), (.7, .02), (.78, .16)]),
                                                 ("p", [(.82, .16), (.9, .02), (.94, .22)]), ("r", .02, .3, .08, .62)]),
    9: ("chair", 0.8, (140, 80, 40), "plain", [("r", 0, .5, 1, .6), ("r", 0, 0, 1, .14), ("r", 0, 0, .1, .5),
                                               ("r", .9, 0, 1, .5), ("r", 0, .6, .1, 1), ("r", .9, .6, 1, 1)]),
    10: ("cow", 1.5, (240, 240, 235), "spots", [("e", .45, .45, .38, .25), ("e", .88, .32, .12, .14),
                                                ("r", .15, .6, .22, 1), ("r", .28, .6, .35, 1), ("r", .6, .6, .67, 1),
                                                ("r", .7, .6, .77, 1)]),
    11: ("diningtable", 1.8, (160, 110, 60), "grain", [("r", 0, .2, 1, .36), ("r", .05, .36, .12, 1),
                                                        ("r", .88, .36, .95, 1), ("r", .3, .3, .7, .36, (240, 240, 240))]),
    12: ("dog", 1.3, (190, 140, 80), "plain", [("e", .45, .52, .33, .2), ("e", .82, .3, .15, .15),
                                               ("e", .9, .18, .05, .1, (110, 70, 40)), ("r", .18, .6, .25, 1),
                                               ("r", .62, .6, .69, 1), ("r", .02, .35, .14, .42)]),
    13: ("horse", 1.2, (110, 60, 30), "plain", [("e", .45, .42, .35, .17), ("p", [(.68, .35), (.78, .05), (.88, .1), (.8, .4)]),
                                                ("e", .88, .1, .1, .07), ("r", .15, .5, .21, 1), ("r", .28, .5, .34, 1),
                                                ("r", .6, .5, .66, 1), ("r", .7, .5, .76, 1)]),
    14: ("motorbike", 1.5, (20, 20, 20), "plain", [("e", .2, .75, .18, .22), ("e", .8, .75, .18, .22),
                                                   ("r", .25, .4, .75, .65, (180, 180, 190)), ("r", .3, .3, .6, .4, (150, 20, 20))]),
    15: ("person", 0.45, (60, 60, 160), "plain", [("e", .5, .1, .2, .1, SKIN), ("e", .5, .4, .42, .25),
                                                  ("r", .25, .6, .45, 1, (40, 40, 60)), ("r", .55, .6, .75, 1, (40, 40, 60))]),
    16: ("pottedplant", 0.8, (50, 150, 50), "leaves", [("e", .5, .35, .45, .35), ("p", [(.2, .62), (.8, .62), (.7, 1), (.3, 1)],
                                                                                   (190, 90, 50))]),
    17: ("sheep", 1.4, (235, 235, 220), "dots", [("e", .45, .45, .4, .3), ("e", .88, .35, .1, .12, (40, 40, 40)),
                                                 ("r", .2, .65, .27, 1, (40, 40, 40)), ("r", .62, .65, .69, 1, (40, 40, 40))]),
    18: ("sofa", 2.0, (120, 40, 90), "plain", [("r", 0, .45, 1, .85), ("r", .05, .1, .95, .5), ("r", 0, .3, .12, .85),
                                               ("r", .88, .3, 1, .85), ("r", .03, .85, .08, 1, DARK), ("r", .92, .85, .97, 1, DARK)]),
    19: ("train", 2.6, (60, 60, 160), "band", [("r", 0, .1, .9, .9), ("p", [(.9, .1), (1, .35), (1, .9), (.9, .9)]),
                                               ("r", .05, .2, .85, .4, GLASS)]),
    20: ("tvmonitor", 1.3, (30, 30, 30), "plain", [("r", 0, 0, 1, .8), ("r", .08, .08, .92, .72, (80, 120, 200)),
                                                   ("r", .4, .8, .6, 1)]),
}


def _polygon(xx, yy, pts) -> np.ndarray:
    inside = np.zeros(xx.shape, bool)
    n = len(pts)
    for k in range(n):
        (x1, y1), (x2, y2) = pts[k], pts[(k + 1) % n]
        cond = (y1 > yy) != (y2 > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = (x2 - x1) * (yy - y1) / (y2 - y1) + x1
        inside ^= cond & (xx < xcross)
    return inside


def _part_mask(part, u, v):
    kind = part[0]
    if kind == "r":
        x0, y0, x1, y1 = part[1:5]
        return (u >= x0) & (u < x1) & (v >= y0) & (v < y1), part[5:6]
    if kind == "e":
        cx, cy, rx, ry = part[1:5]
        return ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1, part[5:6]
    if kind == "ring":
        cx, cy, ro, ri = part[1:5]
        r2 = ((u - cx) / ro) ** 2 + ((v - cy) / (ro * 1.0)) ** 2
        return (r2 <= 1) & (r2 >= (ri / ro) ** 2), part[5:6]
    return _polygon(u, v, part[1]), part[2:3]


def _pattern(kind: str, u, v, rng) -> np.ndarray:
    """Multiplicative surface pattern of a class."""
    if kind == "stripes":
        return np.where((u * 14).astype(int) % 2 == 0, 0.7, 1.0)
    if kind == "spots":
        cells = np.sin(u * 23 + rng.uniform(0, 6)) * np.sin(v * 17 + rng.uniform(0, 6))
        return np.where(cells > 0.55, 0.12, 1.0)
    if kind == "dots":
        return 1 - 0.18 * ((np.sin(u * 40) * np.sin(v * 40)) > 0.6)
    if kind == "grain":
        return 0.85 + 0.15 * np.sin(v * 60 + np.sin(u * 9) * 3)
    if kind == "leaves":
        return 0.75 + 0.25 * (np.sin(u * 31) * np.cos(v * 27) > 0)
    if kind == "band":
        return np.where((v > .55) & (v < .65), 2.5, 1.0)
    return np.ones_like(u)


def render(rng: np.random.Generator, W: int, H: int):
    """(class label uint8 [H,W], instance ids uint8 [H,W], rgb uint8 [H,W,3], depth float32 [H,W] in metres)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    indoor = rng.random() < 0.5
    horizon = H * rng.uniform(0.35, 0.6)
    if indoor:
        wall_d = rng.uniform(5, 9)
        depth = np.where(yy < horizon, wall_d, wall_d + (1.2 - wall_d) * (yy - horizon) / (H - horizon))
        wall, floor = rng.uniform(120, 230, 3), rng.uniform(60, 170, 3)
        rgb = np.where((yy < horizon)[..., None], wall, floor) * 1.0
    else:
        depth = np.where(yy < horizon, 60.0, 30.0 / (1 + 29 * np.clip((yy - horizon) / (H - horizon), 0, 1) ** 1.3))
        sky = np.array([120, 170, 230]) * rng.uniform(0.85, 1.1)
        ground = np.array([90, 140, 60]) if rng.random() < 0.6 else np.array([150, 130, 100])
        rgb = np.where((yy < horizon)[..., None], sky, ground * rng.uniform(0.8, 1.15)) * 1.0
    label = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    n = 1 + int(rng.random() < 0.5) + int(rng.random() < 0.3)
    objs = []
    for _ in range(n):
        cls = int(rng.integers(1, 21))
        d = rng.uniform(1.5, 4.5)
        objs.append((cls, d))
    objs.sort(key=lambda o: -o[1])  # far first
    for k, (cls, d) in enumerate(objs, start=1):
        name, aspect, color, pattern, parts = CLASSES[cls]
        h = min(H * 0.95, H * rng.uniform(1.3, 2.0) / d * (1.0 if aspect < 1.5 else 0.8))
        w = min(W * 0.95, h * aspect * rng.uniform(0.85, 1.15))
        h = w / aspect if w < h * aspect * 0.85 else h
        # stand on the floor where the floor is at depth d (clamped into the image)
        rows = np.nonzero(depth[:, 0] <= d)[0]
        base = float(rows[0]) if rows.size else H - 1
        base = min(max(base, h), H - 1) + rng.uniform(-3, 3)
        x0 = rng.uniform(0, max(1.0, W - w))
        u, v = (xx - x0) / w, (yy - (base - h)) / h
        box = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        if not box.any():
            continue
        base_col = np.clip(np.asarray(color, float) * rng.uniform(0.8, 1.2, 3) if cls != 15 else
                           rng.uniform(30, 230, 3), 0, 255)
        mask = np.zeros((H, W), bool)
        col = np.zeros((H, W, 3))
        for part in parts:
            m, override = _part_mask(part, u, v)
            m &= box
            mask |= m
            col[m] = np.asarray(override[0], float) * rng.uniform(0.9, 1.1) if override else base_col
        if mask.sum() < 12:
            continue
        col = col * _pattern(pattern, u, v, rng)[..., None]
        bulge = np.clip(1 - ((u - 0.5) * 2) ** 2, 0, 1) * 0.25 * min(1.0, w / W * 3)
        label[mask], inst[mask] = cls, k
        rgb[mask] = col[mask]
        depth = np.where(mask, d - bulge, depth)
    # shading: darker with depth, haze outdoors
    shade = np.clip(1.15 - 0.06 * np.minimum(depth, 12), 0.4, 1.2)[..., None]
    rgb = rgb * shade
    if not indoor:
        haze = np.clip(depth / 80, 0, 0.5)[..., None]
        rgb = rgb * (1 - haze) + 200 * haze
    # VOC's void outline: one pixel around every object (outside it)
    edge = np.zeros((H, W), bool)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        shifted = np.roll(inst, (dy, dx), axis=(0, 1))
        edge |= (shifted != inst) & (shifted > inst)
    label[edge], inst[edge] = 255, 255
    # a photograph: exposure, white balance, slight vignetting and lens blur, sensor noise (JPEG follows)
    rgb = camera(rng, rgb, gain=(0.85, 1.15), gamma=(0.9, 1.1), white=0.05, vignette=0.1, sigma=(0.3, 0.7),
                 noise=(2.0, 4.0), shot=0.2)
    return label, inst, rgb, depth.astype(np.float32)


def _save_palette(arr: np.ndarray, path: Path) -> None:
    im = Image.fromarray(arr, mode="L").convert("P")
    im.putpalette(PALETTE.flatten().tolist())
    im.save(path)


def make_voc(out: Path, counts: dict, seed: int, version: int, name_hash: int, size: tuple | None = None) -> None:
    """`size`: (W, H) of the first of SIZES, the others scaled with it (None: SIZES as they are)."""
    from udalab.datasets.pseudo_depth import DepthWriter

    scale = 1.0 if size is None else size[0] / SIZES[0][0]

    voc = Path(out) / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    writer = DepthWriter(voc, model="mini-voc renderer (true depth)", kind="metric")
    order = ["train", "val", "test"]
    k = 0
    all_names = []
    for split in order:
        if split not in counts:
            continue
        names = []
        for i in range(counts[split]):
            k += 1
            rng = np.random.default_rng(np.random.SeedSequence([seed, version, name_hash, order.index(split), i]))
            W, H = (round(side * scale) for side in SIZES[int(rng.integers(len(SIZES)))])
            label, inst, rgb, depth = render(rng, W, H)
            name = f"{2007 + k % 5}_{k:06d}"
            Image.fromarray(rgb).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
            _save_palette(label, voc / "SegmentationClass" / f"{name}.png")
            _save_palette(inst, voc / "SegmentationObject" / f"{name}.png")
            writer.add(name, depth)
            names.append(name)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        if split != "test":  # trainval = train + val, as VOC's; test is the held-out split
            all_names += names
    (voc / "ImageSets" / "Segmentation" / "trainval.txt").write_text("".join(f"{n}\n" for n in all_names))
    writer.close()
