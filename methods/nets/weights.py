"""Where a backbone's ImageNet weights are looked for, in which formats, and what a run loads.

Backbones: resnet18 … resnet152 (torchvision's ResNets: the DeepLab-v2 family, MML, MS-UDA, the
multi-decoder U-Net) and mit_b0 … mit_b5 (SegFormer's Mix Transformer: DAFormer, HRDA).
`pretrained="imagenet"` loads the first file found, searching in this order:

    $UDALAB_WEIGHTS               <b>.pth, <b>.safetensors; ResNet: torchvision's download name
                                  (resnet101-cd907fc2.pth) and timm model folders (resnet101.tv2_in1k/);
                                  MiT: mmseg's dated download name (mit_b5_20220624-658746d9.pth) and
                                  Hugging Face model folders (mit-b5/); a folder named <b>/ too
    $TORCH_HOME/hub/checkpoints   torchvision's cache (its own file names); mmseg's MiT downloads
    the Hugging Face hub cache    nvidia/mit-bX (MiT); timm/resnetNN.tv2_in1k or .tv_in1k (timm's copies of
                                  torchvision's weights), looked up offline ($HF_HUB_CACHE, $HF_HOME/hub)

A model folder holds model.safetensors or pytorch_model.bin (what `save_pretrained` and
`huggingface-cli download --local-dir` write). A ResNet's first choice is torchvision's default
weights (IMAGENET1K_V2 for ResNet-50/101/152, V1 for 18/34: the file torchvision itself would load).

Formats are told apart by their key names, whatever the file is called: torchvision's ResNet (timm's
ResNet keeps torchvision's module names: conv1, bn1, layer1.0.conv1, ..., fc), the SegFormer
release / mmseg MiT (patch_embed1, block1.0.attn.q, norm1; "state_dict" / "backbone." wrappers),
Hugging Face's SegformerModel and SegformerForImageClassification (transformers 4 and 5 names) and
udalab's own (a saved MiT or stand-in). timm has no MiT: its pvt_v2 is another model (MLP ratio 8 in
the first stages of b0-b4) with weights of another training. `pretrained=<path>` names a file or
model folder in any of these formats.

    find(backbone)                    the files found, in search order (the first is what loads)
    read_state(path, backbone)        a file or model folder as a state dict in this repository's names
    check_fits(module, state, ...)    WeightsError unless the state fills the backbone
    require_weights(backbones, ...)   WeightsError before anything is built: a run at any preset but
                                      mini / smoke whose "imagenet" backbone has no file, or a
                                      pretrained=<path> that does not exist
    weights_provenance(backbones)     {"provenance.weights": "mit_b5: mit_b5.pth sha256 …"} of a run
    check(backbones, needs)           `udalab weights check`: what is found where, and what is missing
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from udalab.methods.engine.artifacts import config_hash
from udalab.methods.engine.config import ConfigError
from udalab.methods.engine.provenance import PREFIX
from udalab.methods.nets import standin
from udalab.methods.nets.mit import MIT_DEPTHS, MiT, convert_mit_state

RESNETS = tuple(f"resnet{d}" for d in (18, 34, 50, 101, 152))
MITS = tuple(f"mit_{v}" for v in MIT_DEPTHS)
BACKBONES = RESNETS + MITS
# Presets of the embedded mini data: their results are no paper numbers, so a missing ImageNet file
# there means random init said in the log (and in provenance.weights), not an error.
SMALL_PRESETS = ("mini", "smoke")
MODEL_FILES = ("model.safetensors", "pytorch_model.bin")    # inside a model folder, the first present
# Where cluster.yaml stages the bucket's weights/ on every node (its $UDALAB_WEIGHTS and $TORCH_HOME there).
CLUSTER_STAGING = "/weights"


class WeightsError(ConfigError):
    """A backbone's weights are missing, unreadable or not of that backbone."""


# ---------------------------------------------------------------------------------------
# Where: the locations and the names looked for in each.


@dataclass(frozen=True)
class Location:
    """A place weights are looked for: `root` None when it is not set up here (`note` says why)."""

    label: str
    root: Path | None
    note: str = ""


def locations() -> list[Location]:
    """$UDALAB_WEIGHTS, torch's hub cache and the Hugging Face hub cache, as this process's environment sets them."""
    env = os.environ.get("UDALAB_WEIGHTS")
    hf_note = ""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        hf_note = "not searched: huggingface_hub is not installed"
    unset = f"not set; a node of cluster.yaml sets it to its copy of the bucket's weights, {CLUSTER_STAGING}"
    return [Location("$UDALAB_WEIGHTS", Path(env) if env else None, "" if env else unset),
            Location("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints"),
            Location("Hugging Face cache", None if hf_note else hf_cache(), hf_note)]


