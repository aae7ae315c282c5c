"""The ImageNet stand-in: procedural textures, the artifact cache, and pretrained="standin" in both loaders."""
import threading
import time

import pytest
import torch

from udalab.datasets.textures import CLASS_NAMES, TextureDataset
from udalab.datasets.transforms import denormalize
from udalab.methods.engine import artifacts
from udalab.methods.engine.artifacts import ArtifactError, artifact_path, get_or_build
from udalab.methods.nets.backbones import resnet
from udalab.methods.nets.deeplab import DeepLabV2
from udalab.methods.nets.backbones import load_mit
from udalab.methods.nets.mit import MiT
from udalab.methods.nets.standin import STATE_FILE, artifact_config, parse_spec

TINY = "standin:steps=2,batch_size=4,image_size=32,eval_samples=16"  # seconds, not minutes


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("UDALAB_ARTIFACT_POLL_S", "0.05")  # a waiting builder looks again at once
    return tmp_path / "artifacts"


# ---------------------------------------------------------------------------------------
# Textures


def test_textures_are_deterministic_and_class_balanced():
    ds = TextureDataset(64, size=32, seed=3)
    a, b = ds[5], TextureDataset(64, size=32, seed=3)[5]
    assert torch.equal(a["image"], b["image"]) and a["label"] == b["label"] and a["name"] == b["name"]
    assert not torch.equal(a["image"], TextureDataset(64, size=32, seed=4)[5]["image"])
    assert a["image"].shape == (3, 32, 32) and a["image"].dtype == torch.float32 and a["label"].dtype == torch.int64
    pixels = denormalize(a["image"])  # ImageNet-normalised images of [0, 1] pixels
    assert torch.allclose(pixels, a["image"] * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
                          + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), atol=1e-5)
    labels = [ds[i]["label"].item() for i in range(32)]
    assert sorted(labels) == sorted(list(range(16)) * 2)  # every class twice in 32 consecutive samples
    assert len(CLASS_NAMES) == 16
    images = torch.stack([ds[i]["image"] for i in range(16)])
    assert (images.flatten(1).std(1) > 0.05).all()  # no class renders a blank image
    with pytest.raises(IndexError):
        ds[64]
    mosaic = TextureDataset(8, size=32, seed=3, grid=2)  # 2 x 2 cells, a class each
    assert mosaic[1]["label"].shape == (2, 2) and mosaic[1]["image"].shape == (3, 32, 32)
    assert [mosaic[i]["label"][0, 0].item() for i in range(8)] == list(range(8))
    assert len({tuple(mosaic[i]["label"].flatten().tolist()) for i in range(8)}) == 8


# ---------------------------------------------------------------------------------------
# The artifact cache


def test_artifact_is_built_once_and_reused(store):
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "x.txt").write_text("built")

    first = get_or_build("demo", {"a": 1, "b": [1, 2]}, build)
    again = get_or_build("demo", {"b": [1, 2], "a": 1}, build)  # same config, other key order
    assert first == again == artifact_path("demo", {"a": 1, "b": [1, 2]}) and len(calls) == 1
    assert first.parent == store and first.name.startswith("demo-")
    assert (first / "x.txt").read_text() == "built" and (first / "config.json").is_file()
    other = get_or_build("demo", {"a": 2, "b": [1, 2]}, build)
    assert other != first and len(calls) == 2
    assert not [p for p in store.iterdir() if p.name.startswith(".tmp-")]  # no temporary left behind


