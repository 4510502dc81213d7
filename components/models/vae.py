"""The convolutional encoder and decoder of the KL autoencoder, and their blocks."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .activations import get_activation
from .mid_blocks import UNetMidBlock2D
from .resnet import Downsample2D, Upsample2D
from .unet_blocks import ResnetSpec


class DownEncoderBlock2D(nn.Module):
    """``num_layers`` resnets without time embedding, then (``add_downsample``) a stride-2 conv."""

    def __init__(self, in_channels, out_channels, resnet: ResnetSpec, num_layers=1, add_downsample=True, downsample_padding=1):
        super().__init__()
        self.resnets = nn.ModuleList(
            [resnet.build(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)]
        )
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, True, out_channels, padding=downsample_padding)]) if add_downsample else None
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, None)
        for downsampler in self.downsamplers or ():
            hidden_states = downsampler(hidden_states)
        return hidden_states


class UpDecoderBlock2D(nn.Module):
    """``num_layers`` resnets without skip connections, then (``add_upsample``) nearest 2x + conv."""

    def __init__(self, in_channels, out_channels, resnet: ResnetSpec, num_layers=1, add_upsample=True, resolution_idx=None):
        super().__init__()
        self.resolution_idx = resolution_idx
        self.resnets = nn.ModuleList(
            [resnet.build(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)]
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, True, out_channels)]) if add_upsample else None

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, temb)
        for upsampler in self.upsamplers or ():
            hidden_states = upsampler(hidden_states)
        return hidden_states


def _check_types(owner: str, key: str, types: Sequence[str], allowed: str) -> None:
    for name in types:
        if name != allowed:
            raise ConfigError.bad_value(owner, key, f"only '{allowed}' entries", list(types))


class Encoder(nn.Module):
    """Image -> ``2 * out_channels`` moments (mean and log-variance) at 1 / 2**(len(blocks) - 1) resolution.

    Args:
        in_channels: Image channels.
        out_channels: Latent channels (the output has twice as many with ``double_z``).
        down_block_types: ``"DownEncoderBlock2D"`` per level.
        block_out_channels: Channels per level.
        layers_per_block: Resnets per level.
        norm_num_groups: GroupNorm groups.
        act_fn: Activation name.
        double_z: Output mean and log-variance.
        mid_block_add_attention: Whether the mid-block has its self-attention.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Sequence[str] = ("DownEncoderBlock2D",),
        block_out_channels: Sequence[int] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        double_z: bool = True,
        mid_block_add_attention: bool = True,
    ):
        super().__init__()
        _check_types("AutoencoderKL", "down_block_types", down_block_types, "DownEncoderBlock2D")
        resnet = ResnetSpec(None, eps=1e-6, groups=norm_num_groups, act_fn=act_fn)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, stride=1, padding=1)
        last = len(block_out_channels) - 1
        self.down_blocks = nn.ModuleList([
            DownEncoderBlock2D(block_out_channels[max(i - 1, 0)], channels, resnet, num_layers=layers_per_block,
                               add_downsample=i < last, downsample_padding=0)
            for i, channels in enumerate(block_out_channels)
        ])
        self.mid_block = UNetMidBlock2D(
            block_out_channels[-1], resnet, add_attention=mid_block_add_attention,
            attention_head_dim=block_out_channels[-1], attn_groups=norm_num_groups,
        )
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[-1], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[-1], 2 * out_channels if double_z else out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        sample = self.conv_in(sample)
        for block in self.down_blocks:
            sample = block(sample)
        sample = self.mid_block(sample)
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


class Decoder(nn.Module):
    """Latents -> image, mirroring :class:`Encoder` (``up_block_types``: ``"UpDecoderBlock2D"`` per level,
    each with ``layers_per_block + 1`` resnets)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        up_block_types: Sequence[str] = ("UpDecoderBlock2D",),
        block_out_channels: Sequence[int] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        mid_block_add_attention: bool = True,
    ):
        super().__init__()
        _check_types("AutoencoderKL", "up_block_types", up_block_types, "UpDecoderBlock2D")
        resnet = ResnetSpec(None, eps=1e-6, groups=norm_num_groups, act_fn=act_fn)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[-1], kernel_size=3, stride=1, padding=1)
        self.up_blocks = nn.ModuleList()  # registered before the mid block, in diffusers' module order
        self.mid_block = UNetMidBlock2D(
            block_out_channels[-1], resnet, add_attention=mid_block_add_attention,
            attention_head_dim=block_out_channels[-1], attn_groups=norm_num_groups,
        )
        rev = list(reversed(block_out_channels))
        self.up_blocks.extend([
            UpDecoderBlock2D(rev[max(i - 1, 0)], channels, resnet, num_layers=layers_per_block + 1,
                             add_upsample=i < len(rev) - 1, resolution_idx=i)
            for i, channels in enumerate(rev)
        ])
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = get_activation("silu")
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        sample = self.mid_block(self.conv_in(sample))
        for block in self.up_blocks:
            sample = block(sample)
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))