def hf_cache() -> Path:
    """The Hugging Face hub cache as huggingface_hub reads it from the environment (read here at call time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def _torchvision_default(backbone: str):
    return torchvision.models.get_model_weights(backbone).DEFAULT


def _timm_tags(backbone: str) -> list[str]:
    """timm's names of torchvision's weights, the default first (tv2_in1k = IMAGENET1K_V2, tv_in1k = V1)."""
    return ["tv2_in1k", "tv_in1k"] if _torchvision_default(backbone).name.endswith("V2") else ["tv_in1k"]


def patterns(backbone: str) -> dict[str, list[str]]:
    """{location label: names looked for} of `backbone` (a name ending in "/" is a model folder;
    Hugging Face cache: repository ids)."""
    if backbone not in BACKBONES:
        raise WeightsError(f"no ImageNet weights are known for backbone {backbone!r}; backbones: "
                           f"{', '.join(BACKBONES)}")
    b = backbone
    if backbone in MITS:
        hf = f"mit-{b.removeprefix('mit_')}"
        return {"$UDALAB_WEIGHTS": [f"{b}.pth", f"{b}.safetensors", f"{b}_*.pth", f"{hf}/", f"{b}/"],
                "torch hub cache": [f"{b}.pth", f"{b}_*.pth"],
                "Hugging Face cache": [f"nvidia/{hf}"]}
    first, tags = Path(_torchvision_default(b).url).name, _timm_tags(b)
    return {"$UDALAB_WEIGHTS": [first, f"{b}-*.pth", f"{b}.pth", f"{b}.safetensors", *(f"{b}.{t}/" for t in tags),
                                f"{b}/"],
            "torch hub cache": [first, f"{b}-*.pth"],
            "Hugging Face cache": [f"timm/{b}.{t}" for t in tags]}


def where_to_get(backbone: str) -> str:
    """Where users get `backbone`'s ImageNet weights, and where to put them."""
    if backbone in MITS:
        v = backbone.removeprefix("mit_")
        return (f"the SegFormer release's {backbone}.pth (NVlabs/SegFormer README, 'ImageNet-1K pretrained "
                f"weights'; DAFormer's setup uses the same files) into $UDALAB_WEIGHTS, or Hugging Face's "
                f"nvidia/mit-{v} (huggingface-cli download nvidia/mit-{v} --local-dir $UDALAB_WEIGHTS/mit-{v})")
    weights = _torchvision_default(backbone)
    return (f"torchvision's {weights} ({weights.url}) into $UDALAB_WEIGHTS or $TORCH_HOME/hub/checkpoints "
            f"(TORCH_HOME=DIR python -c \"import torchvision; torchvision.models.{backbone}(weights='DEFAULT')\" "
            f"downloads it there), or timm's copy timm/{backbone}.{_timm_tags(backbone)[0]} from Hugging Face")


# ---------------------------------------------------------------------------------------
# What: the files found.


@dataclass(frozen=True)
class Found:
    """A file of a backbone's weights: `name` is its path below its location (the folder or repository
    for a model file), what provenance records; the full path is `path`."""

    backbone: str
    path: Path
    location: str
    name: str

    def sha256(self) -> str:
        return file_sha256(self.path)[:12]


def model_file(path: Path) -> Path | None:
    """A weights file as it is; a model folder's model.safetensors or pytorch_model.bin; None if neither."""
    if path.is_file():
        return path
    return next((path / f for f in MODEL_FILES if (path / f).is_file()), None)


def _in_folder(backbone: str, root: Path, names: list[str], label: str) -> list[Found]:
    out = []
    for pattern in names:
        folder = pattern.endswith("/")
        for hit in sorted(root.glob(pattern.rstrip("/"))):
            file = model_file(hit) if folder == hit.is_dir() else None
            if file is not None and file not in (f.path for f in out):
                out.append(Found(backbone, file, label, str(file.relative_to(root))))
    return out


def _in_hf_cache(backbone: str, cache: Path, repos: list[str], label: str) -> list[Found]:
    from huggingface_hub import try_to_load_from_cache

    out = []
    for repo in repos:
        for name in MODEL_FILES:
            hit = try_to_load_from_cache(repo, name, cache_dir=str(cache))
            if isinstance(hit, str):
                out.append(Found(backbone, Path(hit), label, f"{repo}/{name}"))
                break
    return out


def find(backbone: str) -> list[Found]:
    """Every file of `backbone`'s ImageNet weights on this machine, in search order: the first is what
    pretrained="imagenet" loads."""
    names, out = patterns(backbone), []
    for loc in locations():
        if loc.root is None or not loc.root.is_dir():
            continue
        if loc.label == "Hugging Face cache":
            out += _in_hf_cache(backbone, loc.root, names[loc.label], loc.label)
        else:
            out += _in_folder(backbone, loc.root, names[loc.label], loc.label)
    return out


