"""Our UNet (src/model/unet.{h,cpp}, unet_blocks.{h,cpp}) in torch's Python, for `ddpm compile`.

torch.export and AOTInductor take a Python module; this is the same network, layer for layer
and with the same parameter names (diffusers' UNet2DModel layout), built from the model and data
sections of our config. It loads the state dict `ddpm compile` hands over without renaming. The
C++ UNet stays the one we train and sample eagerly; tests compare a compiled package's images
with it (tests/compile_package_check.py).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t, dim, shift, cos_first):
    """The sinusoid of src/model/unet_blocks.cpp: exp(-ln(10000) i / (dim/2 - shift))."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) * -math.log(10000.0)
    exponent = exponent / (float(half) - shift)
    angles = t.to(torch.float32).unsqueeze(1) * torch.exp(exponent).unsqueeze(0)
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.cat([cos, sin], 1) if cos_first else torch.cat([sin, cos], 1)


class TimestepEmbedding(nn.Module):
    def __init__(self, channels, embedding_channels):
        super().__init__()
        self.linear_1 = nn.Linear(channels, embedding_channels)
        self.linear_2 = nn.Linear(embedding_channels, embedding_channels)

    def forward(self, sinusoid):
        return self.linear_2(F.silu(self.linear_1(sinusoid)))


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels, embedding_channels, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(embedding_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = None
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))  # dropout: sampling runs in eval mode
        return h + (self.conv_shortcut(x) if self.conv_shortcut is not None else x)


class AttentionBlock(nn.Module):
    def __init__(self, channels, heads, groups, eps):
        super().__init__()
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x):
        batch, channels, height, width = x.shape
        sequence = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, N, C]

        def split_heads(t):
            return t.view(batch, height * width, self.heads, channels // self.heads).transpose(1, 2)

        q = split_heads(self.to_q(sequence))
        k = split_heads(self.to_k(sequence))
        v = split_heads(self.to_v(sequence))
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(batch, height * width, channels)
        out = self.to_out[0](attended)
        return out.transpose(1, 2).reshape(batch, channels, height, width) + x


class Downsample(nn.Module):
    def __init__(self, channels, symmetric):
        super().__init__()
        self.symmetric = symmetric
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1 if symmetric else 0)

    def forward(self, x):
        return self.conv(x if self.symmetric else F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """A down or up block: resnets, attentions after each where configured, a resampler."""

    def __init__(self):
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()


def image_shape(data):
    """[channels, height, width] of the config's data section (image_size: N or [H, W])."""
    size = data["image_size"]
    height, width = (size, size) if isinstance(size, int) else size
    return [data["channels"], height, width]


def attention_heads(model, width):
    """config.cpp's attention_heads_at."""
    head_channels = model.get("attention_head_channels", 0)
    return width // head_channels if head_channels > 0 else model.get("attention_heads", 1)


class UNet(nn.Module):
    """forward(x [B, C, H, W] float32, t [B] float32, labels [B] int64 for a conditional model)."""

    def __init__(self, model, data):
        super().__init__()
        base = model["base_channels"]
        embedding_channels = 4 * base
        mult = model["channel_mult"]
        groups, eps = model["norm_groups"], model["norm_eps"]
        self.base_channels = base
        self.shift = float(model.get("time_embedding_shift", 1.0))
        self.cos_first = model.get("time_embedding_order", "sin_cos") == "cos_sin"
        self.num_classes = model.get("num_classes", 0)
        symmetric = model.get("downsample_padding", "asymmetric") == "symmetric"
        channels_in, height, width = image_shape(data)
        shorter = min(height, width)

        def has_attention(level):
            return (shorter >> level) in model["attention_resolutions"]

        def resnet(in_channels, out_channels):
            return ResnetBlock(in_channels, out_channels, embedding_channels, groups, eps)

        def attention(channels):
            return AttentionBlock(channels, attention_heads(model, channels), groups, eps)

        self.time_embedding = TimestepEmbedding(base, embedding_channels)
        self.conv_in = nn.Conv2d(channels_in, base, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        skips, channels = [base], base
        for level, factor in enumerate(mult):
            block = Level()
            for _ in range(model["num_res_blocks"]):
                block.resnets.append(resnet(channels, base * factor))
                channels = base * factor
                if has_attention(level):
                    block.attentions.append(attention(channels))
                skips.append(channels)
            if level + 1 < len(mult):
                block.downsamplers = nn.ModuleList([Downsample(channels, symmetric)])
                skips.append(channels)
            self.down_blocks.append(block)
        self.mid_block = Level()
        self.mid_block.resnets.extend([resnet(channels, channels), resnet(channels, channels)])
        self.mid_block.attentions.append(attention(channels))
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(mult))):
            block = Level()
            for _ in range(model["num_res_blocks"] + 1):
                block.resnets.append(resnet(channels + skips.pop(), base * mult[level]))
                channels = base * mult[level]
                if has_attention(level):
                    block.attentions.append(attention(channels))
            if level > 0:
                block.upsamplers = nn.ModuleList([Upsample(channels)])
            self.up_blocks.append(block)
        self.conv_norm_out = nn.GroupNorm(groups, channels, eps=eps)
        out_channels = channels_in * (2 if model.get("learn_variance", False) else 1)
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)
        if self.num_classes > 0:
            self.class_embedding = nn.Embedding(self.num_classes + 1, embedding_channels)

    def forward(self, x, t, labels=None):
        sinusoid = timestep_embedding(t, self.base_channels, self.shift, self.cos_first)
        temb = self.time_embedding(sinusoid.to(self.conv_in.weight.dtype))
        if self.num_classes > 0:
            temb = temb + self.class_embedding(labels)
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            for i, resnet in enumerate(block.resnets):
                h = resnet(h, temb)
                if len(block.attentions):
                    h = block.attentions[i](h)
                skips.append(h)
            if hasattr(block, "downsamplers"):
                h = block.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, temb)
        h = self.mid_block.attentions[0](h)
        h = self.mid_block.resnets[1](h, temb)
        for block in self.up_blocks:
            for i, resnet in enumerate(block.resnets):
                h = resnet(torch.cat([h, skips.pop()], 1), temb)
                if len(block.attentions):
                    h = block.attentions[i](h)
            if hasattr(block, "upsamplers"):
                h = block.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
