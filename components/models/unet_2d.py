"""The unconditional pixel-space UNet of DDPM-style checkpoints (``UNet2DModel``, e.g. google/ddpm-cat-256)."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError, MissingInputError
from ..config import register_to_config
from .attention import LEGACY_ATTENTION_KEYS, AttentionProcessorMixin
from .embeddings import GaussianFourierProjection, TimestepEmbedding, Timesteps, make_class_embedding
from .mid_blocks import UNetMidBlock2D
from .modeling import ModelMixin
from .outputs import UNet2DOutput
from .unet_blocks import ResnetSpec, block_class

_OWNER = "UNet2DModel"
_DOWN = ("DownBlock2D", "AttnDownBlock2D")
_UP = ("UpBlock2D", "AttnUpBlock2D")


class UNet2DModel(ModelMixin, AttentionProcessorMixin):
    """Denoising UNet on pixels, conditioned on the timestep only (and optionally a class label), with
    diffusers' config keys and weight names.

    ``time_embedding_type``: ``"positional"`` (sinusoidal, DDPM), ``"fourier"`` (Gaussian Fourier features of
    ``log(sigma)``; the output is divided by sigma, as score-SDE models expect) or ``"learned"``.
    ``attention_head_dim`` is channels per head here (None: one head).
    """

    legacy_key_renames = LEGACY_ATTENTION_KEYS

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        center_input_sample: bool = False,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        freq_shift: int = 0,
        flip_sin_to_cos: bool = True,
        down_block_types: Sequence[str] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        mid_block_type: str | None = "UNetMidBlock2D",
        up_block_types: Sequence[str] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        block_out_channels: Sequence[int] = (224, 448, 672, 896),
        layers_per_block: int = 2,
        mid_block_scale_factor: float = 1,
        downsample_padding: int = 1,
        downsample_type: str = "conv",
        upsample_type: str = "conv",
        dropout: float = 0.0,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        norm_num_groups: int = 32,
        attn_norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        add_attention: bool = True,
        class_embed_type: str | None = None,
        num_class_embeds: int | None = None,
        num_train_timesteps: int | None = None,
    ):
        super().__init__()
        if len(down_block_types) != len(up_block_types) or len(block_out_channels) != len(down_block_types):
            raise ConfigError.bad_value(
                _OWNER, "block_out_channels", "one entry per down and per up block", list(block_out_channels)
            )
        self.sample_size = sample_size
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=(1, 1))
        time_embed_dim = self._build_embeddings()
        resnet = ResnetSpec(time_embed_dim, norm_eps, norm_num_groups, act_fn, dropout, resnet_time_scale_shift)
        self._build_blocks(resnet)
        groups_out = norm_num_groups if norm_num_groups is not None else min(block_out_channels[0] // 4, 32)
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=groups_out, eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

    def _build_embeddings(self) -> int:
        c = self.config
        width = c.block_out_channels[0]
        time_embed_dim = c.time_embedding_dim or width * 4
        if c.time_embedding_type == "fourier":
            self.time_proj = GaussianFourierProjection(embedding_size=width, scale=16)
            timestep_input_dim = 2 * width
        elif c.time_embedding_type == "positional":
            self.time_proj = Timesteps(width, c.flip_sin_to_cos, c.freq_shift)
            timestep_input_dim = width
        elif c.time_embedding_type == "learned":
            self.time_proj = nn.Embedding(c.num_train_timesteps, width)
            timestep_input_dim = width
        else:
            raise ConfigError.bad_value(_OWNER, "time_embedding_type", "'positional', 'fourier' or 'learned'", c.time_embedding_type)
        self.time_embedding = TimestepEmbedding(timestep_input_dim, time_embed_dim)
        self.class_embedding = make_class_embedding(
            c.class_embed_type, c.num_class_embeds, None, time_embed_dim, timestep_input_dim
        )
        return time_embed_dim

    def _block_kwargs(self, cls: type, out_channels: int, resample_key: str) -> dict:
        """Keywords only the pixel-attention blocks take."""
        c = self.config
        if cls.__name__.startswith("Attn"):
            return {"attention_head_dim": c.attention_head_dim or out_channels, resample_key: c[resample_key]}
        return {}

    def _build_blocks(self, resnet: ResnetSpec) -> None:
        c = self.config
        channels, n = list(c.block_out_channels), len(c.block_out_channels)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()  # registered before the mid block: diffusers' attn_processors order
        for i, block_type in enumerate(c.down_block_types):
            cls = block_class("down", block_type, _OWNER, _DOWN)
            self.down_blocks.append(cls(
                channels[max(i - 1, 0)], channels[i], resnet, num_layers=c.layers_per_block, add_downsample=i < n - 1,
                downsample_padding=c.downsample_padding, **self._block_kwargs(cls, channels[i], "downsample_type"),
            ))
        self.mid_block = None
        if c.mid_block_type == "UNetMidBlock2D":
            attn_groups = c.attn_norm_num_groups
            if attn_groups is None and c.resnet_time_scale_shift == "default":
                attn_groups = c.norm_num_groups
            self.mid_block = UNetMidBlock2D(
                channels[-1], replace(resnet, output_scale_factor=c.mid_block_scale_factor),
                add_attention=c.add_attention, attention_head_dim=c.attention_head_dim or channels[-1], attn_groups=attn_groups,
            )
        elif c.mid_block_type is not None:
            raise ConfigError.bad_value(_OWNER, "mid_block_type", "'UNetMidBlock2D' or None", c.mid_block_type)
        rev = list(reversed(channels))
        for i, block_type in enumerate(c.up_block_types):
            cls = block_class("up", block_type, _OWNER, _UP)
            self.up_blocks.append(cls(
                rev[min(i + 1, n - 1)], rev[max(i - 1, 0)], rev[i], resnet, num_layers=c.layers_per_block + 1,
                add_upsample=i < n - 1, resolution_idx=i, **self._block_kwargs(cls, rev[i], "upsample_type"),
            ))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        """Predict the noise (or score) of ``sample`` at ``timestep``.

        Args:
            sample: Noisy images ``(batch, in_channels, height, width)``.
            timestep: A number (taken as an integer step), or a tensor with one value or one per batch element
                (sigmas for ``fourier`` models).
            class_labels: Class labels, for configs with a class embedding.
            return_dict: Return a :class:`UNet2DOutput` rather than a 1-tuple.

        Raises:
            MissingInputError: the config has a class embedding and ``class_labels`` is None.
        """
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        timesteps = self._timesteps(sample, timestep)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=self.dtype))
        emb = self._add_class_embedding(emb, class_labels)
        hidden = self.conv_in(sample)
        skips = (hidden,)
        for block in self.down_blocks:
            hidden, block_skips = block(hidden, emb)
            skips += block_skips
        if self.mid_block is not None:
            hidden = self.mid_block(hidden, emb)
        for block in self.up_blocks:
            count = len(block.resnets)
            hidden, skips = block(hidden, skips[-count:], emb), skips[:-count]
        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        if self.config.time_embedding_type == "fourier":
            hidden = hidden / timesteps.reshape((hidden.shape[0],) + (1,) * (hidden.ndim - 1))
        return UNet2DOutput(sample=hidden) if return_dict else (hidden,)

    def _timesteps(self, sample: torch.Tensor, timestep: torch.Tensor | float | int) -> torch.Tensor:
        """One timestep per batch element (numbers become integer steps, as in DDPM)."""
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.long, device=sample.device)
        elif timestep.ndim == 0:
            timestep = timestep[None].to(sample.device)
        return timestep * torch.ones(sample.shape[0], dtype=timestep.dtype, device=timestep.device)

    def _add_class_embedding(self, emb: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        if self.class_embedding is None:
            if class_labels is not None:
                raise ConfigError(f"{_OWNER} was given class_labels but its config has no class embedding")
            return emb
        if class_labels is None:
            raise MissingInputError(f"{_OWNER} has a class embedding; pass class_labels")
        if self.config.class_embed_type == "timestep":
            class_labels = self.time_proj(class_labels)
        return emb + self.class_embedding(class_labels).to(dtype=self.dtype)
