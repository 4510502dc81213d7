"""The spatial transformer of Stable Diffusion UNets: feature map -> tokens -> transformer blocks -> feature map."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .activations import FeedForward
from .attention import Attention, mask_to_bias


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention ``attn1``, cross-attention ``attn2``, feed-forward ``ff``,
    each ``x = x + sublayer(norm_i(x))``.

    Args:
        dim: Token width.
        num_attention_heads: Heads of both attentions.
        attention_head_dim: Channels per head.
        dropout: Dropout in attentions and feed-forward.
        cross_attention_dim: Width of the encoder states; None for a block without ``attn2``.
        activation_fn: Feed-forward activation (``"geglu"`` in Stable Diffusion).
        attention_bias: Bias in the q/k/v projections.
        only_cross_attention: ``attn1`` attends to the encoder states too.
        double_self_attention: ``attn2`` is a second self-attention.
        upcast_attention: Passed to the attentions.
        norm_elementwise_affine: LayerNorms have weight and bias.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        dropout: float = 0.0,
        cross_attention_dim: int | None = None,
        activation_fn: str = "geglu",
        attention_bias: bool = False,
        only_cross_attention: bool = False,
        double_self_attention: bool = False,
        upcast_attention: bool = False,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.only_cross_attention = only_cross_attention
        attn_kwargs = dict(
            heads=num_attention_heads, dim_head=attention_head_dim, dropout=dropout, bias=attention_bias,
            upcast_attention=upcast_attention,
        )
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        self.attn1 = Attention(dim, cross_attention_dim if only_cross_attention else None, **attn_kwargs)
        if cross_attention_dim is not None or double_self_attention:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
            self.attn2 = Attention(dim, None if double_self_attention else cross_attention_dim, **attn_kwargs)
        else:
            self.norm2 = None
            self.attn2 = None
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        kwargs = cross_attention_kwargs or {}
        context = encoder_hidden_states if self.only_cross_attention else None
        hidden_states = self.attn1(self.norm1(hidden_states), context, attention_mask, **kwargs) + hidden_states
        if self.attn2 is not None:
            normed = self.norm2(hidden_states)
            hidden_states = self.attn2(normed, encoder_hidden_states, encoder_attention_mask, **kwargs) + hidden_states
        return self.ff(self.norm3(hidden_states)) + hidden_states


class Transformer2DModel(nn.Module):
    """GroupNorm, ``proj_in`` (1x1 conv, or linear on tokens with ``use_linear_projection``), a stack of
    :class:`BasicTransformerBlock`, ``proj_out``, plus the input as residual.

    Args:
        num_attention_heads: Heads per attention.
        attention_head_dim: Channels per head; the token width is their product.
        in_channels: Channels of the feature map (and of the output).
        num_layers: Number of transformer blocks.
        dropout: Dropout inside the blocks.
        norm_num_groups: Groups of the input GroupNorm.
        cross_attention_dim: Width of the encoder states.
        use_linear_projection: Project tokens with linears instead of 1x1 convs (SD 2.x, SDXL).
        only_cross_attention, double_self_attention, upcast_attention, attention_bias, activation_fn,
        norm_elementwise_affine, norm_eps: Passed to every block.
    """

    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 88,
        in_channels: int = 320,
        num_layers: int = 1,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        cross_attention_dim: int | None = None,
        use_linear_projection: bool = False,
        only_cross_attention: bool = False,
        double_self_attention: bool = False,
        upcast_attention: bool = False,
        attention_bias: bool = False,
        activation_fn: str = "geglu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=1e-6, affine=True)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, inner_dim)
        else:
            self.proj_in = nn.Conv2d(in_channels, inner_dim, kernel_size=1, stride=1, padding=0)
        block_kwargs = dict(
            dropout=dropout, cross_attention_dim=cross_attention_dim, activation_fn=activation_fn,
            attention_bias=attention_bias, only_cross_attention=only_cross_attention,
            double_self_attention=double_self_attention, upcast_attention=upcast_attention,
            norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps,
        )
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, num_attention_heads, attention_head_dim, **block_kwargs) for _ in range(num_layers)]
        )
        if use_linear_projection:
            self.proj_out = nn.Linear(inner_dim, in_channels)
        else:
            self.proj_out = nn.Conv2d(inner_dim, in_channels, kernel_size=1, stride=1, padding=0)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """``(batch, channels, height, width)`` in and out; masks are ``(batch, keys)`` keep-masks or biases."""
        attention_mask = mask_to_bias(attention_mask, hidden_states.dtype)
        encoder_attention_mask = mask_to_bias(encoder_attention_mask, hidden_states.dtype)
        residual = hidden_states
        tokens = self._to_tokens(hidden_states)
        for block in self.transformer_blocks:
            tokens = block(
                tokens,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cross_attention_kwargs=cross_attention_kwargs,
            )
        return self._to_feature_map(tokens, residual.shape) + residual

    def _to_tokens(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = hidden_states.shape
        hidden_states = self.norm(hidden_states)
        if self.use_linear_projection:
            tokens = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, hidden_states.shape[1])
            return self.proj_in(tokens)
        hidden_states = self.proj_in(hidden_states)
        return hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, hidden_states.shape[1])

    def _to_feature_map(self, tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        batch, _, height, width = shape
        if self.use_linear_projection:
            tokens = self.proj_out(tokens)
            return tokens.reshape(batch, height, width, tokens.shape[-1]).permute(0, 3, 1, 2).contiguous()
        hidden_states = tokens.reshape(batch, height, width, tokens.shape[-1]).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(hidden_states)
