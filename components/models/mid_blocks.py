"""The middle blocks of the UNets and the VAE: ``resnet, (attention, resnet) * num_layers``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .unet_blocks import CrossAttnSpec, ResnetSpec, spatial_attention


class UNetMidBlock2DCrossAttn(nn.Module):
    """Resnet, then ``num_layers`` times a spatial transformer (self- and cross-attention) and a resnet."""

    has_cross_attention = True

    def __init__(self, in_channels: int, resnet: ResnetSpec, cross: CrossAttnSpec, num_layers: int = 1):
        super().__init__()
        self.resnets = nn.ModuleList([resnet.build(in_channels, in_channels) for _ in range(num_layers + 1)])
        self.attentions = nn.ModuleList([cross.build(in_channels, resnet.groups, i) for i in range(num_layers)])

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor | None = None, **context: Any) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, temb)
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            hidden_states = resnet(attention(hidden_states, **context), temb)
        return hidden_states


class UNetMidBlock2D(nn.Module):
    """Resnet, then ``num_layers`` times a pixel self-attention (unless ``add_attention`` is False) and a resnet.

    Args:
        in_channels: Channels in and out.
        resnet: The resnets' configuration.
        num_layers: Number of (attention, resnet) pairs after the first resnet.
        add_attention: Whether the pairs have their attention.
        attention_head_dim: Channels per head (None: one head over all channels).
        attn_groups: Groups of the attention's GroupNorm; None for an attention without one.
    """

    has_cross_attention = False

    def __init__(
        self,
        in_channels: int,
        resnet: ResnetSpec,
        num_layers: int = 1,
        add_attention: bool = True,
        attention_head_dim: int | None = None,
        attn_groups: int | None = None,
    ):
        super().__init__()
        self.add_attention = add_attention
        self.resnets = nn.ModuleList([resnet.build(in_channels, in_channels) for _ in range(num_layers + 1)])
        attentions = [spatial_attention(in_channels, attention_head_dim, resnet, attn_groups) for _ in range(num_layers)]
        self.attentions = nn.ModuleList(attentions if add_attention else [])

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor | None = None, **context: Any) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, temb)
        for index, resnet in enumerate(self.resnets[1:]):
            if self.add_attention:
                hidden_states = self.attentions[index](hidden_states)
            hidden_states = resnet(hidden_states, temb)
        return hidden_states
