"""Pseudo depth beside PASCAL VOC: one 16-bit PNG per image plus its scale.

    <VOC2012>/PseudoDepth/<name>.png    uint16, value = round(depth * scale)
    <VOC2012>/PseudoDepth/depth.json    {"model": ..., "kind": "relative" | "metric",
                                         "scales": {name: scale}}

Each image gets its own scale (65535 / its maximum), so relative depth from a monocular
model keeps its full 16-bit precision; a loader divides by the scale (VOC.load_depth).
`udalab data pseudo-depth --root VOCROOT --model PATH_OR_HF_ID` fills the folder from a
DINOv2-based depth model through Hugging Face transformers' depth-estimation pipeline
(e.g. depth-anything/Depth-Anything-V2-Small-hf, facebook/dpt-dinov2-small-kitti), loaded
from a local folder or the Hugging Face cache only (no download at run time).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from udalab.datasets.base import write_png16
from udalab.datasets.errors import DatasetError
from udalab.datasets.voc import DEPTH_DIR, DEPTH_META, VOC, voc_dir

Estimator = Callable[[Image.Image], np.ndarray]  # RGB image -> float depth [h, w] (any size)

WEIGHTS_HINT = ("The weights must be on this machine: pass --model a local folder holding config.json, "
                "preprocessor_config.json and model.safetensors (made on a machine with internet by e.g. "
                "`huggingface-cli download depth-anything/Depth-Anything-V2-Small-hf --local-dir DIR`) or a model id "
                "already in the Hugging Face cache (~/.cache/huggingface/hub, or $HF_HOME).")
INSTALL_HINT = f"install it with `pip install 'transformers>=4.45'` into this environment. {WEIGHTS_HINT}"


def encode_depth(depth: np.ndarray) -> tuple[np.ndarray, float]:
    """float depth [H,W] -> (uint16 PNG values, scale) with value = round(depth * scale)."""
    depth = np.nan_to_num(np.asarray(depth, np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    peak = float(depth.max(initial=0.0))
    scale = 65535.0 / peak if peak > 0 else 1.0
    return np.round(depth * scale).clip(0, 65535).astype(np.uint16), scale


class DepthWriter:
    """Writes PseudoDepth/<name>.png files and, on close(), depth.json with every scale
    (merged with the scales already recorded there)."""

    def __init__(self, voc: Path, model: str, kind: str):
        self.dir = Path(voc) / DEPTH_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / DEPTH_META
        old = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if old and (old.get("model"), old.get("kind")) != (model, kind):
            old = {}  # another model: its scales do not describe the new files
        self.meta = {"model": model, "kind": kind, "scales": dict(old.get("scales", {}))}

    def add(self, name: str, depth: np.ndarray) -> None:
        values, scale = encode_depth(depth)
        write_png16(self.dir / f"{name}.png", values)
        self.meta["scales"][name] = scale

    def close(self) -> Path:
        path = self.dir / DEPTH_META
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.meta, indent=0, sort_keys=True))
        os.replace(tmp, path)
        return path


def resize_depth(depth, height: int, width: int) -> np.ndarray:
    t = torch.as_tensor(np.asarray(depth, np.float32))
    if t.ndim == 3:
        t = t[0]
    if tuple(t.shape) != (height, width):
        t = F.interpolate(t[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return t.numpy()


def fill_pseudo_depth(root, estimator: Estimator, model: str, kind: str = "relative",
                      splits: Iterable[str] | None = None, overwrite: bool = False, progress=None) -> dict:
    """Run `estimator` on every image of the VOC splits and write the pseudo-depth folder.

    Images whose PNG and scale exist are skipped unless overwrite=True (so an interrupted
    run continues). Returns {"written": n, "skipped": n, "folder": path}.
    """
    voc = voc_dir(root)
    splits = list(splits) if splits else VOC.available_splits(root)
    names: dict[str, Path] = {}
    for split in splits:
        ds = VOC(root, split, strict=False)  # images without a label get depth too
        for img, _ in ds.files + ds.missing:
            if img.is_file():
                names.setdefault(img.stem, img)
    writer = DepthWriter(voc, model, kind)
    done = writer.meta["scales"]
    written = skipped = 0
    items = sorted(names.items())
    for name, img_path in (progress(items) if progress else items):
        if not overwrite and name in done and (writer.dir / f"{name}.png").is_file():
            skipped += 1
            continue
        try:
            with Image.open(img_path) as im:
                rgb = im.convert("RGB")
        except (OSError, ValueError, SyntaxError) as e:
            raise DatasetError(f"cannot decode image {img_path} ({e}); re-extract it from the VOC archive") from e
        depth = resize_depth(estimator(rgb), rgb.height, rgb.width)
        writer.add(name, depth)
        written += 1
        if written % 200 == 0:
            writer.close()  # scales so far, in case the run is interrupted
    writer.close()
    return {"written": written, "skipped": skipped, "folder": str(writer.dir)}


def load_estimator(model: str, device: str | None = None) -> tuple[Estimator, str]:
    """A Hugging Face depth-estimation model (DINOv2-based DPT / Depth Anything) from a local
    folder or the local cache only, as an Estimator, and the kind of depth it predicts
    ("metric" for models fine-tuned on metric depth, e.g. *-kitti / *-nyu; else "relative":
    Depth Anything predicts relative inverse depth)."""
    try:
        import transformers
    except ImportError as e:
        raise DatasetError(f"udalab data pseudo-depth needs Hugging Face transformers, which is not installed: "
                           f"{INSTALL_HINT}") from e
    local = Path(model).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise DatasetError(f"{local} holds no config.json: it is not a Hugging Face model folder. {WEIGHTS_HINT}")
    source = str(local) if local.exists() else model
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=True)
        net = transformers.AutoModelForDepthEstimation.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"cannot load the depth model {model!r} from local files: its weights are not on this "
                           f"machine ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                           f"{WEIGHTS_HINT}") from e
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = net.to(dev).eval()
    kind = "metric" if any(k in source.lower() for k in ("kitti", "nyu", "metric")) else "relative"

    @torch.no_grad()
    def estimate(image: Image.Image) -> np.ndarray:
        inputs = {k: v.to(dev) for k, v in processor(images=image, return_tensors="pt").items()}
        return net(**inputs).predicted_depth.squeeze().float().cpu().numpy()

    return estimate, kind