def given(backbone: str, pretrained: str) -> Found:
    """pretrained=<path> (a file or a model folder) as a Found; FileNotFoundError naming it if absent."""
    path = Path(pretrained)
    file = model_file(path) if path.exists() else None
    if file is None:
        raise FileNotFoundError(f"pretrained weights {path} do not exist; pass 'imagenet', 'none', 'standin' or the "
                                f"path of {backbone}'s weights (a file, or a model folder with one of "
                                f"{', '.join(MODEL_FILES)})")
    return Found(backbone, file, "pretrained=<path>", str(file))


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), computed once per process for a file of that size and modification time."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------
# Formats: a file as a state dict in this repository's names.


def _unwrap(raw: dict) -> dict:
    """The state dict inside a checkpoint ("state_dict" of mmseg / mmcv, "model" of timm's training)."""
    return raw.get("state_dict", raw.get("model", raw))


def _stripped(key: str) -> str:
    return key.removeprefix("module.").removeprefix("backbone.")


def naming(raw: dict) -> str:
    """The key names of a checkpoint: which release or library wrote them."""
    keys = list(_unwrap(raw))
    if any("patch_embeddings" in k for k in keys):
        return "Hugging Face SegFormer names"
    if any(_stripped(k).startswith(("patch_embed1.", "block1.")) for k in keys):
        return "SegFormer release / mmseg names"
    if any(k.startswith("stages.0.patch_embed.") for k in keys):
        return "udalab MiT names"
    if {"conv1.weight", "layer1.0.conv1.weight"} <= {_stripped(k) for k in keys}:
        return "torchvision / timm ResNet names"
    return "unknown names"


def _load_file(file: Path) -> dict:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(file))
        else:
            raw = torch.load(file, map_location="cpu", weights_only=True)
    except ImportError as e:
        raise WeightsError(f"{file} is a safetensors file and the safetensors package is not installed "
                           f"(pip install safetensors)") from e
    except Exception as e:  # truncated, not a checkpoint, or pickled objects beyond tensors and containers
        raise WeightsError(f"{file} is not a readable weights file ({type(e).__name__}: {e}); download it again, "
                           f"or save its state dict (tensors only) with torch.save") from e
    if not isinstance(raw, dict):
        raise WeightsError(f"{file} holds a {type(raw).__name__}, not a state dict")
    return raw


def read_state(path: Path, backbone: str) -> tuple[dict, str]:
    """(state dict in this repository's names, the file's naming) of a weights file or model folder."""
    file = model_file(Path(path))
    if file is None:
        raise WeightsError(f"{path} is neither a weights file nor a model folder with one of {', '.join(MODEL_FILES)}")
    raw = _load_file(file)
    if backbone in MITS:
        return convert_mit_state(raw), naming(raw)
    return {_stripped(k): v for k, v in _unwrap(raw).items()}, naming(raw)


def check_fits(module: nn.Module, state: dict, backbone: str, source: str, names: str) -> None:
    """WeightsError unless `state` fills every weight of `module` (a ResNet's ImageNet classifier fc and
    BatchNorm's step counters may be absent) with tensors of its shapes, and holds none it lacks."""
    expected = module.state_dict()
    optional = ("fc.",) if backbone in RESNETS else ()
    missing = [k for k in expected if k not in state and not k.startswith(optional)
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise WeightsError(f"{source} does not hold {backbone}'s weights ({names}): " + "; ".join(
            f"{what} {items[:3]}{' …' * (len(items) > 3)} ({len(items)})"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)) if items))


def load_into(module: nn.Module, backbone: str, found: Found) -> None:
    """Load `found` into `module` (the backbone, built at random init), or raise WeightsError naming the file."""
    state, names = read_state(found.path, backbone)
    check_fits(module, state, backbone, str(found.path), names)
    module.load_state_dict(state, strict=False)


def empty_backbone(backbone: str) -> nn.Module:
    """`backbone` on the meta device: its weights' names and shapes, no memory, no init."""
    with torch.device("meta"):
        if backbone in MITS:
            return MiT(backbone.removeprefix("mit_"))
        return torchvision.models.get_model(backbone, weights=None)


# ---------------------------------------------------------------------------------------
# Before a run: the check; with its reports: what loaded.


def missing_message(backbone: str) -> str:
    """No ImageNet weights of `backbone` here: what was looked for where, and where users get them."""
    names = patterns(backbone)
    lines = [f"no ImageNet weights of {backbone} were found; looked for"]
    for loc in locations():
        at = str(loc.root) if loc.root is not None else f"({loc.note})"
        lines.append(f"  {loc.label} {at}: {', '.join(names[loc.label])}")
    lines.append(f"Get them: {where_to_get(backbone)}. Or pass pretrained=<file or model folder>; --set "
                 f"pretrained=none trains from random init on purpose. `udalab weights check` lists what is found "
                 f"where.")
    return "\n".join(lines)


