"""Backbone weights (methods/nets/weights.py): each format users have loads to the same function, a
paper-scale run without its ImageNet file is refused before anything is read, provenance names the
file, and `udalab weights check` says what is found where."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from udalab.methods.nets import weights
from udalab.methods.nets.backbones import load_mit, resnet
from udalab.methods.nets.mit import MiT

# the names timm's ResNet writes (timm/models/resnet.py keeps torchvision's module names; a one-off
# check with timm 1.0.31: its resnet18 / resnet50 state dicts have exactly torchvision's keys)
TIMM_RESNET18_KEYS = ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                      "layer2.0.downsample.1.running_var", "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias")


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Empty $UDALAB_WEIGHTS, $TORCH_HOME and $HF_HOME: {name: folder}."""
    out = {"weights": tmp_path / "weights", "torch": tmp_path / "torch", "hf": tmp_path / "hf"}
    for folder in out.values():
        folder.mkdir()
    monkeypatch.setenv("UDALAB_WEIGHTS", str(out["weights"]))
    monkeypatch.setenv("TORCH_HOME", str(out["torch"]))
    monkeypatch.setenv("HF_HOME", str(out["hf"]))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return out


def hf_cache_path(hf_home: Path, repo: str, name: str) -> Path:
    """Where the Hugging Face hub cache keeps `name` of `repo` (refs/main -> snapshots/<commit>/)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    return folder / "snapshots" / commit / name


def save_safetensors(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    (path.parent / "config.json").write_text("{}")


# ---------------------------------------------------------------------------------------
# ResNet: torchvision's files, its cache, timm's model folders and timm's copies in the HF cache


def _resnet18_places(kind: str, state: dict, places: dict) -> tuple[str, str]:
    """Write `state` as `kind` says; (pretrained to pass, location the loader must name)."""
    tv_name = Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name      # resnet18-f37072fd.pth
    if kind == "torchvision file":
        torch.save(state, places["weights"] / tv_name)
        return "imagenet", "$UDALAB_WEIGHTS"
    if kind == "torchvision cache":
        (places["torch"] / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(state, places["torch"] / "hub" / "checkpoints" / tv_name)
        return "imagenet", "torch hub cache"
    if kind == "timm folder":
        save_safetensors(state, places["weights"] / "resnet18.tv_in1k" / "model.safetensors")
        return "imagenet", "$UDALAB_WEIGHTS"
    if kind == "timm in the HF cache":
        save_safetensors(state, hf_cache_path(places["hf"], "timm/resnet18.tv_in1k", "model.safetensors"))
        return "imagenet", "Hugging Face cache"
    path = places["weights"].parent / "elsewhere" / "my_resnet.pth"      # a checkpoint of a training script
    path.parent.mkdir()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return str(path), "pretrained=<path>"


@pytest.mark.parametrize("kind", ["torchvision file", "torchvision cache", "timm folder", "timm in the HF cache",
                                  "wrapped checkpoint path"])
def test_resnet_weights_load_from_each_format_to_the_same_function(kind, places):
    torch.manual_seed(0)
    saved = torchvision.models.resnet18(weights=None).eval()
    state = saved.state_dict()
    assert set(TIMM_RESNET18_KEYS) <= state.keys()
    pretrained, location = _resnet18_places(kind, state, places)
    chosen = weights.find("resnet18")[0] if pretrained == "imagenet" else weights.given("resnet18", pretrained)
    assert chosen.location == location
    sha = hashlib.sha256(chosen.path.read_bytes()).hexdigest()[:12]
    assert weights.describe_init("resnet18", pretrained) == f"{chosen.name} sha256 {sha}"
    torch.manual_seed(1)                                  # another random init, then the weights
    loaded = resnet(18, pretrained).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(saved(x), loaded(x))


def test_the_torchvision_default_comes_first_and_another_depth_is_refused(places):
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, places["weights"] / "resnet18-00000000.pth")
    torch.save(state, places["weights"] / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name)
    assert [f.name for f in weights.find("resnet18")] == ["resnet18-f37072fd.pth", "resnet18-00000000.pth"]
    torch.save(state, places["weights"] / "resnet34-b627a593.pth")      # ResNet-18 weights under ResNet-34's name
    with pytest.raises(weights.WeightsError, match=r"resnet34-b627a593.pth does not hold resnet34's weights.*missing"):
        resnet(34, "imagenet")


# ---------------------------------------------------------------------------------------
# MiT: the SegFormer release / mmseg, Hugging Face (a saved folder, the hub cache), our own


def mmseg_names(state: dict) -> dict:
    """A MiT state dict in the SegFormer release's names (patch_embed1, block1.0.attn.sr, norm1)."""
    out = {}
    for key, value in state.items():
        _, stage, part, rest = key.split(".", 3)
        n = int(stage) + 1
        if part == "patch_embed":
            out[f"patch_embed{n}.{rest}"] = value
        elif part == "blocks":
            out[f"block{n}.{rest.replace('attn.sr_conv', 'attn.sr').replace('mlp.dwconv', 'mlp.dwconv.dwconv')}"] = value
        else:
            out[f"norm{n}.{rest}"] = value
    return out


