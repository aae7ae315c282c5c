"""The street scenes of the mini GTA5, Cityscapes and SYNTHIA, and the camera model the mini
twins share (mini_mfnet.py and mini_voc.py use `camera`, `noise_field` and `blur` too).

One scene model for the three domains: a street in true perspective (a ground plane seen
from a pinhole camera: road, sidewalks, building facades with windows or open land with a
tree line, walls and fences, trees, poles with signs and lights, parked and moving cars,
trucks, buses, persons, riders on bicycles and motorcycles, a skyline, sky). Every class
draws its colours from one palette (PALETTE) in all three domains, so a class keeps
recognisably the same colours across domains, as in the real datasets (road grey, sky
blue-white, vegetation green). The domains differ the way the real ones do:

* GTA5, the game: a wide-angle camera (focal length 0.85 x width) 1.5-2.4 m high, horizon at
  44-54 % of the height; highways and suburbs: wide roads, open land with terrain on many
  images, more sky, few pedestrians, more trucks. Rendered clean: flat textures, sharp edges,
  hard sun light (lit and shaded facades, sharp cast shadows of buildings and vehicles,
  specular highlights on cars), saturated colours, no sensor noise.
* Cityscapes, the camera: a longer lens (1.1 x width, as Cityscapes' 2262 px at 2048) at
  1.2 m behind the windscreen, horizon at 36-44 %; inner-city streets: tall buildings on both
  sides, narrower roads, parked cars along the kerbs, many pedestrians and cyclists, rounder
  car shapes, the ego vehicle's bonnet. Photographed: per-class surface texture (asphalt grain,
  paving joints, leaves, facade weathering, clouds), overcast diffuse light (soft contact
  shadows only), lower saturation, per-image exposure, contrast, gamma and white balance,
  vignetting, lens blur, motion blur on some images and sensor noise.
* SYNTHIA (RAND-CITYSCAPES), random viewpoints of a rendered city: a very wide lens (0.42 x
  width, as 532.7 px at 1280) 2.5-9 m above the street looking down (horizon from above the
  frame to 30 % of the height), varied layouts (streets, crossings, plazas), crowds of
  pedestrians, no terrain or trucks (SYNTHIA's 16 classes), lane markings labelled as
  SYNTHIA's ignored "lanemarking". Rendered: soft low-resolution textures, soft shadows,
  per-image light colour and level with a gradient across the frame, slight blur, no noise.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from udalab.datasets.labels import LABELS

ID = {label.name: label.id for label in LABELS}
LANE_MARK = 250  # placeholder id of SYNTHIA's lane markings on the canvas (no Cityscapes label id)
GROUND = ("road", "sidewalk", "terrain", "vegetation")  # what cast shadows fall on
ALL = (slice(None), slice(None))  # the whole canvas, as a Canvas.paint box

# Colours per class, shared by the three domains: ((rgb, weight), ...); an instance draws one and jitters it.
PALETTE = {
    "road": (((90, 90, 95), 1),),
    "sidewalk": (((174, 172, 168), .6), ((180, 152, 142), .2), ((150, 150, 148), .2)),
    "building": (((192, 172, 142), .25), ((150, 146, 140), .25), ((165, 96, 76), .15), ((216, 211, 200), .2),
                 ((116, 106, 96), .15)),
    "wall": (((128, 136, 128), .6), ((178, 164, 116), .4)),
    "fence": (((126, 96, 66), .5), ((110, 116, 116), .5)),
    "pole": (((160, 160, 156), .6), ((48, 58, 52), .4)),
    "traffic light": (((42, 42, 40), 1),),
    "traffic sign": (((230, 186, 26), .35), ((36, 82, 182), .35), ((202, 42, 42), .3)),
    "vegetation": (((66, 114, 42), .6), ((92, 130, 52), .4)),
    "terrain": (((136, 154, 76), .6), ((150, 136, 92), .4)),
    "person": (((40, 40, 48), .25), ((70, 72, 92), .2), ((150, 42, 46), .12), ((205, 205, 205), .13),
               ((60, 90, 142), .15), ((116, 96, 76), .15)),
    "car": (((222, 222, 225), .25), ((30, 30, 34), .2), ((160, 162, 166), .2), ((100, 100, 105), .12),
            ((166, 32, 32), .1), ((40, 60, 132), .08), ((60, 96, 70), .05)),
    "truck": (((225, 225, 225), .5), ((170, 46, 36), .2), ((60, 80, 140), .3)),
    "bus": (((230, 196, 42), .4), ((225, 225, 225), .35), ((196, 50, 40), .25)),
    "bicycle": (((36, 36, 40), 1),),
    "motorcycle": (((40, 40, 44), .5), ((170, 32, 32), .3), ((52, 62, 140), .2)),
    "unlabeled": (((26, 26, 26), 1),),
}
PALETTE["rider"] = PALETTE["person"]
SKIN, TROUSERS, GLASS, TYRE, TRUNK = (205, 165, 135), (50, 52, 64), (58, 70, 86), (24, 24, 24), (92, 74, 56)
MARKING = np.array([228, 228, 222], np.float32)
# Sky: zenith / horizon colours from clear blue (t = 0) to overcast blue-white (t = 1); t per image.
SKY_CLEAR, SKY_OVERCAST = np.array([[72, 132, 222], [168, 200, 236]]), np.array([[184, 194, 210], [214, 220, 226]])

# Camera rigs: focal length / image width, height above the road (m), horizon row / image height, yaw (vanishing
# point offset / width).
CAMERAS = {
    "gta5": {"focal": 0.85, "height": (1.5, 2.4), "horizon": (0.44, 0.54), "yaw": 0.10},
    "cityscapes": {"focal": 1.10, "height": (1.15, 1.3), "horizon": (0.36, 0.44), "yaw": 0.06},
    "synthia": {"focal": 0.42, "height": (2.5, 9.0), "horizon": (-0.25, 0.30), "yaw": 0.25},
}
# Layout statistics: road half width and sidewalk width (m), P(a side is open land), building heights (m),
# object counts (ranges are integers' [lo, hi)), probabilities; layouts (SYNTHIA): street / crossing / plaza.
LAYOUTS = {
    "gta5": {"road": (4.5, 9.0), "walk": (1.5, 3.5), "open": 0.45, "storeys": (2, 6), "cars": (1, 6),
             "parked": (0, 2), "persons": (0, 3), "riders": 0.3, "verge": 0.2, "trucks": 0.35, "buses": 0.12, "poles": (1, 3),
             "bikes": (0, 2), "trees": (0, 3), "wall": 0.35, "fence": 0.35, "layouts": {"street": 1.0}},
    "cityscapes": {"road": (3.2, 6.0), "walk": (2.5, 5.0), "open": 0.1, "storeys": (4, 8), "cars": (1, 4),
                   "parked": (1, 6), "persons": (1, 8), "riders": 0.7, "verge": 0.5, "trucks": 0.15, "buses": 0.15,
                   "poles": (2, 5), "bikes": (0, 4), "trees": (1, 5), "wall": 0.5, "fence": 0.3, "layouts": {"street": 1.0}},
    "synthia": {"road": (4.0, 8.0), "walk": (3.0, 7.0), "open": 0.2, "storeys": (3, 10), "cars": (1, 6),
                "parked": (0, 4), "persons": (4, 16), "riders": 0.5, "verge": 0.2, "trucks": 0.0, "buses": 0.25, "poles": (1, 5),
                "bikes": (0, 3), "trees": (1, 5), "wall": 0.3, "fence": 0.3, "layouts": {"street": 0.5, "crossing": 0.35, "plaza": 0.15}},
}
# Thin things are drawn thicker than life, alike in every domain: widths (m) of a pole, a sign (its diameter),
# a traffic light's housing (2.4 x as high), a person's body, a rider's, a bicycle's and a motorcycle's frame
# seen from behind (real: 0.15, 0.6, 0.35, 0.5, 0.5, 0.1, 0.25). The twins are 1/8 of the real images' width and
# the DeepLab family trains at 1/16, where a real-sized pole, sign or pedestrian is 1-3 px wide, under one 8-px
# cell of an output-stride-8 network: no run learns such a class (v2: IoU 0 on every seed).
THICK = {"pole": 0.5, "traffic sign": 1.4, "traffic light": 0.9, "person": 0.9, "rider": 0.9, "bicycle": 0.8,
         "motorcycle": 0.9}
# Camera look (Cityscapes): relative amplitude of the fine (1 px), medium (3 px) and coarse (12 px) texture per class.
TEXTURE = {"road": (.04, .03, .05), "sidewalk": (.04, .03, .04), "building": (.03, .04, .06), "wall": (.04, .04, .06),
           "fence": (.04, .04, .04), "pole": (.02, .02, .03), "traffic light": (.02, .02, .03),
           "traffic sign": (.02, .02, .03), "vegetation": (.16, .13, .07), "terrain": (.10, .07, .06),
           "sky": (0, .01, .04), "person": (.04, .05, .03), "rider": (.04, .05, .03), "car": (.02, .02, .05),
           "truck": (.02, .03, .05), "bus": (.02, .03, .05), "bicycle": (.04, .04, .04), "motorcycle": (.04, .04, .04),
           "ego vehicle": (.02, .02, .03), "unlabeled": (.04, .04, .04)}


def pick(rng: np.random.Generator, name: str, jitter: float = 8.0) -> np.ndarray:
    """An instance colour of class `name` (shared by every domain)."""
    options = PALETTE[name]
    cum = np.cumsum([o[1] for o in options])
    rgb = options[min(int(np.searchsorted(cum, rng.random() * cum[-1])), len(options) - 1)][0]
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, jitter, 3), 0, 255)


# ---------------------------------------------------------------------------------------
# The camera model (shared with mini_mfnet.py and mini_voc.py).


def noise_field(rng: np.random.Generator, H: int, W: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish Gaussian noise correlated over `cell` pixels, float32 [H,W]."""
    if cell <= 1:
        return rng.standard_normal((H, W)).astype(np.float32)
    small = rng.standard_normal((int(H / cell) + 2, int(W / cell) + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((W, H), Image.BICUBIC)) * 1.6


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float [H,W] array (edges replicated)."""
    r = int(3 * sigma + 0.5)
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    p = np.pad(a, r, mode="edge")
    p = sum(w * p[:, j:j + a.shape[1]] for j, w in enumerate(k))
    return sum(w * p[j:j + a.shape[0], :] for j, w in enumerate(k))


def saturate(img: np.ndarray, factor: float) -> np.ndarray:
    grey = img.mean(axis=-1, keepdims=True)
    return grey + (img - grey) * factor


def camera(rng: np.random.Generator, img: np.ndarray, *, gain=(1.0, 1.0), contrast=(1.0, 1.0), gamma=(1.0, 1.0),
           white=0.0, vignette=0.0, sigma=(0.0, 0.0), motion=0.0, noise=(0.0, 0.0), shot=0.0) -> np.ndarray:
    """A photograph of the float RGB radiance `img` [H,W,3] (0..255): per-image exposure gain, contrast
    (about the image mean) and gamma (ranges), white balance (+-white per channel), vignetting (darkening
    at the corners), lens blur (Gaussian sigma range, px), horizontal motion blur of 2-4 px on a `motion`
    share of the images, sensor noise (luminance sigma range + 40 % chroma, plus `shot` x sqrt(level)).
    Returns uint8 [H,W,3]."""
    H, W, _ = img.shape
    img = img * (rng.uniform(*gain) * rng.uniform(1 - white, 1 + white, 3)).astype(np.float32)
    c = rng.uniform(*contrast)
    if c != 1.0:
        img = img.mean() + (img - img.mean()) * c
    if vignette:
        yy, xx = np.ogrid[0:H, 0:W]
        r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
        img *= (1 - vignette * r2).astype(np.float32)[..., None]
    out = np.clip(img, 0, 255).astype(np.uint8)
    g = rng.uniform(*gamma)
    if g != 1.0:
        out = (255.0 * (np.arange(256) / 255.0) ** g + 0.5).astype(np.uint8)[out]
    s = rng.uniform(*sigma)
    if s > 0.05:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(s)))
    if motion and rng.random() < motion:
        k = int(rng.integers(2, 5))
        p = np.pad(out.astype(np.float32), ((0, 0), (k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
        out = (sum(p[:, j:j + W] for j in range(k)) / k).astype(np.uint8)
    n = rng.uniform(*noise)
    if n > 0 or shot > 0:
        level = n + shot * np.sqrt(out.mean(-1, keepdims=True, dtype=np.float32))
        grain = rng.standard_normal((H, W, 1), np.float32) + 0.4 * rng.standard_normal((H, W, 3), np.float32)
        out = np.clip(out + level * grain, 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------
# Canvas and view.


class Canvas:
    """Label ids, colour and shading per pixel, painted back to front inside each shape's bounding box."""

    def __init__(self, W: int, H: int):
        self.W, self.H = W, H
        self.label = np.zeros((H, W), np.uint8)
        self.color = np.zeros((H, W, 3), np.float32)
        self.shade = np.ones((H, W), np.float32)
        self.yy, self.xx = np.mgrid[0:H, 0:W].astype(np.float32)

    def box(self, x0, y0, x1, y1):
        c0, c1 = max(0, int(np.floor(x0))), min(self.W, int(np.ceil(x1)) + 1)
        r0, r1 = max(0, int(np.floor(y0))), min(self.H, int(np.ceil(y1)) + 1)
        return (slice(r0, r1), slice(c0, c1)) if c1 > c0 and r1 > r0 else None

    def paint(self, box, mask, name, color, shade: float = 1.0) -> None:
        if box is None:
            return
        self.label[box][mask] = ID[name]
        self.color[box][mask] = color
        self.shade[box][mask] = shade

    def rect(self, x0, y0, x1, y1, name, color, shade=1.0, round_px=0.0):
        """Pixels with centres in [x0,x1) x [y0,y1) (at least one column / row), corners rounded by round_px."""
        if x1 - x0 < 1:
            x0, x1 = (x0 + x1) / 2 - 0.5, (x0 + x1) / 2 + 0.5
        if y1 - y0 < 1:
            y0, y1 = (y0 + y1) / 2 - 0.5, (y0 + y1) / 2 + 0.5
        b = self.box(x0, y0, x1, y1)
        if b is None:
            return None
        xx, yy = self.xx[b], self.yy[b]
        m = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        r = min(round_px, (x1 - x0) / 2, (y1 - y0) / 2)
        if r >= 1:
            dx = np.maximum(np.maximum(x0 + r - xx, xx + 1 - x1 + r), 0)
            dy = np.maximum(np.maximum(y0 + r - yy, yy + 1 - y1 + r), 0)
            m &= dx ** 2 + dy ** 2 <= r ** 2
        self.paint(b, m, name, color, shade)
        return b, m

    def ellipse(self, cx, cy, rx, ry, name, color, shade=1.0, hole=0.0):
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        b = self.box(cx - rx, cy - ry, cx + rx, cy + ry)
        if b is None:
            return None
        d = ((self.xx[b] - cx) / rx) ** 2 + ((self.yy[b] - cy) / ry) ** 2
        m = (d <= 1) & (d >= hole ** 2)
        self.paint(b, m, name, color, shade)
        return b, m

    def polygon(self, pts, name, color, shade=1.0):
        """A convex polygon (corners in order)."""
        pts = np.asarray(pts, np.float32)
        b = self.box(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
        if b is None:
            return None
        xx, yy = self.xx[b], self.yy[b]
        nxt = np.concatenate([pts[1:], pts[:1]])
        sign = 1.0 if np.sum(pts[:, 0] * nxt[:, 1] - nxt[:, 0] * pts[:, 1]) >= 0 else -1.0
        m = np.ones(xx.shape, bool)
        for (x1, y1), (x2, y2) in zip(pts.tolist(), nxt.tolist()):
            m &= ((x2 - x1) * (yy - y1) - (y2 - y1) * (xx - x1)) * sign >= -0.5
        self.paint(b, m, name, color, shade)
        return b, m


class View:
    """A pinhole camera over a flat street: ground point (X lateral, Z depth, metres) -> pixel."""

    def __init__(self, rng, W, H, rig):
        self.f = rig["focal"] * W
        self.hc = rng.uniform(*rig["height"])
        self.hor = H * rng.uniform(*rig["horizon"])
        self.vx = W * (0.5 + rng.uniform(-1, 1) * rig["yaw"])
        self.W, self.H = W, H
        self.z_near = self.f * self.hc / max(H - self.hor, 1.0)  # depth of the bottom row
        self.z_top = self.f * self.hc / -self.hor if self.hor < -0.5 else np.inf  # of the top row, looking down

    def x(self, X, Z):
        return self.vx + self.f * X / Z

    def y(self, Z, h=0.0):
        """Row of height h above the ground at depth Z."""
        return self.hor + self.f * (self.hc - h) / Z

    def depth(self, rng, far=70.0, near=None):
        """A depth log-uniform between just below the frame and `far`."""
        lo = (near or 0.75 * self.z_near)
        return float(np.exp(rng.uniform(np.log(lo), np.log(max(min(far, self.z_top), lo * 1.5)))))

    def in_frame(self, X):
        """The nearest depth at which the lateral offset X is inside the frame (and not below it)."""
        room = self.W - self.vx if X > 0 else self.vx
        return max(self.f * abs(X) / max(room, 1.0), 0.75 * self.z_near)


# ---------------------------------------------------------------------------------------
# The scene.


def render_scene(rng: np.random.Generator, W: int, H: int, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """(label ids uint8 [H,W] (SYNTHIA: with LANE_MARK), image uint8 [H,W,3]) of one street scene."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # depths are inf above the horizon
        return _render(rng, W, H, domain)


def _render(rng: np.random.Generator, W: int, H: int, domain: str) -> tuple[np.ndarray, np.ndarray]:
    lay = LAYOUTS[domain]
    cv, v = Canvas(W, H), View(rng, W, H, CAMERAS[domain])
    names = list(lay["layouts"])
    w = np.array([lay["layouts"][n] for n in names])
    layout = names[int(rng.choice(len(names), p=w / w.sum()))]
    sun = rng.choice([-1, 1])  # the sun shines from this side (GTA5, SYNTHIA)
    R, S = rng.uniform(*lay["road"]), rng.uniform(*lay["walk"])
    if layout == "plaza":
        R = 0.0
    sides = {s: ("open" if rng.random() < lay["open"] else "building") for s in (-1, 1)}
    open_ground = "vegetation" if domain == "synthia" else "terrain"
    # a crossing street (a plaza: a pedestrian area with a street across its far side)
    cross = (v.depth(rng, 40, near=1.2 * v.z_near), rng.uniform(3.5, 6.0)) if layout != "street" else None

    # sky: blue to blue-white by image, lighter towards the horizon
    t = rng.uniform(*{"gta5": (0.05, 0.7), "cityscapes": (0.1, 0.75), "synthia": (0.05, 0.75)}[domain])
    zenith, low = (1 - t) * SKY_CLEAR + t * SKY_OVERCAST + rng.normal(0, 5, (2, 3))
    a = np.clip(cv.yy / max(v.hor, 1.0), 0, 1)[..., None] ** 1.5
    cv.color[:] = zenith * (1 - a) + low * a
    cv.label[:] = ID["sky"]

    # the far end of the street: a skyline of blocks and trees
    _skyline(rng, cv, v, domain)

    # ground
    dy = np.maximum(cv.yy - v.hor, 1e-3)
    below = cv.yy - v.hor > 0.5
    gZ = np.where(below, v.f * v.hc / dy, np.inf)
    gX = np.where(below, (cv.xx - v.vx) * v.hc / dy, 0.0)
    lat = np.abs(gX)
    walk = {s: pick(rng, "sidewalk") for s in (-1, 1)}
    cv.paint(ALL, below & (gX < 0), "sidewalk", walk[-1])
    cv.paint(ALL, below & (gX >= 0), "sidewalk", walk[1])
    for s in (-1, 1):
        if sides[s] == "open":
            cv.paint(ALL, below & (gX * s > R + S), open_ground, pick(rng, open_ground, 10))
        if rng.random() < lay["verge"]:  # a grass verge between the kerb and the footway
            cv.paint(ALL, below & (gX * s > R + 0.2) & (gX * s < R + S * 0.5), open_ground, pick(rng, open_ground, 10))
    road = below & (lat <= R) if R > 0 else np.zeros_like(below)
    if cross is not None:
        road |= below & (np.abs(gZ - cross[0]) <= cross[1])
    cv.paint(ALL, road, "road", pick(rng, "road", 6))
    _markings(rng, cv, domain, road, gX, gZ, R, cross)

    # building facades or a tree line on each side, walls and fences along the sidewalks
    for s in (-1, 1):
        gaps = [(cross[0] - cross[1] - S, cross[0] + cross[1] + S)] if cross else []
        if layout == "plaza":
            gaps.append((0, 8 + 20 * rng.random()))
        if sides[s] == "building":
            _facades(rng, cv, v, s, R + S, lay, domain, sun, gaps)
        else:
            _treeline(rng, cv, v, s, R + S + rng.uniform(4, 16), domain)
        for kind in ("wall", "fence"):
            if rng.random() < lay[kind]:
                _barrier(rng, cv, v, s, R + S - 0.05 if sides[s] == "building" else R + S + 0.3, kind, gaps)
    if domain != "cityscapes" and sides[sun] == "building" and rng.random() < 0.8:  # cast shadow of the facades
        shadow = below & (gX * sun > R + S - rng.uniform(2, 9)) & np.isin(cv.label, [ID[g] for g in GROUND])
        cv.shade[shadow] *= 0.62 if domain == "gta5" else 0.78

    # objects, far to near
    objects = _objects(rng, v, lay, layout, R, S, cross)
    objects.sort(key=lambda o: -o[1])
    for kind, Z, X in objects:
        DRAW[kind](rng, cv, v, X, Z, domain, sun)

    if domain == "cityscapes" and rng.random() < 0.8:  # the ego vehicle's bonnet
        bonnet = cv.yy > H - (H * 0.07 + 6 * np.cos((cv.xx / W - 0.5) * np.pi) ** 2)
        cv.paint(ALL, bonnet, "ego vehicle", (30, 30, 35), 1.0)
    elif domain == "gta5" and rng.random() < 0.3:  # a few unlabeled pixels, as GTA5's labels have
        x0 = rng.uniform(0, W - 20)
        cv.rect(x0, H - 6, x0 + 20, H, "unlabeled", pick(rng, "unlabeled"))
    return cv.label, _look(rng, cv, domain, gX, gZ, below)


def _skyline(rng, cv: Canvas, v: View, domain: str) -> None:
    Z = rng.uniform(120, 260)
    x = -rng.uniform(0, 20)
    while x < cv.W:
        w = rng.uniform(8, 40) * v.f / 200
        if rng.random() < (0.5 if domain == "gta5" else 0.25):
            top = v.y(Z, rng.uniform(6, 14))
            cv.ellipse(x + w / 2, top + (v.y(Z) - top) / 2, w * 0.7, (v.y(Z) - top) / 2 + 1, "vegetation",
                       pick(rng, "vegetation", 10), 0.95)
        else:
            cv.rect(x, v.y(Z, rng.uniform(8, 45)), x + w, v.y(Z) + 1, "building", pick(rng, "building", 10), 0.9)
        x += w


def _markings(rng, cv: Canvas, domain: str, road, gX, gZ, R, cross) -> None:
    """Lane lines (dashed centre, solid edges) and zebra crossings, worn on camera images."""
    if R <= 0:
        return
    mark = road & (np.abs(gX) < 0.08) & (gZ % 9 < 4.5)
    if rng.random() < 0.6:
        mark |= road & (np.abs(np.abs(gX) - (R - 0.35)) < 0.07)
    if cross is not None or rng.random() < 0.3:
        zc = cross[0] - cross[1] - 1.5 if cross is not None else rng.uniform(6, 25)
        mark |= road & (np.abs(gZ - zc) < 1.5) & (gX % 1.0 < 0.5) & (np.abs(gX) < R - 0.3)
    paint = 0.85 if domain != "cityscapes" else rng.uniform(0.45, 0.7)
    cv.color[mark] += paint * (MARKING - cv.color[mark])
    if domain == "synthia":
        cv.label[mark] = LANE_MARK


def _segments(rng, lay: dict, gaps, z0: float, z1: float = 160.0):
    """Facade segments along the street: [(Z start, Z end, height m)], leaving out `gaps`."""
    out, Z = [], z0
    while Z < z1:
        length = rng.uniform(6, 22)
        if not any(a < Z + length and Z < b for a, b in gaps) and rng.random() > 0.08:
            out.append((Z, Z + length, 3.2 * rng.integers(*lay["storeys"]) + rng.uniform(0.5, 2.5)))
        Z += length
    return out


def _facade_cols(cv: Canvas, v: View, side: int, X: float):
    """Depth of the vertical plane at lateral offset side*X seen in each column (inf where it is not)."""
    u = side * (cv.xx[0] - v.vx)
    return np.where(u > 0.3, v.f * X / np.maximum(u, 0.3), np.inf)


def _facades(rng, cv: Canvas, v: View, side, X, lay, domain, sun, gaps) -> None:
    segs = _segments(rng, lay, gaps, max(0.5, v.z_near * 0.3))
    if not segs:
        return
    z0, z1, height = (np.array(c, np.float32) for c in zip(*segs))
    colors = np.stack([pick(rng, "building", 10) for _ in segs])
    offset = rng.uniform(0, 3, len(segs)).astype(np.float32)
    Zc = _facade_cols(cv, v, side, X)
    k = np.minimum(np.searchsorted(z1, Zc, side="right"), len(segs) - 1)
    cols = (Zc >= z0[k]) & (Zc < z1[k])
    top, base = v.hor - v.f * (height[k] - v.hc) / Zc, v.hor + v.f * v.hc / Zc
    m = cols & (cv.yy >= top) & (cv.yy < base)
    if not m.any():
        return
    # the facades across the street from the sun face it (lit); those on its side are in their own shade
    lit = {"gta5": (1.08, 0.72), "cityscapes": (1.0, 0.93), "synthia": (1.05, 0.85)}[domain][int(side == sun)]
    color = np.broadcast_to(colors[k], (cv.H, cv.W, 3))[m]
    h = (v.hc - (cv.yy - v.hor) * Zc / v.f)[m]  # height above the ground on the facade
    hk = np.broadcast_to(height[k], m.shape)[m]  # the height of each pixel's segment
    along = np.broadcast_to(Zc - z0[k] + offset[k], m.shape)[m]
    win = (along % 3.4 > 1.6) & (h % 3.2 > 1.0) & (h % 3.2 < 2.4) & (h > 2.8) & (h < hk - 0.8)
    color[win] = 0.35 * color[win] + 0.65 * np.asarray(GLASS, np.float32)
    shade = np.full(h.shape, lit, np.float32)
    if domain == "cityscapes":  # daylight falls off towards the street level
        shade *= 0.9 + 0.1 * np.clip(h / 12.0, 0, 1)
    cv.label[m], cv.color[m], cv.shade[m] = ID["building"], color, shade


def _treeline(rng, cv: Canvas, v: View, side, X, domain) -> None:
    Zc = _facade_cols(cv, v, side, X)[None, :]
    phase, base_h = rng.uniform(0, 6, 3), rng.uniform(5, 11)
    height = base_h + 1.5 * np.sin(Zc / 7 + phase[0]) + 1.0 * np.sin(Zc / 2.3 + phase[1])
    m = np.isfinite(Zc) & (Zc > v.z_near * 0.3) & (cv.yy >= v.hor - v.f * (height - v.hc) / Zc) & \
        (cv.yy < v.hor + v.f * v.hc / Zc)
    cv.paint(ALL, m, "vegetation", pick(rng, "vegetation", 10), 0.95)


def _barrier(rng, cv: Canvas, v: View, side, X, kind, gaps) -> None:
    z0 = v.depth(rng, 40)
    z1 = z0 + rng.uniform(5, 40)
    if any(a < z1 and z0 < b for a, b in gaps):
        return
    Zc = _facade_cols(cv, v, side, X)[None, :]
    height = rng.uniform(0.9, 2.2) if kind == "fence" else rng.uniform(1.2, 2.8)
    top = v.hor - v.f * (height - v.hc) / Zc
    m = (Zc >= z0) & (Zc < z1) & (cv.yy >= top) & (cv.yy < v.hor + v.f * v.hc / Zc)
    color = pick(rng, kind)
    cv.paint(ALL, m, kind, color)
    if kind == "fence":  # posts and slats
        cv.color[m & ((Zc * 3.0) % 1.0 < 0.35)] *= 0.65
    else:  # a light coping along the top, joints between the panels
        cv.color[m & (cv.yy < top + v.f * 0.2 / Zc)] *= 1.2
        cv.color[m & ((Zc / 2.5) % 1.0 < 0.06)] *= 0.75


def _objects(rng, v: View, lay, layout, R, S, cross) -> list[tuple[str, float, float]]:
    objs = []
    lanes = (-R / 2, R / 2) if R > 0 else (0.0,)
    for _ in range(rng.integers(*lay["cars"]) if layout != "plaza" else 0):
        objs.append(("car", v.depth(rng), lanes[rng.integers(len(lanes))] + rng.normal(0, 0.3)))
    for _ in range(rng.integers(*lay["parked"])):
        s = rng.choice([-1, 1])
        objs.append(("car", v.depth(rng, 45, 1.3 * v.z_near), s * (max(R, 2.0) - 1.1)))
    for kind in ("trucks", "buses"):
        if rng.random() < lay[kind] and layout != "plaza":
            objs.append((kind[:-1] if kind == "trucks" else "bus", v.depth(rng, 70, 1.5 * v.z_near),
                         lanes[rng.integers(len(lanes))]))
    for _ in range(rng.integers(*lay["persons"])):
        if layout == "plaza" or rng.random() < 0.15:
            X = rng.uniform(-R - S, R + S)
        else:
            X = rng.choice([-1, 1]) * (R + rng.uniform(0.3, max(S - 0.3, 0.6)))
        objs.append(("person", v.depth(rng, 45, v.in_frame(X)), X))
    n_riders = int(rng.random() < lay["riders"]) + int(rng.random() < lay["riders"] / 2)
    for _ in range(n_riders):
        X = rng.choice([-1, 1]) * max(R - 0.9, 0.5) + rng.normal(0, 0.2)
        objs.append(("rider", v.depth(rng, 45, v.in_frame(X)), X))
    for _ in range(rng.integers(*lay["poles"])):
        X = rng.choice([-1, 1]) * (R + 0.35)
        objs.append(("pole", v.depth(rng, 35, v.in_frame(X)), X))
    for _ in range(rng.integers(*lay["bikes"])):  # parked along the kerb, seen from the side
        X = rng.choice([-1, 1]) * (R + min(0.6, S / 2))
        objs.append(("bicycle" if rng.random() < 0.5 else "motorcycle", v.depth(rng, 30, v.in_frame(X)), X))
    for _ in range(rng.integers(*lay["trees"])):
        objs.append(("tree", v.depth(rng, 60), rng.choice([-1, 1]) * (R + S * rng.uniform(0.55, 0.85))))
    if cross is not None:
        objs = [o for o in objs if o[0] in ("person", "rider", "car") or abs(o[1] - cross[0]) > cross[1] + 1]
    return objs


def _vehicle(rng, cv: Canvas, v: View, X, Z, domain, sun, kind="car") -> None:
    w, hgt, L = {"car": (1.8, 1.5, 4.5), "truck": (2.5, 3.4, 8.0), "bus": (2.55, 3.1, 12.0)}[kind]
    hgt *= rng.uniform(0.92, 1.08)
    paint = pick(rng, kind, 8)
    s = v.f / Z
    cx, yb = v.x(X, Z), v.y(Z)
    rounded = {"gta5": 0.0, "cityscapes": 0.22, "synthia": 0.12}[domain]
    gloss = 1.0
    body_top = 1.0 if kind == "car" else hgt - 0.15
    if domain == "gta5":  # a hard shadow on the ground, thrown away from the sun
        off = -sun * 0.9 * s
        b = cv.box(cx - s * w / 2 + off - 1, yb - s * 0.25, cx + s * w / 2 + off + 1, yb + s * 0.15)
        if b is not None:
            m = np.isin(cv.label[b], [ID[g] for g in GROUND])
            cv.shade[b][m] *= 0.5
    else:  # soft contact shadow
        b = cv.box(cx - s * w * 0.7, yb - s * 0.3, cx + s * w * 0.7, yb + s * 0.25)
        if b is not None:
            d = ((cv.xx[b] - cx) / (s * w * 0.7)) ** 2 + ((cv.yy[b] - yb) / (s * 0.25)) ** 2
            m = np.isin(cv.label[b], [ID[g] for g in GROUND])
            cv.shade[b][m] *= (1 - 0.35 * np.clip(1 - d, 0, 1))[m]
    # the side facing the camera axis and the top (seen from above), from Z to Z + L
    Zf = Z + L
    if abs(X) > w / 2 + 0.2:
        xs = X - np.sign(X) * w / 2
        cv.polygon([(v.x(xs, Z), v.y(Z, 0.3)), (v.x(xs, Zf), v.y(Zf, 0.3)), (v.x(xs, Zf), v.y(Zf, body_top)),
                    (v.x(xs, Z), v.y(Z, body_top))], kind, paint, 0.85 * gloss)
        if kind != "car":
            za, zb = Z + 0.1 * L, Z + 0.95 * L
            cv.polygon([(v.x(xs, za), v.y(za, hgt * 0.55)), (v.x(xs, zb), v.y(zb, hgt * 0.55)),
                        (v.x(xs, zb), v.y(zb, hgt * 0.85)), (v.x(xs, za), v.y(za, hgt * 0.85))], kind, GLASS, 0.9)
        for zw in (Z + 0.75, Zf - 0.8):
            sw = v.f / zw
            cv.ellipse(v.x(xs, zw), v.y(zw, 0.33), max(0.5, sw * 0.33 * abs(xs) / (abs(xs) + 2)), sw * 0.33, kind, TYRE)
    if v.hc > body_top:
        cv.polygon([(v.x(X - w / 2, Z), v.y(Z, body_top)), (v.x(X + w / 2, Z), v.y(Z, body_top)),
                    (v.x(X + w / 2, Zf), v.y(Zf, body_top)), (v.x(X - w / 2, Zf), v.y(Zf, body_top))], kind, paint, 1.08)
    if kind == "car":  # the cabin: windows all round, the roof on top
        za, zb = Z + 0.22 * L, Z + 0.8 * L
        xa = X - np.sign(X) * w * 0.4 if abs(X) > w / 2 + 0.2 else X
        cv.polygon([(v.x(xa, za), v.y(za, 1.0)), (v.x(xa, zb), v.y(zb, 1.0)), (v.x(xa, zb - 0.4), v.y(zb - 0.4, hgt)),
                    (v.x(xa, za + 0.5), v.y(za + 0.5, hgt))], kind, GLASS, 0.9)
        if v.hc > hgt:
            cv.polygon([(v.x(X - w * 0.4, za + 0.5), v.y(za + 0.5, hgt)), (v.x(X + w * 0.4, za + 0.5), v.y(za + 0.5, hgt)),
                        (v.x(X + w * 0.4, zb - 0.4), v.y(zb - 0.4, hgt)), (v.x(X - w * 0.4, zb - 0.4), v.y(zb - 0.4, hgt))],
                       kind, paint, 1.1)
    # the face towards the camera
    cv.rect(cx - s * w / 2, yb - s * body_top, cx + s * w / 2, yb - s * 0.25, kind, paint, gloss,
            round_px=rounded * s * (body_top - 0.25))
    for sx in (-1, 1):  # wheels
        outer = cx + sx * s * w / 2
        cv.rect(min(outer, outer - sx * s * 0.3), yb - s * 0.35, max(outer, outer - sx * s * 0.3), yb, kind, TYRE)
    if kind == "car":
        top_w = 0.78 if domain == "gta5" else 0.62  # boxy cabins in the game, tapered ones on the street
        cv.polygon([(cx - s * w * 0.44, yb - s * 1.0), (cx + s * w * 0.44, yb - s * 1.0),
                    (cx + s * w * top_w / 2, yb - s * hgt), (cx - s * w * top_w / 2, yb - s * hgt)], kind, paint, gloss)
        cv.polygon([(cx - s * w * 0.38, yb - s * 1.04), (cx + s * w * 0.38, yb - s * 1.04),
                    (cx + s * w * (top_w / 2 - 0.05), yb - s * (hgt - 0.07)),
                    (cx - s * w * (top_w / 2 - 0.05), yb - s * (hgt - 0.07))], kind, GLASS)
    else:
        cv.rect(cx - s * w * 0.45, yb - s * hgt * 0.85, cx + s * w * 0.45, yb - s * hgt * 0.55, kind, GLASS)
    light = (200, 30, 30) if rng.random() < 0.7 else (235, 230, 200)
    for sx in (-1, 1):
        cv.rect(cx + sx * s * w * 0.42 - s * 0.12, yb - s * (body_top - 0.05), cx + sx * s * w * 0.42 + s * 0.12,
                yb - s * (body_top - 0.25), kind, light)
    if domain == "gta5":  # a specular band along the top of the body
        b = cv.box(cx - s * w / 2, yb - s * body_top, cx + s * w / 2, yb - s * (body_top - 0.12))
        if b is not None:
            cv.shade[b][cv.label[b] == ID[kind]] *= 1.3


def _person(rng, cv: Canvas, v: View, X, Z, domain, sun, name="person", ride=False) -> None:
    """A pedestrian (legs apart or together) or, with ride, a person sitting on a bike (legs on the pedals);
    widths are THICK's."""
    s = v.f / Z
    w = s * THICK[name]
    hp = rng.uniform(1.6, 2.0)
    cx, yb = v.x(X, Z), v.y(Z)
    top, legs = pick(rng, name, 18), np.clip(np.asarray(TROUSERS, np.float32) + rng.normal(0, 12, 3), 0, 255)
    if ride:
        cv.rect(cx - w * 0.25, yb - s * 0.95, cx + w * 0.25, yb - s * 0.3, name, legs)
    else:
        gap = w * rng.uniform(0.0, 0.25)
        cv.rect(cx - w * 0.42 - gap / 2, yb - s * 0.88, cx - gap / 2, yb, name, legs)
        cv.rect(cx + gap / 2, yb - s * 0.88, cx + w * 0.42 + gap / 2, yb, name, legs)
    t0, t1 = 0.85, hp - 0.25
    cv.ellipse(cx, yb - s * (t0 + t1) / 2, w * 0.5, s * ((t1 - t0) / 2 + 0.05), name, top)
    head = (30, 30, 34) if ride and rng.random() < 0.6 else SKIN  # a helmet
    cv.ellipse(cx, yb - s * (hp - 0.14), w * 0.22, s * 0.15, name,
               np.clip(np.asarray(head, np.float32) + rng.normal(0, 12, 3), 0, 255))


def _rider(rng, cv: Canvas, v: View, X, Z, domain, sun) -> None:
    """A person on a bicycle or motorcycle, seen from the side or from behind."""
    bike = "bicycle" if rng.random() < 0.65 else "motorcycle"
    _two_wheeler(rng, cv, v, X, Z, bike, side_view=rng.random() < 0.5)
    _person(rng, cv, v, X, Z, domain, sun, name="rider", ride=True)


def _two_wheeler(rng, cv: Canvas, v: View, X, Z, bike: str, side_view: bool) -> None:
    """A bicycle or motorcycle seen from the side (two wheels, the frame between) or from behind (one wheel,
    the frame and handlebar above it); widths are THICK's."""
    s = v.f / Z
    w = s * THICK[bike]
    color = pick(rng, bike)
    cx, yb = v.x(X, Z), v.y(Z)
    if side_view:
        r = s * (0.42 if bike == "bicycle" else 0.38)
        for dx in (-0.62, 0.62):
            cv.ellipse(cx + dx * s, yb - r, r, r, bike, color if bike == "bicycle" else TYRE,
                       hole=0.3 if bike == "bicycle" else 0.0)
        cv.rect(cx - s * 0.6, yb - r - w * 0.25, cx + s * 0.6, yb - r + w * 0.05, bike, color)
        cv.rect(cx - w * 0.1, yb - s * 1.0, cx + w * 0.1, yb - r, bike, color)
        if bike == "motorcycle":
            cv.ellipse(cx, yb - r * 1.5, s * 0.55, r * 0.7, bike, color)
    else:
        cv.rect(cx - w * 0.2, yb - s * 0.68, cx + w * 0.2, yb, bike, TYRE)
        cv.rect(cx - w * 0.5, yb - s * 1.0, cx + w * 0.5, yb - s * 0.6, bike, color)


def _pole(rng, cv: Canvas, v: View, X, Z, domain, sun) -> None:
    """A pole with a sign, a traffic light, both or neither; sizes are THICK's."""
    s = v.f / Z
    cx, yb = v.x(X, Z), v.y(Z)
    h = rng.uniform(3.5, 7.5)
    pw = s * THICK["pole"] / 2
    cv.rect(cx - pw, yb - s * h, cx + pw, yb, "pole", pick(rng, "pole"))
    kind = rng.choice(["sign", "light", "both", "bare"], p=[0.35, 0.35, 0.2, 0.1])
    if kind in ("sign", "both"):
        r = THICK["traffic sign"] / 2
        hs = rng.uniform(1.9, 2.6) + r
        color = pick(rng, "traffic sign", 10)
        if rng.random() < 0.5:
            cv.ellipse(cx, yb - s * hs, s * r, s * r, "traffic sign", color)
        else:
            cv.rect(cx - s * r, yb - s * (hs + r), cx + s * r, yb - s * (hs - r), "traffic sign", color)
    if kind in ("light", "both"):
        lw, lh = THICK["traffic light"] / 2, THICK["traffic light"] * 2.4
        y0 = yb - s * h
        cv.rect(cx - s * lw, y0 - s * lh, cx + s * lw, y0, "traffic light", pick(rng, "traffic light"))
        lamp = [(222, 40, 30), (236, 170, 30), (40, 210, 80)][rng.integers(3)]
        cv.ellipse(cx, y0 - s * lh * rng.choice([0.2, 0.5, 0.8]), s * lw * 0.6, s * lw * 0.6, "traffic light", lamp)


def _tree(rng, cv: Canvas, v: View, X, Z, domain, sun) -> None:
    s = v.f / Z
    cx, yb = v.x(X, Z), v.y(Z)
    ht, rc = rng.uniform(2.0, 3.5), rng.uniform(1.3, 2.8)
    cv.rect(cx - s * 0.14, yb - s * (ht + rc * 0.5), cx + s * 0.14, yb, "vegetation", TRUNK)
    cv.ellipse(cx, yb - s * (ht + rc * 0.8), s * rc, s * rc * 0.95, "vegetation", pick(rng, "vegetation", 10))


DRAW = {"car": _vehicle, "truck": lambda *a: _vehicle(*a, kind="truck"), "bus": lambda *a: _vehicle(*a, kind="bus"),
        "person": _person, "rider": _rider, "pole": _pole, "tree": _tree,
        "bicycle": lambda rng, cv, v, X, Z, *a: _two_wheeler(rng, cv, v, X, Z, "bicycle", side_view=True),
        "motorcycle": lambda rng, cv, v, X, Z, *a: _two_wheeler(rng, cv, v, X, Z, "motorcycle", side_view=True)}


# ---------------------------------------------------------------------------------------
# The look of each domain.


def _texture_lut() -> np.ndarray:
    lut = np.zeros((256, 3), np.float32)
    for name, amp in TEXTURE.items():
        lut[ID[name]] = amp
    lut[LANE_MARK] = TEXTURE["road"]
    return lut


TEXTURE_LUT = _texture_lut()


def _texture(rng, cv: Canvas, scale: float, fine: bool = True) -> np.ndarray:
    """Multiplicative surface texture per class (TEXTURE x scale), [H,W]."""
    H, W = cv.H, cv.W
    amp = TEXTURE_LUT[cv.label] * scale
    tex = amp[..., 1] * noise_field(rng, H, W, 3) + amp[..., 2] * noise_field(rng, H, W, 12)
    if fine:
        tex += amp[..., 0] * noise_field(rng, H, W, 1)
    return tex


def _look(rng, cv: Canvas, domain: str, gX, gZ, below) -> np.ndarray:
    img = cv.color * cv.shade[..., None]
    if domain == "gta5":  # the game: flat, saturated, sharp, no noise
        return camera(rng, saturate(img, 1.12), gain=(0.96, 1.08))
    if domain == "synthia":  # rendered: soft textures, coloured light with a gradient, slight blur
        img = img * (1 + _texture(rng, cv, 0.5, fine=False))[..., None]
        yy, xx = np.mgrid[0:cv.H, 0:cv.W]
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * (xx / cv.W - 0.5) + np.sin(angle) * (yy / cv.H - 0.5)
        img = saturate(img, 1.1) * (1 + 0.3 * ramp)[..., None]
        return camera(rng, img, gain=(0.75, 1.15), white=0.06, sigma=(0.4, 0.7), noise=(0.5, 1.0))
    # the camera: textured surfaces (paving joints on sidewalks), overcast light, optics and sensor
    img = img * (1 + _texture(rng, cv, 1.3))[..., None]
    side = cv.label == ID["sidewalk"]
    joints = side & below & (((gX * 2.5) % 1.0 < 0.12) | ((gZ * 2.5) % 1.0 < 0.12))
    img[joints] *= 0.86
    img = saturate(img, 0.95)
    return camera(rng, img, gain=(1.0, 1.35), contrast=(0.8, 1.0), gamma=(0.85, 1.2), white=0.05, vignette=0.2,
                  sigma=(0.6, 1.2), motion=0.3, noise=(2.0, 4.5), shot=0.3)
