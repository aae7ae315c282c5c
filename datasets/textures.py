"""Procedural textures and shapes: a generic image-classification set for the ImageNet stand-in.

The papers start every method from ImageNet features; none can be downloaded here, so
`udalab.methods.nets.standin` pretrains the backbones on this set instead. It holds neither
domain's training images and no labels of any segmentation set: each image shows one of
16 procedural pattern classes (stripes at four angles, checkerboards, dot grids, scattered
dots, smooth and fine noise spectra, gradients, rings, blobs, polygons, bricks, waves,
circle outlines), drawn with two random colours at a random scale and phase, over which a
second pattern of another class is blended at low opacity (`overlay`), under a random
illumination ramp and sensor noise. The label is the class of the main pattern.

Images are generated on the fly, deterministically: sample `i` of a set with seed `s`
depends only on (s, i, size, num_classes, overlay, grid), through its own numpy Generator. Sample
`i` has class `i % num_classes`, so every run of `num_classes` consecutive indices holds each
class once (class-balanced batches when the batch is a multiple of it).

    ds = TextureDataset(length=10_000, size=64, seed=0)
    ds[i] -> {"image": float32 [3, size, size] ImageNet-normalised, "label": int64 scalar, "name": str}

`grid=g` makes each image a g x g mosaic of independent textures with an int64 [g, g] label.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

VERSION = 1  # of the generator: bump on any change that alters the images (stand-in artifacts key on it)


def _soft(wave: np.ndarray, sharpness: float) -> np.ndarray:
    """A wave in [-1, 1] (or any signed field) -> [0, 1], from smooth (sharpness ~1) to a hard edge."""
    return 0.5 + 0.5 * np.tanh(sharpness * wave)


def _rotated(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, -x * s + y * c


def _freq(rng: np.random.Generator, lo: float = 2.5, hi: float = 12.0) -> float:
    """Cycles per image, log-uniform: the scale of the pattern."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _stripes(angle_deg: float):
    def draw(x, y, rng):
        u, _ = _rotated(x, y, np.deg2rad(angle_deg + rng.uniform(-12, 12)))
        return _soft(np.sin(2 * np.pi * _freq(rng) * u + rng.uniform(0, 2 * np.pi)), rng.uniform(1, 8))
    return draw


def _checker(x, y, rng):
    u, v = _rotated(x, y, rng.uniform(0, np.pi / 2))
    f, ph = _freq(rng, 2, 8), rng.uniform(0, 2 * np.pi, 2)
    return _soft(np.sin(2 * np.pi * f * u + ph[0]) * np.sin(2 * np.pi * f * v + ph[1]), rng.uniform(2, 10))


def _dot_grid(x, y, rng):
    u, v = _rotated(x, y, rng.uniform(0, np.pi / 2))
    f = _freq(rng, 3, 10)
    du = (u * f + rng.uniform()) % 1.0 - 0.5
    dv = (v * f + rng.uniform()) % 1.0 - 0.5
    r = rng.uniform(0.15, 0.35)
    return _soft(r - np.sqrt(du ** 2 + dv ** 2), 40.0)


def _discs(x, y, centres, radii, sharp=60.0):
    d = np.sqrt((x[None] - centres[:, 0, None, None]) ** 2 + (y[None] - centres[:, 1, None, None]) ** 2)
    return _soft((radii[:, None, None] - d).max(0), sharp)


def _scattered_dots(x, y, rng):
    n = int(rng.integers(12, 40))
    return _discs(x, y, rng.uniform(-0.55, 0.55, (n, 2)), rng.uniform(0.02, 0.07, n))


def _noise(beta_lo: float, beta_hi: float):
    """Gaussian noise with a 1/f^beta power spectrum, contrast-stretched to [0, 1]."""
    def draw(x, y, rng):
        n = x.shape[0]
        fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
        f = np.sqrt(fx ** 2 + fy ** 2)
        f[0, 0] = 1.0
        spec = np.fft.fft2(rng.standard_normal((n, n))) / f ** (rng.uniform(beta_lo, beta_hi) / 2)
        img = np.fft.ifft2(spec).real
        img = (img - img.mean()) / (img.std() + 1e-8)
        return _soft(img, rng.uniform(0.6, 1.5))
    return draw


def _gradient(x, y, rng):
    u, _ = _rotated(x, y, rng.uniform(0, 2 * np.pi))
    return np.clip(u + 0.5, 0, 1) ** rng.uniform(0.5, 2.0)


def _rings(x, y, rng):
    c = rng.uniform(-0.4, 0.4, 2)
    r = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2)
    return _soft(np.sin(2 * np.pi * _freq(rng, 3, 10) * r + rng.uniform(0, 2 * np.pi)), rng.uniform(2, 8))


def _blobs(x, y, rng):
    field = np.zeros_like(x)
    for _ in range(int(rng.integers(3, 7))):
        c, s = rng.uniform(-0.45, 0.45, 2), rng.uniform(0.06, 0.18, 2)
        u, v = _rotated(x - c[0], y - c[1], rng.uniform(0, np.pi))
        field += np.exp(-0.5 * ((u / s[0]) ** 2 + (v / s[1]) ** 2))
    return _soft(field - 0.5, rng.uniform(4, 20))


def _polygons(x, y, rng):
    """1-4 filled convex polygons (3-6 corners) with hard edges."""
    out = np.zeros_like(x)
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(3, 7))
        c, rad = rng.uniform(-0.3, 0.3, 2), rng.uniform(0.15, 0.4)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        px, py = c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)
        inside = np.ones(x.shape, dtype=bool)
        for j in range(k):  # counter-clockwise corners: inside is left of every edge
            ex, ey = px[(j + 1) % k] - px[j], py[(j + 1) % k] - py[j]
            inside &= ex * (y - py[j]) - ey * (x - px[j]) >= 0
        out = np.where(inside, 1.0 - out, out)  # overlaps invert: every edge stays visible
    return out


