"""The ImageNet stand-in: backbones pretrained on procedural textures, built once, cached as artifacts.

The papers start every method from ImageNet features; none can be downloaded here, and a
backbone from random init leaves DAFormer's teacher with almost no confident target pixels
and its ImageNet feature distance pulling towards noise. The stand-in pretrains the mini
presets' backbones (ResNet-18 of the DeepLab-v2 family, MiT-B0 of the DAFormer family) on
`udalab.datasets.textures` (16 classes of procedural textures and shapes: no image of
either domain, no segmentation label) with a linear classifier on the average-pooled
last-stage features (ResNet-18: pooled to 2 x 2 cells of a 2 x 2 texture mosaic, one class
per cell), AdamW with warm-up and cosine decay, a fixed budget of 2-3 CPU minutes at 64 px,
and saves the backbone's state dict (the classifier is dropped).

    pretrained="standin"                     # in DeepLabV2 / EncoderDecoder / a method's config
    pretrained="standin:steps=600,image_size=96"   # the same with other StandinConfig fields

The first use builds the artifact (methods/engine/artifacts.py: keyed by the config, under a
lease, atomic), later uses on the machine (or the cluster, with UDALAB_ARTIFACTS a store every
node reaches) load it. The log names the artifact's path, config hash and texture accuracy:

    $UDALAB_ARTIFACTS/standin-<hash>/backbone.pt   the backbone's state dict (torchvision / MiT names)
                                     meta.json     config, hash, accuracy vs chance, wall time, device
                                     config.json   the artifact config (StandinConfig + versions)

Build one ahead of a study (or print its path) with `python -m udalab.methods.nets.standin resnet18 mit_b0`.
Its defaults per backbone (DEFAULTS) are the settings with which a target-supervised fine-tune of the
mini preset starts better than from random init.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from udalab.datasets import textures
from udalab.methods.engine.artifacts import ArtifactError, config_hash, get_or_build
from udalab.methods.nets.mit import MiT

log = logging.getLogger("udalab")

KIND = "standin"
VERSION = 1  # of this trainer: bump on any change that alters the weights it builds
STATE_FILE, META_FILE = "backbone.pt", "meta.json"


@dataclass(frozen=True)
class StandinConfig:
    backbone: str = "resnet18"     # resnet18/34/50/101/152 (torchvision) or mit_b0 … mit_b5
    steps: int = 400               # optimiser steps
    batch_size: int = 32
    image_size: int = 64           # px, square
    num_classes: int = 16          # texture classes (datasets/textures.py)
    overlay: float = 0.5           # probability of a second, fainter pattern on top
    grid: int = 1                  # 1: classify the image; g: a g x g mosaic, each cell classified
    optimizer: str = "adamw"       # "adamw" or "sgd" (momentum, Nesterov)
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9          # sgd only
    warmup_steps: int = 20         # linear warm-up, then cosine decay to 0
    clip_grad: float = 0.0         # max gradient norm (0: no clipping)
    seed: int = 0                  # weights init and the texture stream
    eval_samples: int = 512        # held-out textures (another seed) for the reported accuracy


# Per-backbone defaults of `pretrained="standin"`.
DEFAULTS: dict[str, dict] = {
    # 2 x 2 mosaics, each cell classified: whole-image classification did not help the fine-tune
    "resnet18": {"steps": 300, "grid": 2},
    # a MiT-B0 from scratch stays at chance with lr 2e-3; it learns with 1e-3, a warm-up and clipping
    "mit_b0": {"steps": 500, "lr": 1e-3, "warmup_steps": 50, "clip_grad": 1.0},
}


def _random_resnet(depth: int) -> nn.Module:
    """A torchvision ResNet of `depth` layers at random init (the backbone the stand-in pretrains)."""
    return torchvision.models.get_model(f"resnet{depth}", weights=None)


def parse_spec(backbone: str, pretrained: str) -> StandinConfig:
    """'standin' or 'standin:key=value,...' -> the StandinConfig for `backbone`."""
    name, _, overrides = pretrained.partition(":")
    if name != KIND:
        raise ValueError(f"not a stand-in spec: {pretrained!r}")
    values = {"backbone": backbone, **DEFAULTS.get(backbone, {})}
    fields = {f.name: f for f in dataclasses.fields(StandinConfig) if f.name != "backbone"}
    for item in filter(None, (s.strip() for s in overrides.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            raise ValueError(f"pretrained={pretrained!r}: {item!r} is not <field>=<value> with a field of "
                             f"StandinConfig ({', '.join(fields)})")
        values[key] = type(fields[key].default)(value.strip())
    return StandinConfig(**values)


def artifact_config(cfg: StandinConfig) -> dict:
    """What the artifact is keyed by: every field, the texture generator's and this trainer's versions."""
    return {**dataclasses.asdict(cfg), "textures_version": textures.VERSION, "standin_version": VERSION}


class _Classifier(nn.Module):
    """Backbone + linear head on the last-stage features, average-pooled to grid x grid cells."""

    def __init__(self, backbone: str, num_classes: int, grid: int = 1):
        super().__init__()
        self.mit, self.grid = backbone.startswith("mit_"), grid
        if backbone.startswith("resnet") and backbone[6:].isdigit():
            self.backbone = _random_resnet(int(backbone[6:]))
            dim = self.backbone.fc.in_features
            del self.backbone.fc  # not pretrained: no fc.* in the saved state
        elif self.mit:
            self.backbone = MiT(backbone.removeprefix("mit_"), drop_path_rate=0.0)
            dim = self.backbone.dims[-1]
        else:
            raise ValueError(f"no stand-in for backbone {backbone!r}; use resnetN or mit_bN")
        self.head = nn.Linear(dim, num_classes)

    def last_stage(self, x: torch.Tensor) -> torch.Tensor:
        if self.mit:
            return self.backbone(x)[-1]
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes] (grid 1) or [B, classes, grid, grid]."""
        cells = F.adaptive_avg_pool2d(self.last_stage(x), self.grid).permute(0, 2, 3, 1)
        logits = self.head(cells).permute(0, 3, 1, 2)
        return logits.flatten(1) if self.grid == 1 else logits