@pytest.mark.parametrize("kind", ["release file", "mmseg checkpoint", "udalab state dict"])
def test_mit_weights_load_from_each_format_to_the_same_function(kind, places):
    torch.manual_seed(0)
    saved = MiT("b0", drop_path_rate=0.0).eval()
    state = saved.state_dict()
    if kind == "release file":       # as published: the ImageNet classifier head beside the encoder
        torch.save({**mmseg_names(state), "head.weight": torch.zeros(1000, 256)}, places["weights"] / "mit_b0.pth")
        pretrained = "imagenet"
    elif kind == "mmseg checkpoint":  # a segmentor trained with mmseg: "state_dict", "backbone." and its head
        raw = {**{f"backbone.{k}": v for k, v in mmseg_names(state).items()}, "decode_head.conv_seg.weight": torch.zeros(1)}
        torch.save({"meta": {"epoch": 1}, "state_dict": raw}, places["weights"] / "mit_b0_20220624-7e0fe6dd.pth")
        pretrained = "imagenet"
    else:
        pretrained = str(places["weights"] / "encoder.pt")
        torch.save(state, pretrained)
    loaded = MiT("b0", drop_path_rate=0.0)
    assert load_mit(loaded, pretrained) is True
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for a, b in zip(saved(x), loaded.eval()(x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["save_pretrained folder", "nvidia/mit-b0 in the HF cache"])
def test_mit_weights_from_hugging_face_compute_what_segformer_computes(kind, places):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 160, 256], num_attention_heads=[1, 2, 5, 8],
                                       sr_ratios=[8, 4, 2, 1], drop_path_rate=0.0, num_labels=1000)
    torch.manual_seed(0)
    if kind == "save_pretrained folder":        # huggingface-cli download nvidia/mit-b0 --local-dir .../mit-b0 alike
        hf = transformers.SegformerModel(cfg).eval()
        hf.save_pretrained(places["weights"] / "mit-b0")
        location = "$UDALAB_WEIGHTS"
    else:                                        # nvidia/mit-bX are image classifiers: "segformer." + "classifier."
        classifier = transformers.SegformerForImageClassification(cfg).eval()
        hf = classifier.segformer
        file = hf_cache_path(places["hf"], "nvidia/mit-b0", "model.safetensors")
        classifier.save_pretrained(file.parent)
        location = "Hugging Face cache"
    assert weights.find("mit_b0")[0].location == location
    loaded = MiT("b0", drop_path_rate=0.0)
    assert load_mit(loaded, "imagenet") is True
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states
        for a, b in zip(ref, loaded.eval()(x)):
            torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-3)