def test_half_written_artifact_never_counts(store):
    config = {"a": 1}
    final = artifact_path("demo", config)
    store.mkdir(parents=True)
    (store / f".tmp-{final.name}-999-deadbeef").mkdir()  # a build killed half-way
    (store / f".tmp-{final.name}-999-deadbeef" / "x.txt").write_text("hal")

    def crash(tmp):
        (tmp / "x.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_or_build("demo", config, crash)
    assert not final.exists()
    get_or_build("demo", config, lambda tmp: (tmp / "x.txt").write_text("whole"))
    assert (final / "x.txt").read_text() == "whole"
    assert sorted(p.name for p in store.iterdir()) == [".leases", final.name]  # stale temps gone
    assert not list((store / ".leases").iterdir())  # and the lease released


def test_concurrent_builders_build_once(store):
    calls = []

    def slow(tmp):
        calls.append(1)
        time.sleep(0.3)
        (tmp / "x.txt").write_text("built")

    paths = []
    threads = [threading.Thread(target=lambda: paths.append(get_or_build("demo", {"a": 1}, slow))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(paths)) == 1 and len(paths) == 3


def test_artifact_root_defaults_to_the_udalab_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("UDALAB_ARTIFACTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert artifacts.artifact_path("standin", {"a": 1}).parent == tmp_path / ".cache" / "udalab" / "artifacts"


# ---------------------------------------------------------------------------------------
# pretrained="standin" in both loaders


def test_standin_spec():
    cfg = parse_spec("mit_b0", "standin:steps=7, lr=0.01")
    assert cfg.backbone == "mit_b0" and cfg.steps == 7 and cfg.lr == 0.01
    assert artifact_config(parse_spec("resnet18", "standin")) != artifact_config(parse_spec("mit_b0", "standin"))
    with pytest.raises(ValueError, match="StandinConfig"):
        parse_spec("resnet18", "standin:stepz=3")


def test_resnet_standin_loads_the_artifact(store):
    rng = torch.get_rng_state()
    net = resnet(18, TINY)
    rng_after = torch.get_rng_state()
    state = torch.load(artifact_path("standin", artifact_config(parse_spec("resnet18", TINY))) / STATE_FILE)
    assert "fc.weight" not in state and state.keys() <= net.state_dict().keys()
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v), k
    torch.set_rng_state(rng)
    random = resnet(18, "none")  # the same draws, without the stand-in
    assert torch.equal(torch.get_rng_state(), rng_after)  # building it left the caller's RNG alone
    assert not torch.equal(random.conv1.weight, net.conv1.weight)
    assert not torch.equal(random.layer4[1].conv2.weight, net.layer4[1].conv2.weight)
    built = sorted(store.iterdir())
    model = DeepLabV2(19, 18, TINY, output_stride=8)  # reuses the artifact, then dilates
    assert sorted(store.iterdir()) == built
    assert torch.equal(model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_mit_standin_loads_the_artifact(store, caplog):
    encoder = MiT("b0", drop_path_rate=0.0)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with caplog.at_level("INFO", logger="udalab"):
        assert load_mit(encoder, TINY) is True
    directory = artifact_path("standin", artifact_config(parse_spec("mit_b0", TINY)))
    state = torch.load(directory / STATE_FILE)
    assert state.keys() == encoder.state_dict().keys()
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in state.items())
    assert not torch.equal(before["stages.3.blocks.1.mlp.fc1.weight"], encoder.stages[3].blocks[1].mlp.fc1.weight)
    assert str(directory) in caplog.text and directory.name.removeprefix("standin-") in caplog.text
    assert "texture accuracy" in caplog.text


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_broken_artifact_names_the_path_and_the_fix(store, damage):
    resnet(18, TINY)
    directory = artifact_path("standin", artifact_config(parse_spec("resnet18", TINY)))
    if damage == "missing":
        (directory / STATE_FILE).unlink()
    else:
        (directory / STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="delete") as err:
        resnet(18, TINY)
    assert str(directory) in str(err.value)


@pytest.mark.parametrize("module", ["advent", "intrada", "daformer", "hrda"])
def test_mini_presets_start_from_the_standin_and_smoke_from_random_init(module):
    """The mini data's default init is the stand-in (the papers start from ImageNet); the
    seconds-scale smoke preset builds nothing."""
    import importlib

    presets = importlib.import_module(f"udalab.methods.{module}").PRESETS
    assert presets["mini"]["pretrained"] == "standin" and presets["smoke"]["pretrained"] == "none"