def _batch(ds: textures.TextureDataset, start: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [ds[i] for i in range(start, min(start + n, len(ds)))]
    return (torch.stack([s["image"] for s in samples]).to(device),
            torch.stack([s["label"] for s in samples]).to(device))


@torch.no_grad()
def _accuracy(model: nn.Module, ds: textures.TextureDataset, device: torch.device, batch: int = 64) -> float:
    model.eval()
    correct = total = 0
    for start in range(0, len(ds), batch):
        x, y = _batch(ds, start, batch, device)
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    model.train()
    return 100.0 * correct / total


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR factor: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))


def pretrain(cfg: StandinConfig, out_dir: Path) -> dict:
    """Train `cfg.backbone` on textures; write backbone.pt and meta.json into out_dir; return the meta.

    Uses its own seeded RNG state: the caller's torch RNG is left as it was.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0, cpu0 = time.perf_counter(), time.process_time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = _Classifier(cfg.backbone, cfg.num_classes, cfg.grid).to(device).train()
        train = textures.TextureDataset(cfg.steps * cfg.batch_size, cfg.image_size, cfg.seed, cfg.num_classes,
                                        cfg.overlay, cfg.grid)
        held_out = textures.TextureDataset(cfg.eval_samples, cfg.image_size, cfg.seed + 1_000_003, cfg.num_classes,
                                           cfg.overlay, cfg.grid)
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                  weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"stand-in optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_cosine(s, cfg.warmup_steps, cfg.steps))
        history, tail_correct, tail_seen = [], 0, 0
        for step in range(cfg.steps):
            x, y = _batch(train, step * cfg.batch_size, cfg.batch_size, device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            sched.step()
            if step >= cfg.steps * 0.9:  # training accuracy over the last 10 % of the steps
                tail_correct += (logits.argmax(1) == y).sum().item()
                tail_seen += y.numel()
            if step % 25 == 0 or step == cfg.steps - 1:
                history.append({"step": step, "loss": round(loss.item(), 4)})
                log.info("stand-in %s: step %d/%d, loss %.3f", cfg.backbone, step + 1, cfg.steps, loss.item())
        train_seconds = time.perf_counter() - t0
        accuracy = _accuracy(model, held_out, device)
    state = {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()}
    torch.save(state, out_dir / STATE_FILE)
    meta = {"config": artifact_config(cfg), "config_hash": config_hash(artifact_config(cfg)),
            "accuracy": accuracy, "chance": 100.0 / cfg.num_classes,
            "train_accuracy": 100.0 * tail_correct / max(tail_seen, 1), "train_seconds": round(train_seconds, 1),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - cpu0, 1), "device": str(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "history": history}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def build_or_get(cfg: StandinConfig) -> Path:
    """The artifact directory of `cfg`, built first if this machine (or the shared storage) has none."""
    return get_or_build(KIND, artifact_config(cfg), lambda tmp: pretrain(cfg, tmp))


def load_standin(module: nn.Module, backbone: str, pretrained: str) -> dict:
    """Load the stand-in named by `pretrained` ('standin[:k=v,...]') into `module` (a torchvision
    ResNet, whose fc stays random, or a MiT encoder); build it first if needed. Returns its meta."""
    cfg = parse_spec(backbone, pretrained)
    directory = build_or_get(cfg)
    fix = f"delete {directory} so that the next run rebuilds it (or set UDALAB_ARTIFACTS to another folder)"
    try:
        meta = json.loads((directory / META_FILE).read_text())
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, truncated or not a state dict
        raise ArtifactError(f"stand-in artifact {directory} is unreadable ({type(e).__name__}: {e}); {fix}") from e
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]  # the ResNet's classifier is not pretrained
    if missing or unexpected:
        raise ArtifactError(f"stand-in artifact {directory / STATE_FILE} does not fit {backbone} (missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}); {fix}")
    log.info("%s: ImageNet STAND-IN %s (config %s, texture accuracy %.1f %% vs chance %.1f %%, built in %.0f s "
             "on %s)", backbone, directory, meta.get("config_hash"), meta.get("accuracy", float("nan")),
             meta.get("chance", float("nan")), meta.get("wall_seconds", float("nan")), meta.get("device"))
    return meta


def main(argv: list[str]) -> None:
    """`python -m udalab.methods.nets.standin [BACKBONE[:k=v,...] ...]`: build (or find) and print the artifacts."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in argv or ["resnet18", "mit_b0"]:
        backbone, _, overrides = arg.partition(":")
        cfg = parse_spec(backbone, f"{KIND}:{overrides}")
        directory = build_or_get(cfg)
        meta = json.loads((directory / META_FILE).read_text())
        print(f"{backbone}: {directory / STATE_FILE}  accuracy {meta['accuracy']:.1f} % (chance "
              f"{meta['chance']:.1f} %), {meta['wall_seconds']:.0f} s on {meta['device']}")


if __name__ == "__main__":
    main(sys.argv[1:])
