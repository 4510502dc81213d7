"""The down and up blocks of the UNets: resnets, optionally each followed by an attention, then a resampler.

A block's layout is described by small specs (:class:`ResnetSpec`, :class:`CrossAttnSpec`) so that the
UNet, the ControlNet and the VAE build the same blocks from their configs. Every block's ``forward`` takes
the same keywords (``temb``, ``encoder_hidden_states``, ``attention_mask``, ``encoder_attention_mask``,
``cross_attention_kwargs``); blocks without cross-attention ignore the cross-attention ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .attention import SpatialSelfAttention
from .freeu import FreeU
from .resnet import Downsample2D, ResnetBlock2D, Upsample2D
from .transformer_2d import Transformer2DModel


@dataclass(frozen=True)
class ResnetSpec:
    """How a block's :class:`ResnetBlock2D` layers are configured (all but their channel counts)."""

    temb_channels: int | None
    eps: float = 1e-6
    groups: int = 32
    act_fn: str = "silu"
    dropout: float = 0.0
    time_embedding_norm: str = "default"
    output_scale_factor: float = 1.0

    def build(self, in_channels: int, out_channels: int, **overrides: Any) -> ResnetBlock2D:
        """A resnet mapping ``in_channels`` to ``out_channels``."""
        kwargs = dict(
            temb_channels=self.temb_channels, groups=self.groups, eps=self.eps, dropout=self.dropout,
            act_fn=self.act_fn, time_embedding_norm=self.time_embedding_norm,
            output_scale_factor=self.output_scale_factor,
        )
        kwargs.update(overrides)
        return ResnetBlock2D(in_channels, out_channels, **kwargs)


@dataclass(frozen=True)
class CrossAttnSpec:
    """How a block's :class:`Transformer2DModel` layers are configured.

    ``transformer_layers`` is the number of transformer blocks per attention, one int for all or one per
    resnet of the block.
    """

    num_attention_heads: int
    cross_attention_dim: int
    transformer_layers: int | Sequence[int] = 1
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast_attention: bool = False

    def build(self, channels: int, groups: int, index: int) -> Transformer2DModel:
        """The spatial transformer after the ``index``-th resnet of a block with ``channels`` channels."""
        layers = self.transformer_layers
        layers = layers if isinstance(layers, int) else layers[index]
        return Transformer2DModel(
            self.num_attention_heads,
            channels // self.num_attention_heads,
            in_channels=channels,
            num_layers=layers,
            cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=groups,
            use_linear_projection=self.use_linear_projection,
            only_cross_attention=self.only_cross_attention,
            upcast_attention=self.upcast_attention,
        )


def spatial_attention(channels: int, head_dim: int | None, resnet: ResnetSpec, groups: int | None) -> SpatialSelfAttention:
    """The pixel self-attention of pixel-space UNets and the VAE (``head_dim`` None: one head)."""
    head_dim = head_dim or channels
    return SpatialSelfAttention(
        channels, heads=channels // head_dim, dim_head=head_dim, norm_num_groups=groups, eps=resnet.eps,
        rescale_output_factor=resnet.output_scale_factor,
    )


def _resample(hidden_states: torch.Tensor, layers: nn.ModuleList | None, temb: torch.Tensor | None, **kw) -> torch.Tensor:
    for layer in layers or ():
        if isinstance(layer, ResnetBlock2D):
            hidden_states = layer(hidden_states, temb)
        else:
            hidden_states = layer(hidden_states, **kw)
    return hidden_states


