"""HRDA (Hoyer, Dai & Van Gool, ECCV 2022): context-aware high-resolution domain adaptation.

DAFormer's self-training loop (methods/daformer.py) with a multi-resolution segmentor:

    1. crop a context window x_c,HR (s·H_c x s·W_c) of the high-resolution image at a random
       position; downsample by s -> the low-resolution context crop x_c
    2. crop a detail window x_d (H_d x W_d) at full resolution inside it, its corner on the grid
       k = s·o of the context window (o = 4, the decoder's output stride)
    3. the same encoder/decoder predicts ŷ_c = f(x_c) and ŷ_d = f(x_d); a scale-attention
       head predicts a_c = σ(f_A(x_c)), set to 0 outside the detail window
    4. fuse:  ŷ_F = ζ((1 - a_c) ⊙ ŷ_c, s) + ζ(a_c, s) ⊙ ŷ_d      (ζ: bilinear upsampling by s)
    5. loss (source and mixed target alike):  (1 - λ_d) CE(ŷ_F, y) + λ_d CE(ŷ_d, y_d)
    6. teacher pseudo labels: LR prediction of the whole context crop fused with HR predictions
       of overlapping detail windows (stride half a window) that cover all of it, averaged and
       fused on the decoder's output grid, then upsampled by o
    7. inference: sliding context windows (stride half) over the full-resolution image, each
       predicted as in 6

`mode` runs the paper's crop-size ablation in the same code: "lr" (context only: the image
at 1/s), "hr" (full resolution only) or "lr+hr" (HRDA). `crop_ratio` scales the context
crop (or the single crop of "lr"/"hr") relative to `crop_size`; the detail crop is
`detail_ratio` of the context crop (HRDA: 1024 context, 512 detail).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from udalab.methods.daformer import DAFormerConfig, dacs, trained_segmentor
from udalab.methods.engine import ConfigError, Prediction, Run, Step, UDAData, register
from udalab.methods.engine import pictures
from udalab.methods.engine.evaluate import slide_inference
from udalab.methods.nets.segformer import EncoderDecoder, SegFormerHead
from udalab.methods.parts.crops import Box, random_box
from udalab.methods.parts.losses import weighted_ce

MODES = ("lr", "hr", "lr+hr")


@dataclasses.dataclass
class HRDAConfig(DAFormerConfig):
    # data at full resolution: GTA5 2560x1440, Cityscapes 2048x1024, 1024x1024 crops (Sec. 4.1)
    source_size: tuple = (2560, 1440)
    target_size: tuple = (2048, 1024)
    crop_size: tuple = (1024, 1024)
    sync_crop: bool = False                # the same crop window on source and target (the crop-size ablation's)
    # multi-resolution (Sec. 3.2-3.4): s = 2, context 1024 -> 512 LR, detail 512, λ_d = 0.1
    mode: str = "lr+hr"
    scale: int = 2
    crop_ratio: float = 1.0                # relative crop size (Fig. 4/5 ablation)
    detail_ratio: float = 0.5              # detail side / context side (512 / 1024)
    hr_loss_weight: float = 0.1            # λ_d
    attention_classwise: bool = True       # one attention map per class (reference default)
    rcs_min_crop_ratio: float = 2.0        # HRDA reference: > 2 x 3000 px of the sampled class in the crop
    pl_margins: tuple = (30, 240, 30, 30)  # pseudo-label margins of the full target image, masked before it
    pl_margins_of: str = "image"           # is cropped (reference crop_pseudo_margins): only border crops lose them
    # evaluation: sliding crop_size windows (1024x1024), stride half, on 2048x1024 Cityscapes val, whatever
    # the training crop (crop_ratio) was: the crop-size ablation changes training, not the test protocol
    eval_size: tuple = (2048, 1024)

    def validate(self) -> None:
        super().validate()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.scale < 1:
            raise ConfigError(f"scale must be >= 1, got {self.scale}")
        if not 0.0 < self.crop_ratio <= 1.0 or not 0.0 < self.detail_ratio <= 1.0:
            raise ConfigError(f"crop_ratio and detail_ratio must be in (0, 1], got {self.crop_ratio}, "
                              f"{self.detail_ratio}")
        if not 0.0 <= self.hr_loss_weight <= 1.0:
            raise ConfigError(f"hr_loss_weight (λ_d) must be in [0, 1], got {self.hr_loss_weight}")
        if self.pl_margins_of not in ("crop", "image"):
            raise ConfigError(f"pl_margins_of must be 'crop' or 'image', got {self.pl_margins_of!r}")

    @property
    def grid(self) -> int:
        return self.scale * EncoderDecoder.output_stride  # k = s·o

    def _on_grid(self, side: float) -> int:
        return max(self.grid, int(round(side / self.grid)) * self.grid)

    def train_crop(self) -> tuple[int, int]:
        """(W, H) of the training crop at full resolution: the context window (or the single crop)."""
        return self._on_grid(self.crop_ratio * self.crop_size[0]), self._on_grid(self.crop_ratio * self.crop_size[1])

    def detail_crop(self) -> tuple[int, int]:
        w, h = self.train_crop()
        return self._on_grid(self.detail_ratio * w), self._on_grid(self.detail_ratio * h)


# The mini data at the paper's geometry / 8: Cityscapes 256x128, GTA 320x180, 128-px context (64 px at
# LR, DAFormer's mini crop), 64-px detail, pseudo-label margins / 8; the rest as DAFormer's mini preset
# (its lr and EMA α measured for HRDA too: records/hrda_lr, records/hrda_ema_alpha).
MINI = dict(backbone="mit_b0", decoder_dim=64, pretrained="standin", source_size=(320, 180), target_size=(256, 128),
            crop_size=(128, 128), batch_size=4, iterations=600, warmup_iters=60, lr=1.2e-3, ema_alpha=0.95,
            eval_every=200, eval_size=(256, 128), fd_lambda=0.0, rcs_min_pixels=50, pl_margins=(4, 30, 4, 4))
SMOKE = {**MINI, "pretrained": "none", "source_size": (80, 48), "target_size": (64, 32), "crop_size": (32, 32), "batch_size": 2,
         "iterations": 4, "warmup_iters": 2, "eval_every": 2, "eval_size": (64, 32), "rcs_min_pixels": 5,
         "pl_margins": (1, 8, 1, 1)}
PRESETS = {"mini": MINI, "smoke": SMOKE}


def detail_box(context_h: int, context_w: int, h: int, w: int, gen: torch.Generator, grid: int) -> Box:
    """A detail window inside the context window, its corner on the grid (step 2). As the reference
    (lhoyer/HRDA mmseg/models/segmentors/hrda_encoder_decoder.py get_crop_bbox), a side with margin m
    offers (m + 1) // grid corners, one fewer than the m // grid + 1 that fit unless m + 1 is a multiple
    of the grid: the reference's off-by-one (1024 context, 512 detail: corners 0..504, not 0..512)."""
    if h > context_h or w > context_w:
        raise ValueError(f"detail crop {w}x{h} does not fit in the {context_w}x{context_h} context crop")
    ny, nx = max((context_h - h + 1) // grid, 1), max((context_w - w + 1) // grid, 1)
    y = int(torch.randint(ny, (), generator=gen)) * grid
    x = int(torch.randint(nx, (), generator=gen)) * grid
    return Box(y, x, h, w)


def fuse(lr_logits: torch.Tensor, attention: torch.Tensor, hr_logits: torch.Tensor, boxes: list[Box] | None,
         scale: int, out_stride: int) -> torch.Tensor:
    """Step 4. lr_logits / attention at the LR output grid (N, C|1, h, w); hr_logits at the HR
    output grid of the detail windows (N, C, h_d, w_d), or of the whole context (boxes=None).
    Attention outside each detail window is set to 0, so there the fused output is ζ(ŷ_c, s)."""
    n, c, h, w = lr_logits.shape
    size = (h * scale, w * scale)
    if boxes is not None:
        mask = torch.zeros_like(attention[:, :1])
        canvas = hr_logits.new_zeros((n, c) + size)
        k = scale * out_stride
        for i, b in enumerate(boxes):
            mask[i, :, b.y // k:(b.y + b.h) // k, b.x // k:(b.x + b.w) // k] = 1
            y0, x0 = b.y // out_stride, b.x // out_stride
            canvas[i, :, y0:y0 + hr_logits.shape[-2], x0:x0 + hr_logits.shape[-1]] = hr_logits[i]
        attention = attention * mask
    else:
        canvas = hr_logits if hr_logits.shape[-2:] == size else F.interpolate(
            hr_logits, size=size, mode="bilinear", align_corners=False)
    up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    return up((1 - attention) * lr_logits) + up(attention) * canvas


def _down(x: torch.Tensor, s: int) -> torch.Tensor:
    return x if s == 1 else F.interpolate(x, scale_factor=1 / s, mode="bilinear", align_corners=False)


def _down_nearest(y: torch.Tensor, s: int) -> torch.Tensor:
    return y if s == 1 else y[..., s // 2::s, s // 2::s]


class HRDASegmentor(nn.Module):
    def __init__(self, hp: HRDAConfig, num_classes: int):
        super().__init__()
        self.hp = hp
        self.net = EncoderDecoder(num_classes, hp.backbone, hp.decoder, hp.pretrained, hp.drop_path_rate,
                                  hp.decoder_dim)
        self.s, self.o, self.mode = hp.scale, EncoderDecoder.output_stride, hp.mode
        self.sync_crop, self.margins_of = hp.sync_crop, hp.pl_margins_of
        if self.mode == "lr+hr":  # HRDA's scale attention: a light SegFormer-style head on the LR features
            self.attention = SegFormerHead(self.net.encoder.dims, num_classes if hp.attention_classwise else 1,
                                           hp.decoder_dim)

    # -- training ---------------------------------------------------------------------------
    def draw(self, n: int, height: int, width: int, gen: torch.Generator):
        if self.mode != "lr+hr":
            return None
        dw, dh = self.hp.detail_crop()
        return [detail_box(height, width, dh, dw, gen, self.hp.grid) for _ in range(n)]

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None, boxes=None) -> dict:
        w = torch.ones_like(y, dtype=torch.float32) if weight is None else weight
        if self.mode == "hr":
            feats = self.net.features(x)
            return {"loss": weighted_ce(self.net.decoder(feats), y, w), "feat": feats[-1], "fd_image": x,
                    "fd_label": y}
        xc, yc = _down(x, self.s), _down_nearest(y, self.s)
        feats = self.net.features(xc)
        lr = self.net.decoder(feats)
        out = {"feat": feats[-1], "fd_image": xc, "fd_label": y}  # FD cells from the full label (reference)
        if self.mode == "lr":
            out["loss"] = weighted_ce(lr, yc, _down_nearest(w, self.s))
            return out
        att = torch.sigmoid(self.attention(feats))
        xd = torch.stack([x[i, :, b.y:b.y + b.h, b.x:b.x + b.w] for i, b in enumerate(boxes)])
        yd = torch.stack([y[i, b.y:b.y + b.h, b.x:b.x + b.w] for i, b in enumerate(boxes)])
        wd = torch.stack([w[i, b.y:b.y + b.h, b.x:b.x + b.w] for i, b in enumerate(boxes)])
        hr = self.net(xd)
        fused = fuse(lr, att, hr, boxes, self.s, self.o)
        lam = self.hp.hr_loss_weight
        out["loss"] = (1 - lam) * weighted_ce(fused, y, w) + lam * weighted_ce(hr, yd, wd)
        return out

    # -- prediction (teacher pseudo labels, evaluation windows) -----------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at x's full resolution: steps 6/7 for "lr+hr"; one pass for "lr"/"hr". As the reference
        (hrda_encoder_decoder.py encode_decode, hrda_head.py forward), the HR windows are averaged, and
        fused with the LR logits and the attention, on the decoder's output grid (stride o of x); only
        the fused map is upsampled to x."""
        size = x.shape[-2:]
        up = lambda t: F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)  # noqa: E731
        if self.mode == "hr":
            return up(self.net(x))
        xc = _down(x, self.s)
        feats = self.net.features(xc)
        lr = self.net.decoder(feats)
        if self.mode == "lr":
            return up(lr)
        att = torch.sigmoid(self.attention(feats)).float()
        dw, dh = self.hp.detail_crop()
        hr = slide_inference(lambda t: self.net(t).float(), x, lr.shape[1], window=(dh, dw),
                             stride=(max(dh // 2, 1), max(dw // 2, 1)), out_stride=self.o)
        return up(fuse(lr.float(), att, hr, None, self.s, self.o))

    def crop_picture(self, image: torch.Tensor) -> np.ndarray:
        """The training crops of steps 1-2 drawn on a target image at the training target size: the
        context window (or "lr"/"hr"'s single crop) in yellow, the detail window inside it in red."""
        hp, gen = self.hp, torch.Generator().manual_seed(0)
        x = F.interpolate(image[None].float(), size=tuple(hp.target_size[::-1]), mode="bilinear", align_corners=False)
        pic = pictures.image_picture(x[0]).copy()
        cw, ch = hp.train_crop()
        context = random_box(pic.shape[0], pic.shape[1], min(ch, pic.shape[0]), min(cw, pic.shape[1]), gen)
        boxes = [(context, (255, 220, 0))]
        if self.mode == "lr+hr":
            dw, dh = hp.detail_crop()
            inner = detail_box(context.h, context.w, dh, dw, gen, hp.grid)
            boxes.append((Box(context.y + inner.y, context.x + inner.x, inner.h, inner.w), (230, 30, 30)))
        for b, colour in boxes:   # 2-px outlines
            pic[b.y:b.y + 2, b.x:b.x + b.w] = pic[b.y + b.h - 2:b.y + b.h, b.x:b.x + b.w] = colour
            pic[b.y:b.y + b.h, b.x:b.x + 2] = pic[b.y:b.y + b.h, b.x + b.w - 2:b.x + b.w] = colour
        return pic

    def scale_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The scale attention a of step 6 (the HR share of each pixel, classes averaged) at the LR grid."""
        return torch.sigmoid(self.attention(self.net.features(_down(x, self.s)))).float().mean(1, keepdim=True)

    def prediction(self, hp: HRDAConfig, num_classes: int) -> Prediction:
        """Step 7: sliding context windows of crop_size (stride half) over the image at eval_size; the test
        window does not follow the training crop (crop_ratio)."""
        w, h = hp.crop_size
        return Prediction(self.predict, num_classes, input_size=hp.eval_size, window=(h, w), stride=(h // 2, w // 2),
                          modules=(self,))


@register("hrda", HRDAConfig, PRESETS, trained=trained_segmentor(HRDASegmentor))
def hrda(run: Run, hp: HRDAConfig, data: UDAData) -> Step:
    return dacs(run, hp, data, HRDASegmentor(hp, data.num_classes))
