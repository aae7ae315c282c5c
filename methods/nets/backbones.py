"""Backbones and their initialisation: `pretrained` = "imagenet" | "none" | "standin[:k=v,...]" | a path.

    resnet(depth, pretrained)             a torchvision ResNet-18 … 152 (the DeepLab-v2 family, MML, U-Net)
    mit(backbone, pretrained, drop_path)  a MiT-B0 … B5 encoder (the DAFormer family)

"imagenet": the ImageNet-1k weights, the first file methods/nets/weights.py finds ($UDALAB_WEIGHTS,
$TORCH_HOME/hub/checkpoints, the Hugging Face cache; torchvision, timm, mmseg and Hugging Face formats);
none found: random init with a warning (a run at a paper-scale preset is refused before it gets here,
`weights.require_weights`); a path: that file or model folder, in any of those formats; "none": random
init, said in the log; "standin": the ImageNet stand-in (methods/nets/standin.py: the backbone
pretrained on procedural textures, built once and cached as an artifact).
"""
from __future__ import annotations

import logging

import torchvision
from torch import nn

from udalab.methods.nets import standin, weights
from udalab.methods.nets.mit import MiT

log = logging.getLogger("udalab")


def initialise(module: nn.Module, backbone: str, pretrained: str) -> bool:
    """Initialise `module` (`backbone`, built at random init) as `pretrained` says; True when weights were
    loaded into it, False when it stays at random init."""
    if pretrained == "none":
        log.info("%s: random initialisation (pretrained='none')", backbone)
        return False
    if pretrained.partition(":")[0] == standin.KIND:
        standin.load_standin(module, backbone, pretrained)
        return True
    if pretrained == "imagenet":
        found = weights.find(backbone)
        if not found:
            log.warning("%s: RANDOM INITIALISATION: %s", backbone, weights.missing_message(backbone))
            return False
        chosen = found[0]
    else:
        chosen = weights.given(backbone, pretrained)
    weights.load_into(module, backbone, chosen)
    log.info("%s: ImageNet weights from %s (%s, sha256 %s)", backbone, chosen.path, chosen.location, chosen.sha256())
    return True


def resnet(depth: int, pretrained: str) -> nn.Module:
    """torchvision ResNet-`depth`; `pretrained` = 'imagenet', 'none', 'standin[:k=v,...]' (methods/nets/standin.py)
    or the path of a weights file or model folder."""
    builders = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
                50: torchvision.models.resnet50, 101: torchvision.models.resnet101,
                152: torchvision.models.resnet152}
    if depth not in builders:
        raise ValueError(f"ResNet depth {depth} is not available; choose one of {sorted(builders)}")
    net = builders[depth](weights=None)
    initialise(net, f"resnet{depth}", pretrained)
    return net


def load_mit(encoder: MiT, pretrained: str) -> bool:
    """Initialise `encoder` as `pretrained` says ('imagenet', a path, 'none' or 'standin[:k=v,...]');
    True when weights were loaded, False when it stays at random init."""
    return initialise(encoder, f"mit_{encoder.variant}", pretrained)


def mit(backbone: str, pretrained: str, drop_path_rate: float = 0.1) -> MiT:
    """A MiT encoder ("mit_b0" … "mit_b5"), initialised as `pretrained` says."""
    if not backbone.startswith("mit_"):
        raise ValueError(f"backbone must be mit_b0 … mit_b5, got {backbone!r}")
    encoder = MiT(backbone.removeprefix("mit_"), drop_path_rate=drop_path_rate)
    load_mit(encoder, pretrained)
    return encoder