def test_a_file_of_another_mit_is_refused_naming_it(places):
    torch.save(mmseg_names(MiT("b1").state_dict()), places["weights"] / "mit_b0.pth")
    with pytest.raises(weights.WeightsError, match=r"mit_b0.pth does not hold mit_b0's weights .*other shapes"):
        load_mit(MiT("b0"), "imagenet")
    (places["weights"] / "mit_b0.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(weights.WeightsError, match="mit_b0.pth is not a readable weights file"):
        load_mit(MiT("b0"), "imagenet")


# ---------------------------------------------------------------------------------------
# Refused before anything is read; provenance


def test_a_paper_run_without_its_weights_is_refused_before_the_data(places, monkeypatch):
    from udalab.methods import check_config, run_local
    from udalab.methods.engine import ConfigError
    from udalab.methods.engine.registry import Method
    from udalab.methods.engine.run import Run

    def reached(*args, **kwargs):
        raise AssertionError("the run went past the weights check")

    monkeypatch.setattr(Method, "data", reached)
    monkeypatch.setattr(Run, "start", reached)
    for method, file in (("daformer", "mit_b5.pth"), ("source_only", "resnet101-cd907fc2.pth"),
                         ("mml", "resnet50-11ad3fa6.pth")):
        with pytest.raises(weights.WeightsError) as err:
            run_local(method, {"preset": "paper", "iterations": 1})
        assert f"{method} at preset 'paper'" in str(err.value) and file in str(err.value)
        assert str(places["weights"]) in str(err.value) and "pretrained=none" in str(err.value)
    assert "nvidia/mit-b5" in str(pytest.raises(ConfigError, check_config, {"method": "hrda", "preset": "paper"},
                                                data=True).value)
    missing = places["weights"] / "nope.pth"
    with pytest.raises(weights.WeightsError, match="nope.pth do not exist"):   # an explicit path, at any preset
        run_local("source_only", {"preset": "smoke", "pretrained": str(missing)})


def test_random_init_on_purpose_and_the_small_presets_pass_the_check(places):
    from udalab.methods import get_method
    from udalab.methods.engine.registry import require_weights

    for method, config in (("daformer", {"preset": "paper", "pretrained": "none"}),
                           ("daformer", {"preset": "mini", "pretrained": "imagenet"}),
                           ("advent", {"preset": "paper", "pretrained": "standin"}),
                           ("source_only", {"preset": "smoke"})):
        m = get_method(method)
        require_weights(m, m.hparams(config), config)


def test_train_on_the_command_line_exits_naming_the_weights(tmp_path):
    env = {**os.environ, "UDALAB_WEIGHTS": str(tmp_path), "TORCH_HOME": str(tmp_path), "HF_HOME": str(tmp_path)}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "udalab.studies.cli", "train", "daformer", "--set", "preset=paper",
                           "--set", "iterations=1"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "mit_b5.pth" in proc.stderr and "nvidia/mit-b5" in proc.stderr and proc.stdout == ""


def test_a_study_without_its_weights_stops_before_ray_starts(places, tmp_path):
    """The study runner's bad-input checks run the same weights check: a paper-preset study whose
    backbone has no file here stops naming it, before Ray starts or the results folder is made."""
    import ray

    from udalab.studies.run import command
    from udalab.studies.study import Study

    study = Study(name="w", method="daformer")
    for runner in ([], ["--local"]):
        args = command.build_parser(study).parse_args(["--preset", "paper", "--results", str(tmp_path / "r"),
                                                       *runner])
        with pytest.raises(SystemExit, match=r"(?s)w: daformer at preset 'paper': no ImageNet weights of mit_b5.*"
                                             r"mit_b5\.pth.*no trial was started"):
            command.run_study(study, args)
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_provenance_names_each_backbones_file_and_checksum(places):
    from udalab.methods.engine.artifacts import config_hash
    from udalab.methods.nets.standin import artifact_config, parse_spec

    path = places["weights"] / "mine.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    prov = weights.weights_provenance([("resnet18", str(path)), ("mit_b0", "standin"), ("resnet18", str(path)),
                                       ("resnet50", "none"), ("mit_b5", "imagenet")])
    assert prov == {"provenance.weights": f"resnet18: {path} sha256 {sha}; "
                                          f"mit_b0: standin {config_hash(artifact_config(parse_spec('mit_b0', 'standin')))}; "
                                          f"resnet50: none (random init); "
                                          f"mit_b5: none (random init: no ImageNet weights found)"}
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), places["weights"] / "resnet18.pth")
    assert weights.weights_provenance([("resnet18", "imagenet")])["provenance.weights"].startswith(
        "resnet18: resnet18.pth sha256 ")
    assert weights.weights_provenance([]) == {}


# ---------------------------------------------------------------------------------------
# udalab weights check


def test_weights_check_lists_what_is_found_where(places, capsys):
    from udalab.studies.cli import main

    torch.manual_seed(0)
    tv = places["torch"] / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    tv.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tv)
    (places["weights"] / "mit_b0.pth").write_bytes(b"truncated")
    assert main(["weights", "check", "--backbones", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert f"torch hub cache      {tv.parent}" in out
    assert "resnet18-f37072fd.pth  torchvision / timm ResNet names" in out
    assert f"sha256 {hashlib.sha256(tv.read_bytes()).hexdigest()[:12]}" in out
    assert main(["weights", "check", "--backbones", "resnet18", "mit_b0", "mit_b5"]) == 1
    out = capsys.readouterr().out
    assert "mit_b0.pth  DOES NOT LOAD" in out and "no ImageNet weights of mit_b5 were found" in out
    assert main(["weights", "check"]) == 1            # every backbone the methods use: the paper ones are missing
    out = capsys.readouterr().out
    assert "mit_b5: used by daformer, hrda at preset paper (pretrained=imagenet)" in out
    assert "MISSING: a run that loads resnet101's ImageNet weights is refused" in out
    assert main(["weights", "check", "--backbones", "resnet7"]) == 2
