"""SegFormer's Mix Transformer (MiT-B0 … B5) encoder, and its ImageNet checkpoints' key names.

MiT (Xie et al., NeurIPS 2021, Sec. 3.1 and Table 6): four stages of overlapping patch
embeddings (7x7 stride 4, then 3x3 stride 2), efficient self-attention whose keys and
values come from a spatially reduced map (reduction ratios 8, 4, 2, 1), and Mix-FFN
(a 3x3 depthwise convolution between the two linear layers). Output strides 4, 8, 16, 32.

Written for speed rather than taken from Hugging Face transformers (benchmarks/hrda_step.py times
both): attention is one `scaled_dot_product_attention` call (flash / memory-efficient kernels),
q and kv are single matmuls, tokens stay in (B, N, C) between the stages' norms, and the patch /
depthwise convolutions run channels-last. `convert_mit_state` maps the release checkpoints' key
names (mmseg's mit_bX.pth, Hugging Face's nvidia/mit-bX) to ours; methods/nets/weights.py finds and reads them.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

# Xie et al. 2021, Table 6 (and the released mit_b0 … mit_b5 configs).
MIT_DEPTHS = {"b0": (2, 2, 2, 2), "b1": (2, 2, 2, 2), "b2": (3, 4, 6, 3), "b3": (3, 4, 18, 3),
              "b4": (3, 8, 27, 3), "b5": (3, 6, 40, 3)}
MIT_DIMS = {"b0": (32, 64, 160, 256), **{b: (64, 128, 320, 512) for b in ("b1", "b2", "b3", "b4", "b5")}}
MIT_HEADS = (1, 2, 5, 8)
MIT_SR = (8, 4, 2, 1)
MIT_MLP_RATIO = 4


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016), as in the MiT configs (rate 0.1)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: strided conv, then LayerNorm over channels."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, kernel, stride, kernel // 2)
        self.norm = nn.LayerNorm(cout, eps=1e-5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientAttention(nn.Module):
    """Multi-head self-attention with keys/values from a map reduced by `sr` (SDPA kernel)."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.heads, self.sr = heads, sr
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr > 1:
            self.sr_conv = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        if self.sr > 1:
            m = x.transpose(1, 2).reshape(b, c, h, w)
            if h % self.sr or w % self.sr:  # maps smaller than / not divisible by sr (tiny crops): zero-pad
                m = F.pad(m, (0, -w % self.sr, 0, -h % self.sr))
            x = self.norm(self.sr_conv(m).flatten(2).transpose(1, 2))
        k, v = self.kv(x).view(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * MIT_MLP_RATIO)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class Stage(nn.Module):
    def __init__(self, cin: int, dim: int, depth: int, heads: int, sr: int, first: bool, drop_paths: list[float]):
        super().__init__()
        self.patch_embed = PatchEmbed(cin, dim, 7 if first else 3, 4 if first else 2)
        self.blocks = nn.ModuleList(Block(dim, heads, sr, dp) for dp in drop_paths)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x, h, w)
        return self.norm(x).transpose(1, 2).reshape(x.shape[0], -1, h, w)


class MiT(nn.Module):
    """Mix Transformer encoder; forward returns the four stage outputs (strides 4, 8, 16, 32)."""

    def __init__(self, variant: str = "b5", in_channels: int = 3, drop_path_rate: float = 0.1):
        super().__init__()
        if variant not in MIT_DEPTHS:
            raise ValueError(f"unknown MiT variant {variant!r}; use one of {', '.join(MIT_DEPTHS)}")
        self.variant = variant
        depths, dims = MIT_DEPTHS[variant], MIT_DIMS[variant]
        self.dims = dims
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # a list, also under a meta device
        stages, cin, k = [], in_channels, 0
        for i in range(4):
            stages.append(Stage(cin, dims[i], depths[i], MIT_HEADS[i], MIT_SR[i], i == 0, rates[k:k + depths[i]]))
            cin, k = dims[i], k + depths[i]
        self.stages = nn.ModuleList(stages)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _init_weights(m: nn.Module) -> None:
    # the SegFormer release's init: truncated normal 0.02 for linear layers, fan-out normal for convs
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------
# ImageNet weights: the release files (mmseg names) or Hugging Face's nvidia/mit-bX (HF names).


