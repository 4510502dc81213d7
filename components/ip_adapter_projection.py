"""IP-Adapter image projections: CLIP image features -> tokens the UNet's cross-attention can read.

Two kinds, as in the IP-Adapter checkpoints (Ye et al., 2023, arXiv:2308.06721):

- :class:`ImageProjection` (``ip-adapter_sd15.bin``, ``ip-adapter_sdxl.bin``): the pooled, projected CLIP
  image embedding through one linear layer, split into ``num_tokens`` tokens, then a LayerNorm.
- :class:`IPAdapterPlusImageProjection` (the "plus" adapters): a Perceiver resampler (Jaegle et al., 2021)
  whose learned latent queries attend to the CLIP vision encoder's penultimate hidden states.

Module and weight names are diffusers' (``image_embeds``/``norm``; ``latents``, ``proj_in``,
``layers.<i>.{ln0,ln1,attn,ff}``, ``proj_out``, ``norm_out``), so a UNet with an adapter loaded has the
state dict diffusers gives it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import AdapterError
from .models.activations import FeedForward
from .models.attention import Attention


class ImageProjection(nn.Module):
    """``LayerNorm(Linear(image_embeds).reshape(batch, num_tokens, cross_attention_dim))``.

    Args:
        image_embed_dim: Width of the CLIP image embedding (the vision model's ``projection_dim``).
        cross_attention_dim: Width of the tokens (the UNet's ``cross_attention_dim``).
        num_tokens: Tokens made from one image embedding.
    """

    image_features = "image_embeds"  # what the image encoder must give: its pooled, projected output

    def __init__(self, image_embed_dim: int, cross_attention_dim: int, num_tokens: int = 4):
        super().__init__()
        self.num_tokens = num_tokens
        self.image_embeds = nn.Linear(image_embed_dim, num_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """``(batch, image_embed_dim)`` -> ``(batch, num_tokens, cross_attention_dim)``."""
        tokens = self.image_embeds(image_embeds.to(self.image_embeds.weight.dtype))
        return self.norm(tokens.reshape(image_embeds.shape[0], self.num_tokens, -1))


class ResamplerBlock(nn.Module):
    """One Perceiver layer: the latents attend to ``[features; latents]``, then a pre-norm GELU MLP."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 16, ffn_ratio: int = 4):
        super().__init__()
        self.ln0 = nn.LayerNorm(dim)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads=heads, dim_head=dim_head, out_bias=False)
        self.ff = nn.Sequential(nn.LayerNorm(dim), FeedForward(dim, mult=ffn_ratio, activation_fn="gelu", bias=False))

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        normed = self.ln1(latents)
        context = torch.cat([self.ln0(features), normed], dim=-2)
        latents = self.attn(normed, context) + latents
        return self.ff(latents) + latents


class IPAdapterPlusImageProjection(nn.Module):
    """The resampler of IP-Adapter Plus: ``num_tokens`` learned queries read the image's hidden states.

    Args:
        embed_dims: Width of the vision encoder's hidden states.
        output_dims: Width of the tokens (the UNet's ``cross_attention_dim``).
        hidden_dims: Width inside the resampler (of the latents).
        depth: Number of :class:`ResamplerBlock` layers.
        dim_head: Channels per attention head.
        heads: Attention heads.
        num_tokens: Number of latent queries, i.e. tokens per image.
        ffn_ratio: MLP inner width as a multiple of ``hidden_dims``.
    """

    image_features = "hidden_states"  # the vision encoder's penultimate hidden states

    def __init__(self, embed_dims: int, output_dims: int, hidden_dims: int, depth: int = 4, dim_head: int = 64,
                 heads: int = 16, num_tokens: int = 16, ffn_ratio: int = 4):
        super().__init__()
        self.num_tokens = num_tokens
        self.latents = nn.Parameter(torch.randn(1, num_tokens, hidden_dims) / hidden_dims**0.5)
        self.proj_in = nn.Linear(embed_dims, hidden_dims)
        self.proj_out = nn.Linear(hidden_dims, output_dims)
        self.norm_out = nn.LayerNorm(output_dims)
        self.layers = nn.ModuleList([ResamplerBlock(hidden_dims, dim_head, heads, ffn_ratio) for _ in range(depth)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(batch, sequence, embed_dims)`` -> ``(batch, num_tokens, output_dims)``."""
        latents = self.latents.repeat(hidden_states.shape[0], 1, 1)
        features = self.proj_in(hidden_states)
        for layer in self.layers:
            latents = layer(features, latents)
        return self.norm_out(self.proj_out(latents))


class MultiIPAdapterImageProjection(nn.Module):
    """The UNet's ``encoder_hid_proj`` while IP-Adapters are loaded: one projection per adapter.

    ``forward`` takes one tensor per adapter, ``(batch, images, features...)`` (features: ``(dim,)`` for
    :class:`ImageProjection`, ``(sequence, dim)`` for the resampler) and returns one
    ``(batch, images, tokens, cross_attention_dim)`` tensor per adapter.
    """

    def __init__(self, projections: Sequence[nn.Module]):
        super().__init__()
        self.image_projection_layers = nn.ModuleList(projections)

    @property
    def num_ip_adapters(self) -> int:
        return len(self.image_projection_layers)

    def forward(self, image_embeds: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        if isinstance(image_embeds, torch.Tensor):
            image_embeds = [image_embeds]
        if len(image_embeds) != len(self.image_projection_layers):
            raise AdapterError.wrong_count(type(self).__name__, "image-embedding tensors", len(image_embeds),
                                           self.num_ip_adapters)
        projected = []
        for embeds, projection in zip(image_embeds, self.image_projection_layers):
            batch, images = embeds.shape[:2]
            dtype = next(projection.parameters()).dtype
            tokens = projection(embeds.reshape(batch * images, *embeds.shape[2:]).to(dtype))
            projected.append(tokens.reshape(batch, images, *tokens.shape[1:]))
        return projected