def _bricks(x, y, rng):
    """Rows of rectangles with mortar lines, alternate rows offset by half a brick (walls, windows)."""
    u, v = _rotated(x, y, np.deg2rad(rng.choice([0, 90]) + rng.uniform(-8, 8)))
    fv = _freq(rng, 3, 10)
    fu = fv / rng.uniform(1.5, 3.0)
    row = np.floor(v * fv + rng.uniform())
    du = (u * fu + 0.5 * (row % 2)) % 1.0
    dv = (v * fv) % 1.0
    w = rng.uniform(0.06, 0.18, 2)
    return ((du > w[0]) & (dv > w[1])).astype(np.float64)


def _waves(x, y, rng):
    u, v = _rotated(x, y, rng.uniform(0, np.pi))
    warp = rng.uniform(0.04, 0.12) * np.sin(2 * np.pi * rng.uniform(1, 4) * v + rng.uniform(0, 2 * np.pi))
    return _soft(np.sin(2 * np.pi * _freq(rng, 3, 9) * (u + warp)), rng.uniform(2, 8))


def _circles(x, y, rng):
    """Outlines of 3-8 circles."""
    n = int(rng.integers(3, 9))
    c, r = rng.uniform(-0.45, 0.45, (n, 2)), rng.uniform(0.06, 0.3, n)
    d = np.sqrt((x[None] - c[:, 0, None, None]) ** 2 + (y[None] - c[:, 1, None, None]) ** 2)
    return _soft((rng.uniform(0.01, 0.025) - np.abs(d - r[:, None, None])).max(0), 80.0)


CLASSES: dict[str, object] = {
    "stripes 0": _stripes(0), "stripes 45": _stripes(45), "stripes 90": _stripes(90), "stripes 135": _stripes(135),
    "checkerboard": _checker, "dot grid": _dot_grid, "scattered dots": _scattered_dots,
    "smooth noise": _noise(2.5, 3.5), "fine noise": _noise(0.0, 1.0), "gradient": _gradient, "rings": _rings,
    "blobs": _blobs, "polygons": _polygons, "bricks": _bricks, "waves": _waves, "circles": _circles,
}
CLASS_NAMES = tuple(CLASSES)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours in [0, 1] that differ by at least 0.25 on average."""
    while True:
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        if np.abs(c0 - c1).mean() >= 0.25:
            return c0, c1


def render(cls: int, size: int, rng: np.random.Generator, num_classes: int = len(CLASSES),
           overlay: float = 0.5) -> np.ndarray:
    """One image of class `cls` as float32 [size, size, 3] in [0, 1], from `rng` alone."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    draw = CLASSES[CLASS_NAMES[cls]]
    c0, c1 = _colours(rng)
    img = c0 + (c1 - c0) * draw(x, y, rng)[..., None]
    if rng.uniform() < overlay:  # a fainter pattern of another class on top
        other = (cls + int(rng.integers(1, num_classes))) % num_classes
        o0, o1 = _colours(rng)
        layer = o0 + (o1 - o0) * CLASSES[CLASS_NAMES[other]](x, y, rng)[..., None]
        a = rng.uniform(0.1, 0.35)
        img = (1 - a) * img + a * layer
    u, _ = _rotated(x, y, rng.uniform(0, 2 * np.pi))  # illumination ramp and sensor noise
    img = img * (1 + rng.uniform(0, 0.5) * u)[..., None] + rng.normal(0, rng.uniform(0, 0.05), img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


class TextureDataset(Dataset):
    """`length` procedural images of `size` x `size` px; see the module docstring.

    grid=g > 1: each image is a g x g mosaic of cells, each an independent texture of its own
    class, and the label is the [g, g] map of cell classes (a coarse dense task). The top-left
    cell has class i % num_classes, the others are drawn uniformly."""

    def __init__(self, length: int, size: int = 64, seed: int = 0, num_classes: int = len(CLASSES),
                 overlay: float = 0.5, grid: int = 1):
        if not 2 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be 2 … {len(CLASSES)}, got {num_classes}")
        if not 0.0 <= overlay <= 1.0:
            raise ValueError(f"overlay is a probability in [0, 1], got {overlay}")
        if grid < 1 or size % grid:
            raise ValueError(f"grid must be >= 1 and divide size {size}, got {grid}")
        self.length, self.size, self.seed, self.num_classes, self.overlay = length, size, seed, num_classes, overlay
        self.grid = grid
        self.class_names = CLASS_NAMES[:num_classes]
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} textures")
        g, cell = self.grid, self.size // self.grid
        rng = np.random.default_rng([self.seed, i])
        # the first cell has class i % num_classes (balanced over consecutive samples), the others are
        # drawn independently (balanced in expectation), so no cell's class follows from another's
        classes = [i % self.num_classes] + [int(c) for c in rng.integers(0, self.num_classes, g * g - 1)]
        cells = [render(c, cell, rng, self.num_classes, self.overlay) for c in classes]
        img = np.concatenate([np.concatenate(cells[r * g:(r + 1) * g], 1) for r in range(g)], 0)
        img = torch.from_numpy(img).permute(2, 0, 1)
        label = torch.tensor(classes, dtype=torch.int64)
        return {"image": (img - self._mean) / self._std, "label": label[0] if g == 1 else label.view(g, g),
                "name": f"{self.class_names[classes[0]]}-{i}" if g == 1 else f"mosaic-{i}"}