class DownBlock2D(nn.Module):
    """``num_layers`` resnets, then (``add_downsample``) a 2x downsampler: a stride-2 conv
    (``downsample_type="conv"``) or a downsampling resnet (``"resnet"``).

    ``forward`` returns the output and the tuple of every layer's output (the skip connections).
    """

    has_cross_attention = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resnet: ResnetSpec,
        num_layers: int = 1,
        add_downsample: bool = True,
        downsample_padding: int = 1,
        downsample_type: str = "conv",
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [resnet.build(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)]
        )
        if not add_downsample:
            self.downsamplers = None
        elif downsample_type == "resnet":
            self.downsamplers = nn.ModuleList([resnet.build(out_channels, out_channels, down=True)])
        else:
            self.downsamplers = nn.ModuleList([Downsample2D(out_channels, True, out_channels, padding=downsample_padding)])

    def attend(self, index: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        """The attention after the ``index``-th resnet (none in this block)."""
        return hidden_states

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor | None = None, **context: Any
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        outputs = ()
        for index, resnet in enumerate(self.resnets):
            hidden_states = self.attend(index, resnet(hidden_states, temb), **context)
            outputs += (hidden_states,)
        if self.downsamplers is not None:
            hidden_states = _resample(hidden_states, self.downsamplers, temb)
            outputs += (hidden_states,)
        return hidden_states, outputs


class CrossAttnDownBlock2D(DownBlock2D):
    """:class:`DownBlock2D` with a spatial transformer (self- and cross-attention) after every resnet."""

    has_cross_attention = True

    def __init__(self, in_channels: int, out_channels: int, resnet: ResnetSpec, cross: CrossAttnSpec, **kwargs: Any):
        super().__init__(in_channels, out_channels, resnet, **kwargs)
        self.attentions = nn.ModuleList([cross.build(out_channels, resnet.groups, i) for i in range(len(self.resnets))])

    def attend(self, index: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        return self.attentions[index](hidden_states, **context)


class AttnDownBlock2D(DownBlock2D):
    """:class:`DownBlock2D` with a pixel self-attention after every resnet (pixel-space UNets)."""

    def __init__(self, in_channels: int, out_channels: int, resnet: ResnetSpec, attention_head_dim: int | None, **kwargs: Any):
        super().__init__(in_channels, out_channels, resnet, **kwargs)
        self.attentions = nn.ModuleList(
            [spatial_attention(out_channels, attention_head_dim, resnet, resnet.groups) for _ in self.resnets]
        )

    def attend(self, index: int, hidden_states: torch.Tensor, cross_attention_kwargs=None, **context: Any) -> torch.Tensor:
        return self.attentions[index](hidden_states, **(cross_attention_kwargs or {}))


class UpBlock2D(nn.Module):
    """``num_layers`` resnets, each on the concatenation of the running states and one skip connection
    (taken last-first), then (``add_upsample``) a 2x upsampler: nearest + conv (``upsample_type="conv"``) or an
    upsampling resnet (``"resnet"``).

    Args:
        in_channels: Channels of the skip connection of the block's last resnet.
        prev_output_channel: Channels coming from the previous (deeper) block.
        out_channels: Output channels; also those of the other skip connections.
    """

    has_cross_attention = False
    freeu: FreeU | None = None  # set by the UNet's enable_freeu

    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        resnet: ResnetSpec,
        num_layers: int = 1,
        add_upsample: bool = True,
        upsample_type: str = "conv",
        resolution_idx: int | None = None,
    ):
        super().__init__()
        self.resolution_idx = resolution_idx
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(resnet.build(resnet_in + skip_channels, out_channels))
        self.resnets = nn.ModuleList(resnets)
        if not add_upsample:
            self.upsamplers = None
        elif upsample_type == "resnet":
            self.upsamplers = nn.ModuleList([resnet.build(out_channels, out_channels, up=True)])
        else:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])

    def attend(self, index: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        """The attention after the ``index``-th resnet (none in this block)."""
        return hidden_states

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor | None = None,
        upsample_size: tuple[int, int] | None = None,
        **context: Any,
    ) -> torch.Tensor:
        for index, resnet in enumerate(self.resnets):
            skip = res_hidden_states_tuple[-1 - index]
            if self.freeu is not None:
                hidden_states, skip = self.freeu.apply(self.resolution_idx, hidden_states, skip)
            hidden_states = torch.cat([hidden_states, skip], dim=1)
            hidden_states = self.attend(index, resnet(hidden_states, temb), **context)
        return _resample(hidden_states, self.upsamplers, temb, output_size=upsample_size)


class CrossAttnUpBlock2D(UpBlock2D):
    """:class:`UpBlock2D` with a spatial transformer (self- and cross-attention) after every resnet."""

    has_cross_attention = True

    def __init__(self, in_channels, prev_output_channel, out_channels, resnet: ResnetSpec, cross: CrossAttnSpec, **kwargs):
        super().__init__(in_channels, prev_output_channel, out_channels, resnet, **kwargs)
        self.attentions = nn.ModuleList([cross.build(out_channels, resnet.groups, i) for i in range(len(self.resnets))])

    def attend(self, index: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        return self.attentions[index](hidden_states, **context)


class AttnUpBlock2D(UpBlock2D):
    """:class:`UpBlock2D` with a pixel self-attention after every resnet (pixel-space UNets)."""

    def __init__(self, in_channels, prev_output_channel, out_channels, resnet: ResnetSpec, attention_head_dim, **kwargs):
        super().__init__(in_channels, prev_output_channel, out_channels, resnet, **kwargs)
        self.attentions = nn.ModuleList(
            [spatial_attention(out_channels, attention_head_dim, resnet, resnet.groups) for _ in self.resnets]
        )

    def attend(self, index: int, hidden_states: torch.Tensor, cross_attention_kwargs=None, **context: Any) -> torch.Tensor:
        return self.attentions[index](hidden_states, **(cross_attention_kwargs or {}))

    def forward(self, hidden_states, res_hidden_states_tuple, temb=None, upsample_size=None, **context):
        # The pixel-attention up block always doubles the size (it ignores ``upsample_size``).
        return super().forward(hidden_states, res_hidden_states_tuple, temb, None, **context)


DOWN_BLOCKS = {"DownBlock2D": DownBlock2D, "CrossAttnDownBlock2D": CrossAttnDownBlock2D, "AttnDownBlock2D": AttnDownBlock2D}
UP_BLOCKS = {"UpBlock2D": UpBlock2D, "CrossAttnUpBlock2D": CrossAttnUpBlock2D, "AttnUpBlock2D": AttnUpBlock2D}


def block_class(kind: str, block_type: str, owner: str, allowed: Sequence[str]) -> type[nn.Module]:
    """The block class for a config's block type name (a ``UNetRes`` prefix is dropped).

    Raises:
        ConfigError: the name is not in ``allowed``.
    """
    name = block_type[7:] if block_type.startswith("UNetRes") else block_type
    if name not in allowed:
        raise ConfigError.bad_value(owner, f"{kind}_block_types", f"names from {sorted(allowed)}", block_type)
    return (DOWN_BLOCKS if kind == "down" else UP_BLOCKS)[name]