def _is_path(pretrained: str) -> bool:
    return pretrained not in ("imagenet", "none") and pretrained.partition(":")[0] != standin.KIND


def require_weights(backbones, preset: str, who: str) -> None:
    """Refuse, before anything is built or read, a run whose backbone (backbone, pretrained) has no weights:
    "imagenet" with no file found, at any preset but mini and smoke; a pretrained=<path> that does not exist."""
    problems = []
    for backbone, pretrained in dict.fromkeys(backbones):
        if pretrained == "imagenet" and preset not in SMALL_PRESETS and not find(backbone):
            problems.append(missing_message(backbone))
        elif _is_path(pretrained):
            try:
                given(backbone, pretrained)
            except FileNotFoundError as e:
                problems.append(str(e))
    if problems:
        raise WeightsError(f"{who} at preset {preset!r}: " + "\n".join(problems))


def describe_init(backbone: str, pretrained: str) -> str:
    """How `backbone` starts: "<file> sha256 <12 hex>", "standin <config hash>" or "none (random init...)"."""
    if pretrained == "none":
        return "none (random init)"
    if not _is_path(pretrained) and pretrained != "imagenet":
        return f"{standin.KIND} {config_hash(standin.artifact_config(standin.parse_spec(backbone, pretrained)))}"
    if pretrained == "imagenet":
        found = find(backbone)
        if not found:
            return "none (random init: no ImageNet weights found)"
        chosen = found[0]
    else:
        chosen = given(backbone, pretrained)
    return f"{chosen.name} sha256 {chosen.sha256()}"


def weights_provenance(backbones) -> dict[str, str]:
    """{"provenance.weights": "<backbone>: <describe_init>; ..."} of a run's backbones ({} if it builds none)."""
    unique = dict.fromkeys(backbones)
    if not unique:
        return {}
    return {f"{PREFIX}weights": "; ".join(f"{b}: {describe_init(b, p)}" for b, p in unique)}


# ---------------------------------------------------------------------------------------
# `udalab weights check`


def _found_line(found: Found, first: bool) -> tuple[str, bool]:
    """One found file: where, its naming, size and sha256, and whether it loads into its backbone."""
    try:
        state, names = read_state(found.path, found.backbone)
        check_fits(empty_backbone(found.backbone), state, found.backbone, str(found.path), names)
        verdict, ok = names, True
    except WeightsError as e:
        verdict, ok = f"DOES NOT LOAD: {e}", False
    size = found.path.stat().st_size / 2**20
    return (f"  {'used' if first else '    '}  {found.location:20s} {found.name}  {verdict}, {size:.1f} MiB, "
            f"sha256 {found.sha256()}"), ok


def check(backbones: list[str] | None, uses: dict[str, list[tuple[str, str, str]]]) -> int:
    """Print, for each of `backbones` (default: every backbone in `uses`, {backbone: [(method, preset,
    pretrained), ...]}), the files found where ("used": the one a run loads) and whether they load; 1 when
    a backbone a paper preset loads from ImageNet, or a named one, has none or its first does not load."""
    print("ImageNet weights are looked for, in this order, in:")
    for loc in locations():
        print(f"  {loc.label:20s} {loc.root if loc.root is not None else ''}{f' ({loc.note})' if loc.note else ''}")
    status = 0
    for backbone in backbones or sorted(uses, key=BACKBONES.index):
        print(f"\n{backbone}: {_users(uses.get(backbone, []))}")
        required = bool(backbones) or any((p, w) == ("paper", "imagenet") for _, p, w in uses.get(backbone, []))
        lines = [_found_line(f, i == 0) for i, f in enumerate(find(backbone))]
        for line, _ in lines:
            print(line)
        if not lines:
            print("  " + (missing_message(backbone).replace("\n", "\n  ") if required
                          else f"none found (ImageNet weights of {backbone} are needed at no paper preset)"))
        if required and not (lines and lines[0][1]):
            print(f"  MISSING: a run that loads {backbone}'s ImageNet weights is refused on this machine")
            status = 1
    return status


def _users(uses: list[tuple[str, str, str]]) -> str:
    """"used by daformer, hrda at preset paper (pretrained=imagenet); ..." of a backbone's uses."""
    if not uses:
        return "used by no method"
    groups: dict[tuple[str, str], list[str]] = {}
    for method, preset, pretrained in uses:
        groups.setdefault((preset, pretrained), []).append(method)
    return "used by " + "; ".join(f"{', '.join(sorted(m))} at preset {preset} (pretrained={pretrained})"
                                  for (preset, pretrained), m in sorted(groups.items()))
