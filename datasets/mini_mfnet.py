"""mini-MFNet: paired RGB + thermal street scenes in MFNet's layout (4-channel PNGs).

One scene is rendered once with a label, a colour and a temperature per pixel, so RGB and
thermal show exactly the same scene. The gaps the MFNet methods adapt across:

* RGB vs thermal: thermal is a temperature image, not a colour image: persons and the
  engines/wheels of cars warm, sky cold, the road warm by day; smooth (blurred, halos round
  hot objects, little texture, low noise, fixed-pattern column stripes), automatic gain
  control stretching each scene's temperature range. RGB is a camera image (texture,
  exposure, white balance, vignetting, lens blur, sensor noise; mini_street.camera).
* day vs night: night RGB is dark (x0.12-0.3), noisy (high gain), blurrier, lit by street
  lamps and head/tail lights; night thermal has another temperature distribution (cold sky
  and road, persons and engines standing out much more, cooled car bodies and bicycles),
  which the gain control stretches into higher contrast.

Names are 5 digits + D/N as MFNet's (half day, half night, interleaved); splits in
train.txt / val.txt / test.txt. Classes 0..8: unlabeled, car, person, bike, curve (the
curb), car_stop, guardrail, color_cone, bump.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from udalab.datasets.mini_street import blur, camera, noise_field

UNLABELED, CAR, PERSON, BIKE, CURVE, CAR_STOP, GUARDRAIL, CONE, BUMP = range(9)

# temperature (0 cold .. 1 hot) of scene parts by day and by night; the small classes differ from the ground
# they stand on by about 0.1 or more (plastic cones, metal rails and bicycle frames cold, concrete car stops
# sun-warmed by day and keeping their heat at night), so that thermal alone shows them
TEMP = {
    "day": {"sky": 0.12, "building": 0.48, "tree": 0.40, "road": 0.62, "sidewalk": 0.56, "curb": 0.44,
            "body": 0.52, "engine": 0.80, "person": 0.78, "bike": 0.36, "cone": 0.30, "bump": 0.74,
            "rail": 0.36, "stop": 0.70, "lamp": 0.55},
    "night": {"sky": 0.02, "building": 0.34, "tree": 0.22, "road": 0.28, "sidewalk": 0.25, "curb": 0.40,
              "body": 0.36, "engine": 0.92, "person": 0.88, "bike": 0.14, "cone": 0.10, "bump": 0.19,
              "rail": 0.12, "stop": 0.45, "lamp": 0.75},
}


class _Scene:
    def __init__(self, W, H, night: bool):
        self.W, self.H = W, H
        self.t = TEMP["night" if night else "day"]
        self.label = np.zeros((H, W), np.uint8)
        self.rgb = np.zeros((H, W, 3), np.float32)
        self.temp = np.zeros((H, W), np.float32)
        self.yy, self.xx = np.mgrid[0:H, 0:W]

    def paint(self, mask, label, rgb, temp_key, dtemp=0.0):
        self.label[mask] = label
        self.rgb[mask] = rgb
        self.temp[mask] = self.t[temp_key] + dtemp

    def rect(self, x0, y0, x1, y1, *a, **k):
        m = (self.xx >= x0) & (self.xx < x1) & (self.yy >= y0) & (self.yy < y1)
        self.paint(m, *a, **k)
        return m

    def ellipse(self, cx, cy, rx, ry, *a, **k):
        m = ((self.xx - cx) / max(rx, 0.5)) ** 2 + ((self.yy - cy) / max(ry, 0.5)) ** 2 <= 1
        self.paint(m, *a, **k)
        return m


def _c(rng, rgb, amount=10.0):
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 255)


def render(rng: np.random.Generator, W: int, H: int, night: bool):
    """(label uint8 [H,W], rgb uint8 [H,W,3], thermal uint8 [H,W]) of one scene."""
    sc = _Scene(W, H, night)
    road = _Road(horizon=H * rng.uniform(0.38, 0.5), vx=W * rng.uniform(0.4, 0.6), half=W * rng.uniform(0.5, 0.75))
    _background(rng, sc, road)
    _ground(rng, sc, road)
    objects = [("car", rng.uniform(0.1, 1.0)) for _ in range(rng.integers(1, 5))]
    objects += [("person", rng.uniform(0.15, 1.0)) for _ in range(rng.integers(0, 4))]
    objects += [("bike", rng.uniform(0.2, 1.0)) for _ in range(rng.integers(1, 3))]
    objects += [("cone", rng.uniform(0.3, 1.0)) for _ in range(rng.integers(1, 4) if rng.random() < 0.6 else 0)]
    objects += [("stop", rng.uniform(0.3, 1.0)) for _ in range(rng.integers(1, 4) if rng.random() < 0.6 else 0)]
    objects.sort(key=lambda o: o[1])
    lights = []  # head and tail lights (x, y, radius), lit at night
    for kind, t in objects:
        DRAW[kind](rng, sc, road, t, lights)
    lamps = [(W * rng.uniform(0, 1), road.horizon - H * rng.uniform(0.05, 0.25)) for _ in range(rng.integers(1, 4))]
    return sc.label, _rgb(rng, sc, night, lights, lamps), _thermal(rng, sc)


class _Road:
    """The road's perspective: horizon row, vanishing column, half width at the bottom row (px)."""

    def __init__(self, horizon: float, vx: float, half: float):
        self.horizon, self.vx, self.half = horizon, vx, half

    def row(self, sc: _Scene, t: float) -> float:
        """The image row at relative depth t (0: the horizon, 1: the bottom row)."""
        return self.horizon + t * (sc.H - self.horizon)


