"""Timestep and class embeddings of the UNets."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, ModelInputError
from .activations import get_activation


def timestep_embedding(
    timesteps: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    scale: float = 1.0,
    max_period: int = 10000,
) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in DDPM (Ho et al. 2020) and the
    Transformer (Vaswani et al. 2017): ``[sin(t * f_i), cos(t * f_i)]`` with
    ``f_i = max_period ** (-i / (dim / 2 - downscale_freq_shift))``.

    Args:
        timesteps: 1-D tensor, one timestep per batch element.
        dim: Embedding width; an odd width is zero-padded.
        flip_sin_to_cos: Put the cosines first.
        downscale_freq_shift: The shift in the frequency exponent's denominator.
        scale: Multiplies ``t * f_i``.
        max_period: The slowest period.

    Returns:
        A float32 tensor ``(len(timesteps), dim)``.
    """
    if timesteps.ndim != 1:
        raise ModelInputError.bad_shape("timestep embedding", "timesteps", "1-D", timesteps.shape)
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))
    angles = scale * (timesteps[:, None].float() * freqs[None, :])
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    """:func:`timestep_embedding` as a module (no weights)."""

    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float, scale: float = 1):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift
        self.scale = scale

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(
            timesteps, self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift, self.scale
        )


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a noise level (Tancik et al. 2020; used by score SDE models):
    ``[sin(2 pi x w), cos(2 pi x w)]`` with fixed random ``w`` (the ``weight`` parameter), of ``log(x)`` when
    ``log`` is set."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0, log: bool = True, flip_sin_to_cos: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)
        self.log = log
        self.flip_sin_to_cos = flip_sin_to_cos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log:
            x = torch.log(x)
        x_proj = x[:, None] * self.weight[None, :] * 2 * math.pi
        parts = [torch.cos(x_proj), torch.sin(x_proj)] if self.flip_sin_to_cos else [torch.sin(x_proj), torch.cos(x_proj)]
        return torch.cat(parts, dim=-1)


class TimestepEmbedding(nn.Module):
    """The MLP on top of the sinusoidal features: ``linear_2(act(linear_1(x + cond_proj(c))))``.

    Args:
        in_channels: Width of the sinusoidal features.
        time_embed_dim: Hidden (and default output) width.
        act_fn: Activation between the two linears.
        out_dim: Output width when it differs from ``time_embed_dim``.
        post_act_fn: Optional activation after ``linear_2``.
        cond_proj_dim: Width of an optional condition (LCM's guidance embedding) projected and added to the input.
    """

    def __init__(
        self,
        in_channels: int,
        time_embed_dim: int,
        act_fn: str = "silu",
        out_dim: int | None = None,
        post_act_fn: str | None = None,
        cond_proj_dim: int | None = None,
    ):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.cond_proj = nn.Linear(cond_proj_dim, in_channels, bias=False) if cond_proj_dim is not None else None
        self.act = get_activation(act_fn)
        self.linear_2 = nn.Linear(time_embed_dim, out_dim if out_dim is not None else time_embed_dim)
        self.post_act = get_activation(post_act_fn) if post_act_fn is not None else None

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            sample = sample + self.cond_proj(condition)
        sample = self.linear_2(self.act(self.linear_1(sample)))
        return self.post_act(sample) if self.post_act is not None else sample


def make_class_embedding(
    class_embed_type: str | None,
    num_class_embeds: int | None,
    projection_dim: int | None,
    time_embed_dim: int,
    timestep_input_dim: int,
    act_fn: str = "silu",
) -> nn.Module | None:
    """The class-label embedding a UNet config asks for, or None.

    ``class_embed_type``: None (a learned ``nn.Embedding`` when ``num_class_embeds`` is set), ``"timestep"``,
    ``"identity"``, ``"projection"`` or ``"simple_projection"`` (the last two need ``projection_dim``).
    """
    if class_embed_type is None:
        return nn.Embedding(num_class_embeds, time_embed_dim) if num_class_embeds is not None else None
    if class_embed_type == "timestep":
        return TimestepEmbedding(timestep_input_dim, time_embed_dim, act_fn=act_fn)
    if class_embed_type == "identity":
        return nn.Identity()
    if class_embed_type in ("projection", "simple_projection") and projection_dim is None:
        raise ConfigError.bad_value(
            "UNet", "projection_class_embeddings_input_dim", f"an int with class_embed_type={class_embed_type!r}", None
        )
    if class_embed_type == "projection":
        return TimestepEmbedding(projection_dim, time_embed_dim)
    if class_embed_type == "simple_projection":
        return nn.Linear(projection_dim, time_embed_dim)
    raise ConfigError.bad_value(
        "UNet", "class_embed_type", "None, 'timestep', 'identity', 'projection' or 'simple_projection'", class_embed_type
    )
