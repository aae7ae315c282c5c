"""The embedded mini data: miniature GTA5, Cityscapes, SYNTHIA, MFNet and PASCAL VOC, generated
deterministically in the real datasets' on-disk layouts and label encodings, so they go
through the real loaders. This module holds the street scenes of GTA5, Cityscapes and
SYNTHIA and the cache logic; MFNet and VOC have their own renderers (mini_mfnet.py,
mini_voc.py).

Scenes are procedural street views in perspective (road to a vanishing point, sidewalks,
buildings, vegetation, terrain, fences, poles with signs and lights, cars, trucks, buses,
persons, riders on bicycles and motorcycles, sky). Both domains share the scene
distribution, with a slightly different camera height, and differ in appearance the way
the real ones do:

* GTA5, the "game" look: flat, saturated per-class colours, blue sky, crisp edges, bright.
* Cityscapes, the "camera" look: other colours for several classes (overcast grey sky,
  reddish sidewalks, olive vegetation, desaturated cars), texture and sensor noise,
  vignetting and exposure/white-balance changes per image, a little blur, and the ego
  vehicle's bonnet at the bottom (label id 1, ignored in training and evaluation).
* SYNTHIA, "random viewpoints of a rendered city": the camera sits much higher (horizon in
  the upper third, more road and sidewalk, objects seen from above), more pedestrians, its
  own rendered palette (brownish road, pale sidewalks, dark green vegetation, pastel
  buildings), per-image coloured light with a lighting gradient, no terrain and no trucks
  (SYNTHIA's 16 classes), lane markings labelled as SYNTHIA's "lanemarking" (ignored).

The domain gap this leaves is measured by benchmarks/mini_adaptation.py (docs/mini_adaptation.json).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from udalab.datasets.errors import DatasetError
from udalab.datasets.labels import LABELS

VERSION = 1  # of gta5 / cityscapes (kept so that their caches stay valid)
VERSIONS = {"gta5": VERSION, "cityscapes": VERSION, "synthia": 1, "mfnet": 1, "voc": 1}
MINI_DATASETS = ("gta5", "cityscapes", "synthia", "mfnet", "voc")
SPECS = {
    "gta5": {"size": (256, 144), "splits": {"train": 300}},
    "cityscapes": {"size": (256, 128), "splits": {"train": 300, "val": 90},
                   "cities": {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}},
    "synthia": {"size": (256, 152), "splits": {"train": 300}},   # 1280x760 / 5
    "mfnet": {"size": (160, 120), "splits": {"train": 200, "val": 60, "test": 60}},  # 640x480 / 4
    "voc": {"size": None, "splits": {"train": 200, "val": 80}},  # sizes vary per image, as in VOC
}
ID = {label.name: label.id for label in LABELS}

# Base colours per domain (RGB); "game" colours are saturated, "camera" ones shifted and greyer.
COLORS = {
    "gta5": {
        "sky": (96, 160, 240), "road": (88, 84, 104), "sidewalk": (178, 178, 170), "building": None,
        "wall": (170, 150, 120), "fence": (150, 110, 70), "pole": (90, 90, 96), "traffic light": (40, 40, 40),
        "traffic sign": (240, 200, 20), "vegetation": (56, 170, 46), "terrain": (150, 200, 80),
        "person": None, "rider": None, "car": None, "truck": (200, 200, 210), "bus": (230, 160, 20),
        "bicycle": (30, 30, 30), "motorcycle": (180, 20, 20), "unlabeled": (20, 20, 20),
    },
    "cityscapes": {
        "sky": (196, 204, 212), "road": (118, 112, 118), "sidewalk": (158, 128, 130), "building": None,
        "wall": (150, 146, 138), "fence": (120, 118, 110), "pole": (110, 110, 105), "traffic light": (55, 55, 50),
        "traffic sign": (200, 190, 140), "vegetation": (78, 96, 52), "terrain": (120, 130, 80),
        "person": None, "rider": None, "car": None, "truck": (160, 160, 160), "bus": (190, 170, 120),
        "bicycle": (50, 50, 55), "motorcycle": (90, 80, 80), "unlabeled": (40, 40, 40),
    },
    "synthia": {
        "sky": (150, 185, 215), "road": (96, 86, 78), "sidewalk": (196, 190, 176), "building": None,
        "wall": (196, 176, 150), "fence": (110, 100, 92), "pole": (60, 64, 72), "traffic light": (30, 34, 30),
        "traffic sign": (40, 90, 200), "vegetation": (40, 92, 40), "terrain": (40, 92, 40),
        "person": None, "rider": None, "car": None, "truck": (120, 120, 160), "bus": (210, 60, 50),
        "bicycle": (150, 150, 40), "motorcycle": (40, 40, 140), "unlabeled": (60, 60, 60),
    },
}
GAME_PAINT = [(220, 30, 30), (30, 80, 220), (240, 240, 240), (250, 200, 0), (20, 160, 60), (20, 20, 20), (160, 30, 200)]
CAMERA_PAINT = [(70, 70, 75), (150, 150, 155), (210, 210, 215), (25, 25, 30), (60, 70, 100), (110, 90, 80)]
GAME_BUILDING = [(200, 120, 90), (230, 210, 150), (150, 150, 210), (190, 80, 70), (220, 220, 220)]
CAMERA_BUILDING = [(120, 112, 105), (150, 140, 125), (95, 95, 100), (135, 120, 110), (170, 165, 155)]
SYNTH_PAINT = [(180, 40, 120), (40, 150, 150), (200, 200, 120), (90, 60, 160), (220, 120, 60), (100, 110, 120)]
SYNTH_BUILDING = [(230, 190, 200), (180, 210, 230), (220, 220, 180), (200, 170, 140), (160, 190, 170)]
LANE_MARK = 250  # placeholder id of SYNTHIA's lane markings on the canvas (no Cityscapes label id)


def mini_cache() -> Path:
    return Path(os.environ.get("UDALAB_DATA_CACHE", Path.home() / ".cache" / "udalab" / "mini"))


def mini_root(name: str) -> Path:
    """Folder of the mini twin `name`, generated on first use (safe for concurrent callers)."""
    _check_name(name)
    version = VERSIONS[name]
    final = mini_cache() / f"{name}-v{version}"
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        make_mini(name, tmp)
        (tmp / ".complete").write_text(f"udalab mini {name} v{version}\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, final)  # atomic; fails if another process finished first
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / ".complete").exists():
            raise DatasetError(f"cannot create the mini data folder {final} ({e}); if it exists without its "
                               f".complete marker it is left over from an interrupted run: delete it and retry, "
                               f"or point UDALAB_DATA_CACHE at a writable folder") from e
    return final


def _check_name(name: str) -> None:
    if name not in MINI_DATASETS:
        raise DatasetError(f"no mini twin of {name!r}; available: {', '.join(MINI_DATASETS)} "
                           f"(other datasets need --data-root)")


def make_mini(name: str, out_dir, seed: int = 0, count: dict | None = None) -> Path:
    """Write the mini twin `name` into out_dir. count overrides images per split."""
    _check_name(name)
    out = Path(out_dir)
    spec = SPECS[name]
    for split in count or {}:
        if split not in spec["splits"]:
            raise DatasetError(f"mini {name} has no split {split!r}; use {', '.join(spec['splits'])}")
    counts = count or spec["splits"]
    if name == "mfnet":
        from udalab.datasets.mini_mfnet import make_mfnet

        make_mfnet(out, spec["size"], counts, seed, VERSIONS[name], hash_name(name))
        return out
    if name == "voc":
        from udalab.datasets.mini_voc import make_voc

        make_voc(out, counts, seed, VERSIONS[name], hash_name(name))
        return out
    W, H = spec["size"]
    version = VERSIONS[name]
    for split, n in counts.items():
        split_index = list(spec["splits"]).index(split)
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, version, hash_name(name), split_index, i]))
            label, image = render_scene(rng, W, H, name)
            if name == "gta5":
                _write_gta5(out, i + 1, image, label)
            elif name == "synthia":
                _write_synthia(out, i, image, label)
            else:
                city = spec["cities"][split][i % len(spec["cities"][split])]
                _write_cityscapes(out, split, city, i, image, label)
    return out


def hash_name(name: str) -> int:
    return sum((k + 1) * ord(c) for k, c in enumerate(name))


# ---------------------------------------------------------------------------------------
# Writers in the real formats.


def _palette() -> list[int]:
    pal = np.zeros((256, 3), np.uint8)
    for label in LABELS:
        pal[label.id] = label.color
    return pal.flatten().tolist()


def _write_gta5(out: Path, index: int, image: np.ndarray, label: np.ndarray) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "images" / f"{index:05d}.png")
    lab = Image.fromarray(label, mode="L").convert("P")
    lab.putpalette(_palette())
    lab.save(out / "labels" / f"{index:05d}.png")


def _synthia_lut() -> np.ndarray:
    """Canvas (Cityscapes label id) -> SYNTHIA class id; unmapped -> 0 (void)."""
    from udalab.datasets.synthia import TRAIN_TO_SYNTHIA

    lut = np.zeros(256, np.uint16)
    for label in LABELS:
        if label.train_id in TRAIN_TO_SYNTHIA:
            lut[label.id] = TRAIN_TO_SYNTHIA[label.train_id]
    lut[LANE_MARK] = 22
    return lut


def _write_synthia(out: Path, i: int, image: np.ndarray, label: np.ndarray) -> None:
    """RGB/NNNNNNN.png and GT/LABELS/NNNNNNN.png: 16-bit, class in channel 0, an instance id in channel 1."""
    from udalab.datasets.base import write_png16

    (out / "RGB").mkdir(parents=True, exist_ok=True)
    (out / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "RGB" / f"{i:07d}.png")
    cls = _synthia_lut()[label]
    gt = np.zeros(label.shape + (3,), np.uint16)
    gt[..., 0] = cls
    things = np.isin(cls, (8, 10, 11, 12, 17, 19))  # car, pedestrian, bicycle, motorcycle, rider, bus
    gt[..., 1] = np.where(things, 1000 + cls, 0)    # an instance-like id > 255: only a 16-bit read keeps it
    write_png16(out / "GT" / "LABELS" / f"{i:07d}.png", gt)


def _write_cityscapes(out: Path, split: str, city: str, i: int, image: np.ndarray, label: np.ndarray) -> None:
    stem = f"{city}_{i // 3:06d}_{19 + i:06d}"
    img_dir, gt_dir = out / "leftImg8bit" / split / city, out / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(img_dir / f"{stem}_leftImg8bit.png")
    Image.fromarray(label, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")


# ---------------------------------------------------------------------------------------
# The scene.


class _Canvas:
    """Label ids plus per-pixel colour, painted back to front."""

    def __init__(self, W: int, H: int):
        self.W, self.H = W, H
        self.label = np.zeros((H, W), np.uint8)
        self.color = np.zeros((H, W, 3), np.float32)
        self.yy, self.xx = np.mgrid[0:H, 0:W]

    def paint(self, mask: np.ndarray, name: str, color) -> None:
        self.label[mask] = ID[name]
        self.color[mask] = color

    def rect(self, x0, y0, x1, y1, name, color) -> None:
        x0, x1 = int(max(0, round(x0))), int(min(self.W, round(x1)))
        y0, y1 = int(max(0, round(y0))), int(min(self.H, round(y1)))
        if x1 > x0 and y1 > y0:
            self.label[y0:y1, x0:x1] = ID[name]
            self.color[y0:y1, x0:x1] = color

    def ellipse(self, cx, cy, rx, ry, name, color) -> None:
        m = ((self.xx - cx) / max(rx, 0.5)) ** 2 + ((self.yy - cy) / max(ry, 0.5)) ** 2 <= 1
        self.paint(m, name, color)


def _jitter(rng, color, amount: float) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255)


def render_scene(rng: np.random.Generator, W: int, H: int, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """(label ids uint8 [H,W], image uint8 [H,W,3]) of one street scene."""
    cam = domain == "cityscapes"
    syn = domain == "synthia"  # draws differ only inside `if syn` branches: gta5/cityscapes stay as they were
    C = COLORS[domain]
    col = lambda name, amount=6.0: _jitter(rng, C[name], amount * (2.0 if cam else 1.0))  # noqa: E731
    cv = _Canvas(W, H)
    if syn:  # SYNTHIA's random viewpoints: a camera well above the street
        horizon = H * rng.uniform(0.12, 0.34)
    else:
        horizon = H * (rng.uniform(0.36, 0.46) if cam else rng.uniform(0.40, 0.50))  # camera height differs
    vx = W * rng.uniform(0.38, 0.62)
    depth = lambda y: np.clip((y - horizon) / (H - horizon), 0, 1)  # noqa: E731  0 at horizon, 1 at bottom

    # sky and ground
    cv.paint(cv.yy < horizon, "sky", col("sky", 4))
    road_half = W * rng.uniform(0.45, 0.7)
    walk = W * rng.uniform(0.25, 0.45)
    d = depth(cv.yy)
    left_edge, right_edge = vx - d * road_half, vx + d * road_half
    ground = cv.yy >= horizon
    side = rng.random() < 0.35  # one side has terrain/vegetation instead of buildings
    terrain = "vegetation" if syn else "terrain"  # SYNTHIA's 16 classes have no terrain
    cv.paint(ground, terrain if side else "sidewalk", col(terrain if side else "sidewalk"))
    cv.paint(ground & (cv.xx > vx), "sidewalk", col("sidewalk"))
    cv.paint(ground & (cv.xx > left_edge - d * walk) & (cv.xx < right_edge + d * walk) & (d > 0), "sidewalk",
             col("sidewalk"))
    cv.paint(ground & (cv.xx >= left_edge) & (cv.xx <= right_edge), "road", col("road", 4))
    # lane marking (road colour, brighter): texture only, still road
    lane = ground & (np.abs(cv.xx - vx) < 0.6 + d * 2) & ((cv.yy // 6) % 2 == 0)
    cv.color[lane] = np.clip(cv.color[lane] + 70, 0, 255)
    if syn:
        cv.label[lane] = LANE_MARK  # SYNTHIA labels lane markings (id 22, ignored)

    # buildings / vegetation along both sides, taller near the image border
    for side_sign in (-1, 1):
        x = 0.0 if side_sign < 0 else vx
        x_end = vx if side_sign < 0 else W
        while x < x_end:
            w = rng.uniform(12, 40)
            edge_dist = (vx - x) if side_sign < 0 else (x + w - vx)
            top = horizon - (0.15 + 0.9 * edge_dist / W) * H * rng.uniform(0.5, 1.1)
            base = horizon + (edge_dist / max(vx if side_sign < 0 else W - vx, 1)) * 0.08 * H
            cols = (cv.xx >= x) & (cv.xx < x + w)
            if side and side_sign < 0 or rng.random() < 0.2:
                cy = top + (base - top) * 0.3
                cv.ellipse(x + w / 2, cy, w * 0.7, (base - top) * 0.45, "vegetation", col("vegetation", 10))
                cv.paint(cols & (cv.yy >= cy) & (cv.yy < base) & (np.abs(cv.xx - x - w / 2) < 2), "vegetation",
                         col("vegetation", 10))
            else:
                palette = CAMERA_BUILDING if cam else (SYNTH_BUILDING if syn else GAME_BUILDING)
                base_col = _jitter(rng, palette[rng.integers(len(palette))], 12 if cam else 6)
                m = cols & (cv.yy >= top) & (cv.yy < base)
                cv.paint(m, "building", base_col)
                win = m & ((cv.xx - int(x)) % 7 < 3) & ((cv.yy - int(top)) % 8 < 4)
                cv.color[win] = cv.color[win] * (0.55 if cam else 0.7)
            x += w

    # a wall or fence standing on the sidewalk's outer edge, on some images
    if rng.random() < 0.5:
        name = "fence" if rng.random() < 0.5 else "wall"
        sgn = rng.choice([-1, 1])
        edge_y = horizon + (cv.xx - vx) / (sgn * (road_half + walk)) * (H - horizon)  # row of the edge per column
        height = 2 + depth(edge_y) * H * 0.15
        m = (edge_y > horizon + 2) & (cv.yy <= edge_y) & (cv.yy >= edge_y - height)
        cv.paint(m, name, col(name))
        if name == "fence":
            slats = m & ((cv.xx % 4) == 0)
            cv.color[slats] = cv.color[slats] * 0.6

    # objects, far to near
    objects = []
    for _ in range(rng.integers(2, 7)):
        objects.append(("car", rng.uniform(0.08, 1.0)))
    for _ in range(rng.integers(2, 9) if syn else rng.integers(0, 5)):  # SYNTHIA: crowds of pedestrians
        objects.append(("person", rng.uniform(0.1, 1.0)))
    for _ in range(rng.integers(1, 4)):
        objects.append(("pole", rng.uniform(0.1, 0.9)))
    if rng.random() < 0.5:
        objects.append(("rider", rng.uniform(0.15, 1.0)))
    if rng.random() < 0.25:
        big = "truck" if rng.random() < 0.5 else "bus"
        objects.append(("bus" if syn else big, rng.uniform(0.1, 0.7)))
    objects.sort(key=lambda o: o[1])
    for kind, t in objects:
        y = horizon + t * (H - horizon)
        s = 0.15 + t  # scale with depth
        if kind in ("car", "truck", "bus"):
            lane_pos = rng.uniform(-0.8, 0.8)
            cx = vx + lane_pos * t * road_half
            w = s * W * (0.16 if kind == "car" else 0.24)
            h = w * (0.55 if kind == "car" else 0.9)
            paints = SYNTH_PAINT if syn else (CAMERA_PAINT if cam else GAME_PAINT)
            paint = paints[rng.integers(len(paints))]
            color = _jitter(rng, paint, 8) if kind == "car" else col(kind)
            cv.rect(cx - w / 2, y - h, cx + w / 2, y, kind, color)
            cv.rect(cx - w * 0.35, y - h * (1.35 if kind == "car" else 1.0), cx + w * 0.35, y - h, kind,
                    color * (0.8 if kind == "car" else 1.0))
            cv.rect(cx - w * 0.3, y - h * 1.25, cx + w * 0.3, y - h * 1.05, kind, np.array([60, 70, 90.0]))
            cv.rect(cx - w / 2, y - h * 0.2, cx - w * 0.3, y, kind, np.array([20, 20, 20.0]))
            cv.rect(cx + w * 0.3, y - h * 0.2, cx + w / 2, y, kind, np.array([20, 20, 20.0]))
        elif kind == "person":
            sgn = rng.choice([-1, 1])
            cx = vx + sgn * t * (road_half + rng.uniform(0.1, 0.9) * walk)
            h = s * H * 0.35
            shirt = _jitter(rng, (50, 50, 60) if cam else GAME_PAINT[rng.integers(len(GAME_PAINT))], 20)
            cv.ellipse(cx, y - h * 0.55, h * 0.12, h * 0.3, "person", shirt)
            cv.ellipse(cx, y - h * 0.92, h * 0.08, h * 0.08, "person", _jitter(rng, (200, 160, 130), 15))
            cv.rect(cx - h * 0.08, y - h * 0.3, cx + h * 0.08, y, "person", shirt * 0.6)
        elif kind == "rider":
            cx = vx + rng.choice([-1, 1]) * t * road_half * 0.85
            h = s * H * 0.35
            bike = "bicycle" if rng.random() < 0.6 else "motorcycle"
            cv.ellipse(cx - h * 0.25, y - h * 0.15, h * 0.15, h * 0.15, bike, col(bike))
            cv.ellipse(cx + h * 0.25, y - h * 0.15, h * 0.15, h * 0.15, bike, col(bike))
            cv.rect(cx - h * 0.25, y - h * 0.35, cx + h * 0.25, y - h * 0.2, bike, col(bike))
            cv.ellipse(cx, y - h * 0.65, h * 0.11, h * 0.25, "rider",
                       _jitter(rng, (60, 60, 70) if cam else (250, 120, 0), 20))
            cv.ellipse(cx, y - h * 0.95, h * 0.08, h * 0.08, "rider", _jitter(rng, (200, 160, 130), 15))
        else:  # pole with a sign or a light
            sgn = rng.choice([-1, 1])
            cx = vx + sgn * t * (road_half + walk * 0.3)
            h = s * H * 0.6
            pw = max(1.0, s * 2.2)
            cv.rect(cx - pw / 2, y - h, cx + pw / 2, y, "pole", col("pole"))
            if rng.random() < 0.5:
                r = max(1.5, s * 5)
                cv.ellipse(cx, y - h - r * 0.6, r, r, "traffic sign", col("traffic sign", 10))
            else:
                lw, lh = max(1.5, s * 3.5), max(3, s * 9)
                cv.rect(cx - lw, y - h - lh, cx + lw, y - h, "traffic light", col("traffic light"))
                lamp = (cv.xx - cx) ** 2 + (cv.yy - (y - h - lh * rng.choice([0.25, 0.75]))) ** 2 <= (lw * 0.6) ** 2
                cv.color[lamp & (cv.label == ID["traffic light"])] = (230, 40, 30) if rng.random() < 0.5 else (40, 220, 60)

    # ego vehicle bonnet (Cityscapes) or a small unlabeled patch (GTA5)
    if cam and rng.random() < 0.8:
        bonnet = cv.yy > H - (H * 0.07 + 6 * np.cos((cv.xx / W - 0.5) * np.pi) ** 2)
        cv.paint(bonnet, "ego vehicle", (30, 30, 35))
    elif not cam and not syn and rng.random() < 0.3:
        x0 = rng.uniform(0, W - 20)
        cv.rect(x0, H - 6, x0 + 20, H, "unlabeled", col("unlabeled"))

    return cv.label, _appearance(rng, cv.color, domain)


def _appearance(rng: np.random.Generator, color: np.ndarray, domain: str) -> np.ndarray:
    H, W, _ = color.shape
    img = color.copy()
    if domain == "cityscapes":
        # texture: low-frequency blotches plus sensor noise
        coarse = rng.normal(0, 14, (H // 8 + 2, W // 8 + 2)).astype(np.float32)
        coarse = np.asarray(Image.fromarray(coarse, mode="F").resize((W, H), Image.BILINEAR))[..., None]
        img += coarse + rng.normal(0, 9, (H, W, 1)) + rng.normal(0, 4, (H, W, 3))
        # lower contrast, exposure and white balance per image, vignetting
        img = (img - 128) * rng.uniform(0.65, 0.85) + 128 * rng.uniform(0.8, 1.05)
        img *= rng.uniform(0.88, 1.1, 3)
        yy, xx = np.mgrid[0:H, 0:W]
        r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
        img *= (1 - 0.25 * r2)[..., None]
        out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
        return np.asarray(out)
    if domain == "synthia":
        # rendered look: coloured light per image, a lighting gradient across the frame, soft shading noise
        yy, xx = np.mgrid[0:H, 0:W]
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * (xx / W - 0.5) + np.sin(angle) * (yy / H - 0.5))[..., None]
        img = img * rng.uniform(0.6, 1.15) * rng.uniform(0.8, 1.15, 3) * (1 + 0.5 * ramp)
        coarse = rng.normal(0, 8, (H // 16 + 2, W // 16 + 2)).astype(np.float32)
        img += np.asarray(Image.fromarray(coarse, mode="F").resize((W, H), Image.BICUBIC))[..., None]
        img += rng.normal(0, 2.5, (H, W, 3))
        return np.clip(img, 0, 255).astype(np.uint8)
    # game look: flat colours, slight global brightness change only
    img *= rng.uniform(0.95, 1.1)
    return np.clip(img, 0, 255).astype(np.uint8)
