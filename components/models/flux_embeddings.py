"""FLUX.1's position and conditioning embeddings: 3-axis rotary embeddings of the token ids and the
timestep (+ guidance) + pooled-text vector that modulates every block."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError, ModelInputError
from .embeddings import TimestepEmbedding, Timesteps


def rope_frequencies(ids: torch.Tensor, axes_dim: Sequence[int], theta: float = 10000.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding tables (Su et al. 2021, "RoFormer") for tokens with one position per axis.

    Axis ``a`` of width ``d_a`` rotates pairs of channels by ``pos_a * theta ** (-2i / d_a)``; the axes'
    tables are concatenated, so the head width is ``sum(axes_dim)``. Angles are computed in float64 (float32
    on MPS, which has no float64) because positions reach the thousands.

    Args:
        ids: ``(tokens, axes)`` positions (FLUX: ``(0, row, column)`` for image tokens, zeros for text).
        axes_dim: Channels per axis, each even.
        theta: The base period.

    Returns:
        ``(cos, sin)``, each float32 ``(tokens, sum(axes_dim))``, every value repeated for both channels of a pair.
    """
    if ids.ndim != 2 or ids.shape[-1] != len(axes_dim):
        raise ModelInputError.bad_shape("FluxPosEmbed", "ids", f"(tokens, {len(axes_dim)})", tuple(ids.shape))
    dtype = torch.float32 if ids.device.type == "mps" else torch.float64
    positions = ids.float()
    cos, sin = [], []
    for axis, dim in enumerate(axes_dim):
        exponents = torch.arange(0, dim, 2, dtype=dtype, device=ids.device) / dim
        angles = torch.outer(positions[:, axis].to(dtype), 1.0 / theta**exponents)
        cos.append(angles.cos().repeat_interleave(2, dim=1).float())
        sin.append(angles.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate channel pairs ``(x[2i], x[2i+1])`` of ``x`` ``(batch, tokens, heads, head_dim)`` by the angles
    of :func:`rope_frequencies`; computed in float32, returned in ``x``'s dtype."""
    cos, sin = (table[None, :, None, :].to(x.device) for table in rope)
    real, imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(3)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class FluxPosEmbed(nn.Module):
    """:func:`rope_frequencies` as a module (no weights): ``pos_embed(ids) -> (cos, sin)``."""

    def __init__(self, theta: float, axes_dim: Sequence[int]):
        super().__init__()
        if any(dim % 2 for dim in axes_dim):
            raise ConfigError.bad_value("FluxTransformer2DModel", "axes_dims_rope", "even widths", list(axes_dim))
        self.theta = theta
        self.axes_dim = list(axes_dim)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_frequencies(ids, self.axes_dim, self.theta)


class TextProjection(nn.Module):
    """``linear_2(silu(linear_1(x)))``: the pooled CLIP embedding projected to the model width."""

    def __init__(self, in_features: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden_size)
        self.act_1 = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act_1(self.linear_1(caption)))


class TimestepGuidanceTextEmbedding(nn.Module):
    """The conditioning vector: ``MLP(sin(t)) [+ MLP(sin(g))] + proj(pooled text)``.

    ``t`` and the guidance ``g`` (FLUX.1-dev's distilled guidance scale) are given already multiplied by 1000;
    both use 256 sinusoidal channels, cosines first. Weight names as diffusers' ``time_text_embed``.

    Args:
        embedding_dim: The model width.
        pooled_projection_dim: Width of the pooled text embedding.
        guidance_embeds: Whether there is a ``guidance_embedder`` (dev) or not (schnell).
    """

    def __init__(self, embedding_dim: int, pooled_projection_dim: int, guidance_embeds: bool):
        super().__init__()
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(256, embedding_dim)
        if guidance_embeds:
            self.guidance_embedder = TimestepEmbedding(256, embedding_dim)
        self.text_embedder = TextProjection(pooled_projection_dim, embedding_dim)

    def forward(self, timestep: torch.Tensor, guidance: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
        emb = self.timestep_embedder(self.time_proj(timestep).to(dtype=pooled.dtype))
        if hasattr(self, "guidance_embedder"):
            if guidance is None:
                raise ModelInputError.missing("FluxTransformer2DModel", "guidance",
                                              "the model has a guidance embedding (guidance_embeds=True, FLUX.1-dev)")
            emb = emb + self.guidance_embedder(self.time_proj(guidance).to(dtype=pooled.dtype))
        return emb + self.text_embedder(pooled)
