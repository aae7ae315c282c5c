"""Backbones and their initialisation: `pretrained` = "imagenet" | "none" | "standin[:k=v,...]" | a path.

    resnet(depth, pretrained)             a torchvision ResNet-18 … 152 (the DeepLab-v2 family, MML, U-Net)
    mit(backbone, pretrained, drop_path)  a MiT-B0 … B5 encoder (the DAFormer family)

"imagenet": the ImageNet-1k weights (ResNet: torchvision's weights API, its cache
$TORCH_HOME/hub/checkpoints; MiT: the SegFormer release file $UDALAB_WEIGHTS/mit_bX.pth or the
Hugging Face cache of nvidia/mit-bX); a path: that file; "none": random init, said in the log;
"standin": the ImageNet stand-in (methods/nets/standin.py: the backbone pretrained on procedural
textures, built once and cached as an artifact).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from udalab.methods.nets import standin
from udalab.methods.nets.mit import MiT, convert_mit_state

log = logging.getLogger("udalab")


def resnet(depth: int, pretrained: str) -> nn.Module:
    """torchvision ResNet-`depth`; `pretrained` = 'imagenet', 'none', 'standin[:k=v,...]' (methods/nets/standin.py)
    or a path to a state dict."""
    builders = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
                50: torchvision.models.resnet50, 101: torchvision.models.resnet101,
                152: torchvision.models.resnet152}
    if depth not in builders:
        raise ValueError(f"ResNet depth {depth} is not available; choose one of {sorted(builders)}")
    net = builders[depth](weights=None)
    if pretrained == "none":
        log.info("backbone ResNet-%d: random initialisation (pretrained='none')", depth)
    elif pretrained == "imagenet":
        weights = torchvision.models.get_model_weights(f"resnet{depth}").DEFAULT
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # offline and not in the cache
            log.warning("backbone ResNet-%d: ImageNet weights %s are not available (%s); "
                        "RANDOM INITIALISATION. Put %s in $TORCH_HOME/hub/checkpoints or pass "
                        "pretrained=<path>.", depth, weights, type(e).__name__, Path(weights.url).name)
        else:
            net.load_state_dict(state)
            log.info("backbone ResNet-%d: ImageNet weights %s", depth, weights)
    elif pretrained.partition(":")[0] == "standin":
        standin.load_standin(net, f"resnet{depth}", pretrained)
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights {path} do not exist; pass 'imagenet', 'none' or a .pth file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        log.info("backbone ResNet-%d: weights from %s (missing %d, unexpected %d keys)",
                 depth, path, len(missing), len(unexpected))
    return net


def _find_imagenet_checkpoint(variant: str) -> Path | None:
    root = os.environ.get("UDALAB_WEIGHTS")
    if root and (Path(root) / f"mit_{variant}.pth").is_file():
        return Path(root) / f"mit_{variant}.pth"
    try:  # the Hugging Face cache, offline
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(f"nvidia/mit-{variant}", filename)
        if isinstance(hit, str):
            return Path(hit)
    return None


def load_mit(encoder: MiT, pretrained: str) -> bool:
    """Load ImageNet weights into `encoder`: 'imagenet' (found offline, else random init with a
    warning, as the DeepLab backbones do), a checkpoint path (must exist), 'none', or
    'standin[:k=v,...]' (the ImageNet stand-in, methods/nets/standin.py)."""
    variant = encoder.variant.upper()
    if pretrained == "none":
        log.info("MiT-%s: random initialisation (pretrained='none')", variant)
        return False
    if pretrained.partition(":")[0] == "standin":
        standin.load_standin(encoder, f"mit_{encoder.variant}", pretrained)
        return True
    if pretrained == "imagenet":
        path = _find_imagenet_checkpoint(encoder.variant)
        if path is None:
            log.warning("MiT-%s: ImageNet weights not found; RANDOM INITIALISATION. Put the SegFormer release "
                        "file mit_%s.pth in $UDALAB_WEIGHTS, or have nvidia/mit-%s in the Hugging Face cache, "
                        "or pass pretrained=<path>.", variant, encoder.variant, encoder.variant)
            return False
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights {path} do not exist; pass 'imagenet', 'none' or the path "
                                    f"of a MiT-{variant} checkpoint (mit_{encoder.variant}.pth or a Hugging Face "
                                    f"model.safetensors)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        raw = load_file(str(path))
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    state = convert_mit_state(raw)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path} does not hold MiT-{encoder.variant.upper()} weights: missing {missing[:5]} …")
    log.info("MiT-%s: ImageNet weights from %s", encoder.variant.upper(), path)
    return True


def mit(backbone: str, pretrained: str, drop_path_rate: float = 0.1) -> MiT:
    """A MiT encoder ("mit_b0" … "mit_b5"), initialised as `pretrained` says."""
    if not backbone.startswith("mit_"):
        raise ValueError(f"backbone must be mit_b0 … mit_b5, got {backbone!r}")
    encoder = MiT(backbone.removeprefix("mit_"), drop_path_rate=drop_path_rate)
    load_mit(encoder, pretrained)
    return encoder