def _from_mmseg(key: str) -> str | None:
    """mmseg / DAFormer release names (patch_embed1.proj, block1.0.attn.q, norm1) -> ours."""
    if m := re.fullmatch(r"patch_embed(\d)\.(proj|norm)\.(weight|bias)", key):
        return f"stages.{int(m[1]) - 1}.patch_embed.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"block(\d)\.(\d+)\.(.*)", key):
        rest = m[3].replace("attn.sr.", "attn.sr_conv.")
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{rest}"
    if m := re.fullmatch(r"norm(\d)\.(weight|bias)", key):
        return f"stages.{int(m[1]) - 1}.norm.{m[2]}"
    return None


# Hugging Face names, as in the hub's checkpoint files (transformers 4) and in memory (transformers 5).
_HF_BLOCK = {"layer_norm_1": "norm1", "layernorm_before": "norm1", "layer_norm_2": "norm2",
             "layernorm_after": "norm2", "attention.self.query": "attn.q", "attention.q_proj": "attn.q",
             "attention.self.sr": "attn.sr_conv", "attention.sequence_reduction.sequence_reduction": "attn.sr_conv",
             "attention.self.layer_norm": "attn.norm", "attention.sequence_reduction.layer_norm": "attn.norm",
             "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj", "mlp.dense1": "mlp.fc1",
             "mlp.fc1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv", "mlp.dense2": "mlp.fc2", "mlp.fc2": "mlp.fc2"}
_HF_KV = {"attention.self.key": "key", "attention.k_proj": "key", "attention.self.value": "value",
          "attention.v_proj": "value"}


def _from_hf(state: dict) -> dict:
    """Hugging Face SegformerModel names -> ours (separate key/value are merged into kv)."""
    out, kv = {}, {}
    for key, value in state.items():
        key = key.removeprefix("segformer.").removeprefix("encoder.")
        if m := re.fullmatch(r"(?:patch_embeddings\.(\d)|stages\.(\d)\.patch_embeddings)\.(proj|layer_norm)\.(weight|bias)",
                             key):
            out[f"stages.{m[1] or m[2]}.patch_embed.{'proj' if m[3] == 'proj' else 'norm'}.{m[4]}"] = value
        elif m := re.fullmatch(r"(?:layer_norm\.(\d)|stages\.(\d)\.layer_norm)\.(weight|bias)", key):
            out[f"stages.{m[1] or m[2]}.norm.{m[3]}"] = value
        elif m := re.fullmatch(r"(?:block\.(\d)\.(\d+)|stages\.(\d)\.blocks\.(\d+))\.(.*)\.(weight|bias)", key):
            p = f"stages.{m[1] or m[3]}.blocks.{m[2] or m[4]}."
            name, kind = m[5], m[6]
            if name in _HF_KV:
                kv.setdefault((p, kind), {})[_HF_KV[name]] = value
            elif name in _HF_BLOCK:
                out[f"{p}{_HF_BLOCK[name]}.{kind}"] = value
    for (p, kind), parts in kv.items():
        out[f"{p}attn.kv.{kind}"] = torch.cat([parts["key"], parts["value"]], 0)
    return out


def convert_mit_state(state: dict) -> dict:
    """A MiT ImageNet checkpoint in either published naming, or in this module's own, as this module's state dict."""
    state = state.get("state_dict", state.get("model", state))
    if any(k.startswith(("segformer.", "encoder.", "patch_embeddings.")) or ".patch_embeddings." in k for k in state):
        return _from_hf(state)
    if any(k.startswith("stages.0.patch_embed.") for k in state):   # saved from this module (or a stand-in)
        return dict(state)
    out = {}
    for k, v in state.items():
        new = _from_mmseg(k.removeprefix("backbone."))
        if new is not None:
            out[new.replace("mlp.dwconv.dwconv", "mlp.dwconv")] = v
    return out
