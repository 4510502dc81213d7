"""Residual blocks and the 2x down/up-sampling layers of the UNets and the VAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelInputError
from .activations import get_activation


class Downsample2D(nn.Module):
    """Halve height and width: a stride-2 3x3 conv (``use_conv``) or 2x2 average pooling.

    With ``padding=0`` the input is padded by one pixel on the right and bottom only (the VAE encoder's
    asymmetric padding).
    """

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None, padding: int = 1):
        super().__init__()
        out_channels = out_channels or channels
        self.channels = channels
        self.padding = padding
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=padding)
        elif channels != out_channels:
            raise ConfigError.bad_value("Downsample2D", "out_channels", f"{channels} without a conv", out_channels)
        else:
            self.conv = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.use_conv and self.padding == 0:
            hidden_states = F.pad(hidden_states, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(hidden_states)


class Upsample2D(nn.Module):
    """Double height and width (nearest neighbour, or to ``output_size``), then an optional 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, out_channels or channels, kernel_size=3, padding=1) if use_conv else None

    def forward(self, hidden_states: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        if output_size is None:
            hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        else:
            hidden_states = F.interpolate(hidden_states, size=output_size, mode="nearest")
        return self.conv(hidden_states) if self.conv is not None else hidden_states


class ResnetBlock2D(nn.Module):
    """``(shortcut(x) + conv2(drop(act(norm2(conv1(act(norm1(x))) + proj(act(temb)))))) / output_scale_factor``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (default ``in_channels``); a 1x1 ``conv_shortcut`` maps the input when
            they differ.
        temb_channels: Width of the time embedding, or None for blocks without one (the VAE).
        groups: Groups of ``norm1``; ``groups_out`` those of ``norm2`` (default ``groups``).
        eps: GroupNorm epsilon.
        dropout: Dropout before ``conv2``.
        act_fn: Activation name.
        time_embedding_norm: ``"default"`` (add the projected embedding before ``norm2``) or ``"scale_shift"``
            (``norm2(h) * (1 + scale) + shift``).
        output_scale_factor: Divides the sum.
        skip_time_act: Project the time embedding without activating it first.
        up: Nearest-upsample input and hidden states 2x after ``norm1``.
        down: Average-pool them 2x after ``norm1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = 512,
        groups: int = 32,
        groups_out: int | None = None,
        eps: float = 1e-6,
        dropout: float = 0.0,
        act_fn: str = "silu",
        time_embedding_norm: str = "default",
        output_scale_factor: float = 1.0,
        skip_time_act: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ConfigError.bad_value("ResnetBlock2D", "resnet_time_scale_shift", "'default' or 'scale_shift'", time_embedding_norm)
        out_channels = out_channels or in_channels
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        self.skip_time_act = skip_time_act
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        proj_width = out_channels * (2 if time_embedding_norm == "scale_shift" else 1)
        self.time_emb_proj = nn.Linear(temb_channels, proj_width) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(num_groups=groups_out or groups, num_channels=out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = get_activation(act_fn)
        self.resample = Upsample2D(in_channels, use_conv=False) if up else None
        if down:
            self.resample = Downsample2D(in_channels, use_conv=False)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0) if in_channels != out_channels else None
        )

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.nonlinearity(self.norm1(input_tensor))
        if self.resample is not None:
            input_tensor = self.resample(input_tensor)
            hidden_states = self.resample(hidden_states)
        hidden_states = self.conv1(hidden_states)
        hidden_states = self._condition(hidden_states, temb)
        hidden_states = self.conv2(self.dropout(self.nonlinearity(hidden_states)))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / self.output_scale_factor

    def _condition(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        """``norm2`` with the time embedding added before it or applied as scale and shift after it."""
        if self.time_emb_proj is not None and temb is not None:
            temb = temb if self.skip_time_act else self.nonlinearity(temb)
            temb = self.time_emb_proj(temb)[:, :, None, None]
        else:
            temb = None
        if self.time_embedding_norm == "scale_shift":
            if temb is None:
                raise ModelInputError.missing("ResnetBlock2D", "temb",
                                              "time_embedding_norm='scale_shift' needs a time embedding")
            scale, shift = torch.chunk(temb, 2, dim=1)
            return self.norm2(hidden_states) * (1 + scale) + shift
        if temb is not None:
            hidden_states = hidden_states + temb
        return self.norm2(hidden_states)