def _background(rng, sc: _Scene, road: _Road) -> None:
    """Sky, and buildings and trees along the horizon."""
    ground = sc.yy >= road.horizon
    sc.paint(~ground, UNLABELED, _c(rng, (140, 175, 215)), "sky")
    x = 0.0
    while x < sc.W:
        w = rng.uniform(8, 30)
        top = road.horizon - rng.uniform(0.08, 0.35) * sc.H
        if rng.random() < 0.3:
            sc.ellipse(x + w / 2, top + 0.1 * sc.H, w * 0.6, 0.12 * sc.H, UNLABELED, _c(rng, (50, 100, 45)), "tree",
                       dtemp=rng.normal(0, 0.03))
        else:
            sc.rect(x, top, x + w, road.horizon + 1, UNLABELED, _c(rng, (150, 140, 130), 25), "building",
                    dtemp=rng.normal(0, 0.04))
        x += w


def _ground(rng, sc: _Scene, road: _Road) -> None:
    """Sidewalk, road, the curbs ("curve") along both road edges, a speed bump, a guardrail."""
    H = sc.H
    d = np.clip((sc.yy - road.horizon) / (H - road.horizon), 0, 1)
    ground = sc.yy >= road.horizon
    left, right = road.vx - d * road.half, road.vx + d * road.half
    sc.paint(ground, UNLABELED, _c(rng, (160, 155, 150)), "sidewalk")
    sc.paint(ground & (sc.xx >= left) & (sc.xx <= right), UNLABELED, _c(rng, (90, 90, 95)), "road")
    for edge in (left, right):  # a curb: a band along the road edge, widening with nearness
        band = ground & (np.abs(sc.xx - edge) <= 1.0 + d * 5.0) & (d > 0.05)
        sc.paint(band, CURVE, _c(rng, (200, 195, 185)), "curb")
    if rng.random() < 0.35:  # a speed bump across the road, striped
        t = rng.uniform(0.35, 0.9)
        y = road.row(sc, t)
        m = ground & (np.abs(sc.yy - y) <= 1.5 + t * 4.0) & (np.abs(sc.xx - road.vx) < t * road.half)
        sc.paint(m, BUMP, (220, 200, 40), "bump")
        sc.rgb[m & ((sc.xx // 4) % 2 == 0)] = (30, 30, 30)
    if rng.random() < 0.4:  # a guardrail along one side
        sgn = rng.choice([-1, 1])
        rail_y = road.horizon + np.abs(sc.xx - road.vx) / (road.half * 1.15) * (H - road.horizon)
        near = np.clip((rail_y - road.horizon) / (H - road.horizon), 0, 1)
        m = ground & (d > 0.05) & (sc.yy <= rail_y) & (sc.yy >= rail_y - 2 - 0.08 * H * near)
        sc.paint(m & ((sc.xx - road.vx) * sgn > 0), GUARDRAIL, _c(rng, (170, 170, 175)), "rail")


def _car(rng, sc: _Scene, road: _Road, t: float, lights: list) -> None:
    """A car from behind: body, cabin, rear window, warm wheels and exhaust, tail lights."""
    y, s = road.row(sc, t), 0.15 + t
    cx = road.vx + rng.uniform(-0.7, 0.7) * t * road.half
    w, h = s * sc.W * 0.2, s * sc.W * 0.2 * 0.55
    paint = _c(rng, [(200, 30, 30), (30, 60, 160), (220, 220, 220), (30, 30, 30), (120, 120, 125)][rng.integers(5)])
    sc.rect(cx - w / 2, y - h, cx + w / 2, y, CAR, paint, "body", dtemp=rng.normal(0, 0.03))
    sc.rect(cx - w * 0.35, y - h * 1.4, cx + w * 0.35, y - h, CAR, paint * 0.85, "body")
    sc.rect(cx - w * 0.3, y - h * 1.3, cx + w * 0.3, y - h * 1.05, CAR, (60, 70, 90), "body", dtemp=-0.05)
    sc.rect(cx - w / 2, y - h * 0.25, cx - w * 0.3, y, CAR, (20, 20, 20), "engine")  # wheels, warm
    sc.rect(cx + w * 0.3, y - h * 0.25, cx + w / 2, y, CAR, (20, 20, 20), "engine")
    sc.rect(cx - w * 0.25, y - h * 0.5, cx + w * 0.25, y - h * 0.3, CAR, paint * 0.9, "engine", dtemp=-0.08)
    lights += [(cx - w * 0.4, y - h * 0.55, max(1.0, w * 0.08)), (cx + w * 0.4, y - h * 0.55, max(1.0, w * 0.08))]


def _person(rng, sc: _Scene, road: _Road, t: float, lights: list) -> None:
    """A pedestrian beside the road: body, head, legs."""
    y, s = road.row(sc, t), 0.15 + t
    cx = road.vx + rng.choice([-1, 1]) * t * road.half * rng.uniform(0.8, 1.4)
    h = s * sc.H * 0.4
    shirt = _c(rng, [(200, 40, 40), (40, 40, 60), (230, 230, 230), (60, 120, 60)][rng.integers(4)], 20)
    sc.ellipse(cx, y - h * 0.55, h * 0.13, h * 0.3, PERSON, shirt, "person", dtemp=rng.normal(0, 0.03))
    sc.ellipse(cx, y - h * 0.92, h * 0.08, h * 0.08, PERSON, _c(rng, (200, 160, 130)), "person", dtemp=0.05)
    sc.rect(cx - h * 0.09, y - h * 0.3, cx + h * 0.09, y, PERSON, shirt * 0.5, "person", dtemp=-0.06)


def _bike(rng, sc: _Scene, road: _Road, t: float, lights: list) -> None:
    """A bicycle from the side (two rings and a bar), most with a rider (a person)."""
    y, s = road.row(sc, t), 0.15 + t
    cx = road.vx + rng.choice([-1, 1]) * t * road.half * rng.uniform(0.6, 1.1)
    h = s * sc.H * 0.4
    frame = _c(rng, (40, 40, 45), 15)
    for dx in (-0.28, 0.28):
        ring = (((sc.xx - cx - dx * h) / (h * 0.18)) ** 2 + ((sc.yy - y + h * 0.18) / (h * 0.18)) ** 2)
        sc.paint((ring <= 1) & (ring >= 0.2), BIKE, frame, "bike")
    sc.rect(cx - h * 0.28, y - h * 0.42, cx + h * 0.28, y - h * 0.28, BIKE, frame, "bike")
    if rng.random() < 0.7:
        sc.ellipse(cx, y - h * 0.68, h * 0.11, h * 0.24, PERSON, _c(rng, (60, 60, 70), 20), "person")
        sc.ellipse(cx, y - h * 0.97, h * 0.08, h * 0.08, PERSON, _c(rng, (200, 160, 130)), "person", dtemp=0.05)


def _cone(rng, sc: _Scene, road: _Road, t: float, lights: list) -> None:
    """A traffic cone ("color_cone") on the road: orange, a white band."""
    y, s = road.row(sc, t), 0.15 + t
    cx = road.vx + rng.uniform(-0.9, 0.9) * t * road.half
    h = max(5.0, s * sc.H * 0.16)
    m = (sc.yy <= y) & (sc.yy >= y - h) & (np.abs(sc.xx - cx) <= (sc.yy - (y - h)) * 0.35 + 0.5)
    sc.paint(m, CONE, (240, 110, 20), "cone")
    sc.rgb[m & (np.abs(sc.yy - (y - h * 0.5)) < max(0.6, h * 0.1))] = (240, 240, 240)


def _car_stop(rng, sc: _Scene, road: _Road, t: float, lights: list) -> None:
    """A car stop: a low concrete block beside the road."""
    y, s = road.row(sc, t), 0.15 + t
    cx = road.vx + rng.choice([-1, 1]) * t * road.half * rng.uniform(1.05, 1.3)
    w, h = s * sc.W * 0.14, max(4.0, s * sc.H * 0.1)
    sc.rect(cx - w / 2, y - h, cx + w / 2, y, CAR_STOP, _c(rng, (190, 185, 120)), "stop")


DRAW = {"car": _car, "person": _person, "bike": _bike, "cone": _cone, "stop": _car_stop}


def _rgb(rng, sc: _Scene, night: bool, lights, lamps) -> np.ndarray:
    """The RGB camera: surface texture, then by day exposure, white balance, vignetting, a little blur and low
    noise; by night a dark frame (x0.12-0.3, sodium cast) lit by lamps and head/tail lights, blurrier, with
    high-gain noise."""
    H, W = sc.H, sc.W
    img = sc.rgb * (1 + 0.05 * noise_field(rng, H, W, 8) + 0.03 * noise_field(rng, H, W, 1))[..., None]
    if not night:
        return camera(rng, img, gain=(0.85, 1.15), gamma=(0.9, 1.1), white=0.05, vignette=0.15, sigma=(0.3, 0.7),
                      noise=(2.0, 4.0), shot=0.2)
    img *= rng.uniform(0.12, 0.3) * np.array([1.05, 0.95, 0.8], np.float32)  # sodium light cast
    glow = np.zeros((H, W), np.float32)
    for x, y in lamps:
        glow += 120 * np.exp(-((sc.xx - x) ** 2 + (sc.yy - y) ** 2) / (2 * (0.06 * W) ** 2))
    for x, y, r in lights:
        glow += 230 * np.exp(-((sc.xx - x) ** 2 + (sc.yy - y) ** 2) / (2 * (r * 1.5) ** 2))
    img += glow[..., None] * np.array([1.0, 0.9, 0.7], np.float32)
    return camera(rng, img, sigma=(0.5, 1.0), noise=(7.0, 11.0), shot=0.3)


def _thermal(rng, sc: _Scene) -> np.ndarray:
    """A microbolometer: temperature (plus faint material texture), optics blur (halos round hot objects),
    automatic gain control stretching the scene's range (so night scenes, colder and narrower, get more
    contrast between warm bodies and background), fixed-pattern column noise, low temporal noise."""
    H, W = sc.H, sc.W
    t = sc.temp + 0.012 * noise_field(rng, H, W, 6) + rng.normal(0, 0.01, (H, W))
    t = blur(t.astype(np.float32), 1.2)
    lo, hi = np.percentile(t, (0.5, 99.5))
    span = max(hi - lo, 0.3)  # AGC, clamped so a flat scene is not blown up
    gain, offset = rng.uniform(0.8, 0.95), rng.uniform(-0.04, 0.04)
    img = ((t - lo) / span * gain + 0.04 + offset + 0.04 * (sc.yy / H - 0.5)) * 255
    img = img + rng.normal(0, 1.2, (1, W)) + rng.normal(0, 1.5, (H, W))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_mfnet(out: Path, size, counts: dict, seed: int, version: int, name_hash: int) -> None:
    W, H = size
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    order = ["train", "val", "test"]
    k = 0
    for split in order:
        n = counts.get(split, 0)
        if split not in counts:
            continue
        names = []
        for i in range(n):
            k += 1
            night = i % 2 == 1
            name = f"{k:05d}{'N' if night else 'D'}"
            rng = np.random.default_rng(np.random.SeedSequence([seed, version, name_hash, order.index(split), i]))
            label, rgb, thermal = render(rng, W, H, night)
            Image.fromarray(np.dstack([rgb, thermal]), mode="RGBA").save(out / "images" / f"{name}.png")
            Image.fromarray(label, mode="L").save(out / "labels" / f"{name}.png")
            names.append(name)
        (out / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
