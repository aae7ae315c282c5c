"""CycleGAN: unpaired image translation source -> target style (Zhu et al., ICCV 2017).

Algorithm (one iteration; A = source images, B = target images, G_AB / G_BA ResNet
generators, D_A / D_B 70x70 PatchGAN discriminators, L_gan least squares):
  1. generators (D frozen):
       L_G = L_gan(D_B(G_AB(a)), real) + L_gan(D_A(G_BA(b)), real)
           + λ_cyc · (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)
           + λ_id · λ_cyc · (|G_AB(b) - b|_1 + |G_BA(a) - a|_1)
  2. discriminators, on real images and on fakes drawn from a pool of the last 50:
       L_D_B = (L_gan(D_B(b), real) + L_gan(D_B(pool_B(G_AB(a))), fake)) / 2, L_D_A likewise
  3. Adam (2e-4, betas 0.5 / 0.999) for both; the learning rate constant for the first half of
     the iterations, then decaying linearly to 0 (the reference: 100 + 100 epochs).

With a `semantic_model` f_S (a trained segmentation run, fixed), step 1 adds CyCADA's semantic
consistency (Hoffman et al., ICML 2018, Eq. 4): a translation must segment under f_S as the image
it came from does,
       L_sem = CE(f_S(G_AB(a)), argmax f_S(a)) + CE(f_S(G_BA(b)), argmax f_S(b)),
weighted by λ_sem; it keeps a class a class where matching the target's image statistics alone
would repaint it (a label flip).

Used as a stage of other methods (`CycleGANStage` is its part of their configs): the stage trains
as a run of its own (`train_stage`), inside the artifact's build that every trial asking for the
same translation shares (methods/engine/artifacts.py). UDAS translates every source image once
with the trained G_AB (`write_translated`, in the source dataset's own layout beside its labels);
MS-UDA keeps the generator. Reference settings: junyanz/pytorch-CycleGAN-and-pix2pix
(options/train_options.py, models/cycle_gan_model.py); CyCADA for GTA5 -> Cityscapes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.io import write_png

from udalab.datasets.transforms import denormalize, normalize
from udalab.methods.engine import ConfigError, HParams, Run, Step, Stream, UDAData, fit, register, scale_size
from udalab.methods.engine.artifacts import link_tree
from udalab.methods.engine.evaluate import Prediction
from udalab.methods.engine.registry import load_trained, train_loop
from udalab.methods.engine.run import LocalSession
from udalab.methods.nets.cyclegan import PatchDiscriminator, ResnetGenerator
from udalab.methods.parts.losses import lsgan

REAL, FAKE = 1.0, 0.0  # LSGAN targets (the reference)
PATCH_MIN = 32         # the smallest crop the 70x70 PatchGAN's last instance norm sees more than 1x1 of


@dataclass
class CycleGANConfig(HParams):
    # networks: resnet_9blocks generator, 64 filters, instance norm; 70x70 PatchGAN, 64 filters
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    # losses: LSGAN, λ_cyc 10, identity 0.5 · λ_cyc (CyCADA's GTA5 -> Cityscapes: 1.0), pool of 50
    lambda_cyc: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    # optimisation: Adam 2e-4, betas (0.5, 0.999), batch 1, 100 epochs constant + 100 decaying
    lr: float = 2e-4
    beta1: float = 0.5
    batch_size: int = 1
    iterations: int = 200 * 2975        # 200 epochs of Cityscapes' 2975 train images
    decay_from: float = 0.5             # the fraction of iterations after which the LR decays to 0
    # data: images resized to load_size (None: as stored), then random crops of crop_size (the reference's
    # --load_size 286 / --crop_size 256; CyCADA: width 1024, 400-px crops)
    load_size: tuple | None = None
    crop_size: tuple = (256, 256)
    # CyCADA's semantic consistency: f_S a trained run's checkpoint folder (registry.load_trained), applied
    # to the crops as they are; None: plain CycleGAN. λ_sem 1: CyCADA's release adds the term unweighted
    semantic_model: str | None = None
    lambda_sem: float = 1.0

    def validate(self) -> None:
        super().validate()
        if min(self.ngf, self.ndf, self.n_blocks, self.batch_size, self.iterations) < 1:
            raise ConfigError("ngf, ndf, n_blocks, batch_size and iterations must be >= 1")
        if not 0.0 <= self.decay_from <= 1.0:
            raise ConfigError(f"decay_from must be in [0, 1], got {self.decay_from}")
        if self.lambda_cyc < 0 or self.lambda_identity < 0 or self.pool_size < 0 or self.lambda_sem < 0:
            raise ConfigError("lambda_cyc, lambda_identity, lambda_sem and pool_size must be >= 0")

    def key(self) -> dict:
        """The settings that make a translation, for an artifact's key: without f_S's path (where it
        is stored; the caller keys f_S itself) and, with no f_S, without λ_sem (plain CycleGAN's
        key as it was before the term existed)."""
        key = {k: v for k, v in dataclasses.asdict(self).items() if k != "semantic_model"}
        if self.semantic_model is None:
            del key["lambda_sem"]
        return key

    def images(self) -> dict:
        """Both domains at load_size (or as stored), random crops (the reference's --preprocess resize_and_crop)."""
        size = tuple(self.load_size) if self.load_size else None
        return {"source_size": size, "target_size": size, "crop": tuple(self.crop_size)}

    def scaled(self, factor: float) -> dict:
        return {**super().scaled(factor), "load_size": scale_size(self.load_size, factor),
                "crop_size": scale_size(self.crop_size, factor, least=PATCH_MIN)}


@dataclass
class CycleGANStage(HParams):
    """The CycleGAN stage of a method built on a translation (UDAS, MS-UDA): the fields it sets of
    CycleGANConfig; the defaults translate Cityscapes-sized sets (UDAS overrides them, MS-UDA too)."""

    cyclegan_iterations: int = 200 * 2975  # 100 + 100 epochs of the target's images (the reference)
    cyclegan_ngf: int = 64
    cyclegan_blocks: int = 9
    cyclegan_crop: tuple = (256, 256)
    cyclegan_seed: int = 0                 # one translation for every trial, whatever its seed

    def validate(self) -> None:
        super().validate()
        if min(self.cyclegan_iterations, self.cyclegan_ngf, self.cyclegan_blocks) < 1:
            raise ConfigError("cyclegan_iterations, cyclegan_ngf and cyclegan_blocks must be >= 1")

    def shortened(self, iterations: int, eval_every: int) -> dict:
        return {**super().shortened(iterations, eval_every), "cyclegan_iterations": iterations}

    def scaled(self, factor: float) -> dict:
        return {**super().scaled(factor), "cyclegan_crop": scale_size(self.cyclegan_crop, factor, least=PATCH_MIN)}

    def cyclegan(self) -> CycleGANConfig:
        return CycleGANConfig(ngf=self.cyclegan_ngf, ndf=self.cyclegan_ngf, n_blocks=self.cyclegan_blocks,
                              iterations=self.cyclegan_iterations, crop_size=tuple(self.cyclegan_crop))


class ImagePool:
    """The last `size` generated images; once full, each query returns a stored image with
    probability 0.5 (and stores the new one in its place), else the new one (Shrivastava et al.)."""

    def __init__(self, size: int):
        self.size, self.images = size, []

    def state_dict(self) -> dict:
        return {"images": list(self.images)}

    def load_state_dict(self, state) -> None:
        self.images = list(state["images"] if isinstance(state, dict) else state)

    def query(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif float(torch.rand((), generator=gen)) < 0.5:
                k = int(torch.randint(self.size, (), generator=gen))
                out.append(self.images[k])
                self.images[k] = img
            else:
                out.append(img)
        return torch.stack(out)


# ---------------------------------------------------------------------------------------
# Images: the datasets' ImageNet-normalised tensors -> the generators' [-1, 1].


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """The datasets' ImageNet-normalised images -> the generators' [-1, 1]."""
    return denormalize(x) * 2 - 1


def from_unit(y: torch.Tensor) -> torch.Tensor:
    """The generators' [-1, 1] -> ImageNet-normalised (what a segmentation model reads); differentiable."""
    return normalize((y + 1) / 2)


def frozen_model(path: str, device) -> Prediction:
    """CyCADA's f_S: the trained run at `path`, in eval mode, its weights fixed."""
    prediction = load_trained(path, device=str(device)).prediction
    for module in prediction.modules:
        module.requires_grad_(False)
    return prediction


def semantic_consistency(f_S: Prediction, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """One direction of L_sem: CE(f_S(fake), argmax f_S(real)), on f_S's output grid; `real` and `fake`
    in the generators' [-1, 1]. The gradient reaches the generator through `fake` only."""
    with torch.no_grad():
        labels = f_S.fn(from_unit(real)).argmax(1)
    return F.cross_entropy(f_S.fn(from_unit(fake)), labels)


# ---------------------------------------------------------------------------------------
# The training step.


class CycleGANStep(Step):
    def __init__(self, run: Run, hp: CycleGANConfig, data: UDAData):
        self.run, self.hp, self.data = run, hp, data
        self.source, self.target = data.source, data.target
        self.G_AB, self.G_BA = (run.prepare(ResnetGenerator(hp.ngf, hp.n_blocks), ddp=False) for _ in range(2))
        self.D_A, self.D_B = (run.prepare(PatchDiscriminator(hp.ndf), ddp=False) for _ in range(2))
        self.networks = (self.G_AB, self.G_BA, self.D_A, self.D_B)
        betas = (hp.beta1, 0.999)
        self.opt_G = torch.optim.Adam([*self.G_AB.parameters(), *self.G_BA.parameters()], hp.lr, betas=betas)
        self.opt_D = torch.optim.Adam([*self.D_A.parameters(), *self.D_B.parameters()], hp.lr, betas=betas)
        start = int(hp.decay_from * hp.iterations)
        rate = lambda it: 1.0 - max(0, it - start) / max(1, hp.iterations - start)  # noqa: E731
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, rate)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, rate)
        self.pool_A, self.pool_B = ImagePool(hp.pool_size), ImagePool(hp.pool_size)
        self.f_S = frozen_model(hp.semantic_model, run.device) if hp.semantic_model else None
        self.saved = ("G_AB", "G_BA", "D_A", "D_B", "opt_G", "opt_D", "sched_G", "sched_D", "pool_A", "pool_B")

    def streams(self) -> dict[str, Stream]:
        return {"source": Stream(self.source, self.hp.batch_size, id=0),
                "target": Stream(self.target, self.hp.batch_size, id=1)}

    def train_step(self, batch: dict, it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        hp = self.hp
        a, b = to_unit(batch["source"]["image"]), to_unit(batch["target"]["image"])
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_D.zero_grad(set_to_none=True)
        # 1. generators, D frozen
        for D in (self.D_A, self.D_B):
            D.requires_grad_(False)
        fake_b, fake_a = self.G_AB(a), self.G_BA(b)
        gan = lsgan(self.D_B(fake_b), REAL) + lsgan(self.D_A(fake_a), REAL)
        cyc = F.l1_loss(self.G_BA(fake_b), a) + F.l1_loss(self.G_AB(fake_a), b)
        idt = F.l1_loss(self.G_AB(b), b) + F.l1_loss(self.G_BA(a), a) if hp.lambda_identity > 0 else gan.new_zeros(())
        sem = (semantic_consistency(self.f_S, a, fake_b) + semantic_consistency(self.f_S, b, fake_a)
               if self.f_S is not None else gan.new_zeros(()))
        (gan + hp.lambda_cyc * cyc + hp.lambda_identity * hp.lambda_cyc * idt + hp.lambda_sem * sem).backward()
        for D in (self.D_A, self.D_B):
            D.requires_grad_(True)
        # 2. discriminators on real images and pooled fakes
        d_b = (lsgan(self.D_B(b), REAL) + lsgan(self.D_B(self.pool_B.query(fake_b, gen)), FAKE)) / 2
        d_a = (lsgan(self.D_A(a), REAL) + lsgan(self.D_A(self.pool_A.query(fake_a, gen)), FAKE)) / 2
        (d_a + d_b).backward()
        losses = {"gan": gan.detach(), "cycle": cyc.detach(), "identity": idt.detach(), "d_a": d_a.detach(),
                  "d_b": d_b.detach()}
        return {**losses, "semantic": sem.detach()} if self.f_S is not None else losses

    def update(self) -> None:
        # 3. Adam steps, then the schedule
        self.run.sync_grads(*self.networks)
        for opt_or_sched in (self.opt_G, self.opt_D, self.sched_G, self.sched_D):
            opt_or_sched.step()

    @torch.no_grad()
    def evaluate(self, dataset, record=None) -> dict:
        """How well a translated image comes back: the cycle L1 over (up to) 8 images of `dataset`
        sent B -> A -> B (the translation has no segmentation metric)."""
        loss = [F.l1_loss(self.G_AB(self.G_BA(x)), x).item()
                for x in (to_unit(dataset[k]["image"][None].to(self.run.device)) for k in range(min(8, len(dataset))))]
        return {"cycle_l1": sum(loss) / len(loss)}


@register("cyclegan", CycleGANConfig)
def cyclegan(run: Run, hp: CycleGANConfig, data: UDAData) -> Step:
    return fit(run, CycleGANStep(run, hp, data), stage="cyclegan", iterations=hp.iterations,
               eval_every=max(hp.iterations // 4, 1))


def train_stage(hp: CycleGANConfig, *, source: str, target: str, data_root: dict, seed: int, device,
                checkpoint_dir: Path) -> tuple[CycleGANStep, list[dict]]:
    """The CycleGAN stage as a run of its own (an artifact's build: UDAS's translated source, MS-UDA's
    fake night) on the datasets `source` -> `target` under `data_root`, checkpointing into
    `checkpoint_dir`, so that a build killed half-way resumes there. Returns the trained step (G_AB
    translates source -> target) and its reports."""
    config = {"method": "cyclegan", "preset": "paper", "seed": seed, "device": str(device), "source": source,
              "target": target, "data_root": data_root, **dataclasses.asdict(hp)}
    session = LocalSession(checkpoint_dir, device=str(device))
    return train_loop(config, session), session.reports


# ---------------------------------------------------------------------------------------
# The stage's output: the translated source, in the source's own layout.


@torch.no_grad()
def write_translated(G_AB: nn.Module, source, out_root: Path, device="cpu") -> int:
    """Translate every image of `source` (a SegmentationDataset loaded at its native size) with G_AB
    and write it under `out_root` at the image's relative path, as PNG under the original name;
    everything else of the source root (labels, split files) is linked in unchanged. Returns the
    number of images written."""
    src_root = Path(source.root)
    link_tree(src_root, out_root, skip={Path(img).resolve() for img, _ in source.files})
    G_AB.eval()
    for k, (img_path, _) in enumerate(source.files):
        x = to_unit(source[k]["image"][None].to(device))
        y = ((G_AB(x)[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        out = out_root / Path(img_path).relative_to(src_root)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_png(y, str(out))
    return len(source.files)
