"""ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models",
arXiv:2302.05543) for Stable Diffusion 1.x / 2.x and SDXL, in the diffusers layout (``ControlNetModel``).

A ControlNet is a trainable copy of the UNet's encoder (its down blocks and mid block, built here from the
same blocks and with the same construction code as :class:`UNet2DConditionModel`) whose input is the noisy
latents plus an embedding of the control image; every skip connection and the mid-block output go through
a zero-initialised 1x1 convolution and are returned as residuals for the UNet
(``down_block_additional_residuals`` and ``mid_block_additional_residual``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, MissingInputError
from ..config import register_to_config
from .attention import AttentionProcessorMixin, mask_to_bias
from .embeddings import TimestepEmbedding, Timesteps, make_class_embedding
from .modeling import ModelMixin
from .outputs import ModelOutput
from .unet_2d_condition import _DOWN, UNet2DConditionModel
from .unet_blocks import ResnetSpec, block_class

_OWNER = "ControlNetModel"
# Config keys whose other values select architectures this class does not implement.
_ONLY = {
    "addition_embed_type": (None, "text_time"),
    "encoder_hid_dim_type": (None, "text_proj"),
    "class_embed_type": (None, "timestep", "identity", "projection"),
    "mid_block_type": ("UNetMidBlock2DCrossAttn", "UNetMidBlock2D"),
    "controlnet_conditioning_channel_order": ("rgb", "bgr"),
}
# Config keys that take one value for all down blocks or one per down block.
_PER_BLOCK = ("only_cross_attention", "transformer_layers_per_block", "layers_per_block")


def _zero(module: nn.Module) -> nn.Module:
    """The ControlNet's output convolutions start at zero, so that a fresh ControlNet changes nothing."""
    for param in module.parameters():
        nn.init.zeros_(param)
    return module


def _check_config(config: dict[str, Any]) -> None:
    for key, allowed in _ONLY.items():
        if config[key] not in allowed:
            raise ConfigError.bad_value(_OWNER, key, f"one of {list(allowed)} (others are not implemented)", config[key])
    count = len(config["down_block_types"])
    if len(config["block_out_channels"]) != count:
        raise ConfigError.bad_value(_OWNER, "block_out_channels", f"{count} entries like down_block_types",
                                    config["block_out_channels"])
    heads_key = "num_attention_heads" if config["num_attention_heads"] is not None else "attention_head_dim"
    for key in _PER_BLOCK + (heads_key,):
        if isinstance(config[key], (list, tuple)) and len(config[key]) != count:
            raise ConfigError.bad_value(_OWNER, key, f"one value or {count} (one per down block)", config[key])
    for block_type in config["down_block_types"]:
        block_class("down", block_type, _OWNER, _DOWN)


@dataclass
class ControlNetOutput(ModelOutput):
    """``down_block_res_samples``: one residual per UNet skip connection (shallowest first);
    ``mid_block_res_sample``: the residual for the mid-block output."""

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


class ControlNetConditioningEmbedding(nn.Module):
    """The control-image encoder: a 3x3 conv, then per channel step a 3x3 conv and a stride-2 3x3 conv (SiLU
    after each), then a zero-initialised 3x3 conv to the UNet's first block width.

    Args:
        conditioning_embedding_channels: Output channels (the ControlNet's ``block_out_channels[0]``).
        conditioning_channels: Channels of the control image.
        block_out_channels: Widths of the stages; each stage after the first halves the resolution.
    """

    def __init__(self, conditioning_embedding_channels: int, conditioning_channels: int = 3,
                 block_out_channels: Sequence[int] = (16, 32, 96, 256)):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for channels_in, channels_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            self.blocks.append(nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = _zero(nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3, padding=1))

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        embedding = F.silu(self.conv_in(conditioning))
        for block in self.blocks:
            embedding = F.silu(block(embedding))
        return self.conv_out(embedding)


class ControlNetModel(ModelMixin, AttentionProcessorMixin):
    """A ControlNet with diffusers' config keys and weight names (SD 1.x / 2.x and SDXL ControlNets).

    The encoder keys (``conv_in``, ``time_embedding``, ``add_embedding``, ``down_blocks``, ``mid_block``) are
    those of :class:`UNet2DConditionModel`; the ControlNet's own are ``controlnet_cond_embedding``,
    ``controlnet_down_blocks`` and ``controlnet_mid_block``. ``attention_head_dim`` is, as in diffusers'
    configs, the number of heads per block unless ``num_attention_heads`` is given. Attention runs through
    :class:`~diffblocks.components.models.attention.Attention`, so processors can be swapped with
    :meth:`set_attn_processor`. Config values selecting architectures not implemented here (text or image
    additional embeddings, ``text_image_proj``) raise :class:`ConfigError`.
    """

    # The encoder is built and run by the UNet's own methods: they read only config keys the two share.
    _block_lists = UNet2DConditionModel._block_lists
    _cross_spec = UNet2DConditionModel._cross_spec
    _build_down_and_mid = UNet2DConditionModel._build_down_and_mid
    _time_features = UNet2DConditionModel._time_features
    _text_time_embedding = UNet2DConditionModel._text_time_embedding
    _down = UNet2DConditionModel._down

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        conditioning_channels: int = 3,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: Sequence[str] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        mid_block_type: str = "UNetMidBlock2DCrossAttn",
        only_cross_attention: bool | Sequence[bool] = False,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1280,
        transformer_layers_per_block: int | Sequence[int] = 1,
        encoder_hid_dim: int | None = None,
        encoder_hid_dim_type: str | None = None,
        attention_head_dim: int | Sequence[int] = 8,
        num_attention_heads: int | Sequence[int] | None = None,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        addition_embed_type: str | None = None,
        addition_time_embed_dim: int | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        projection_class_embeddings_input_dim: int | None = None,
        controlnet_conditioning_channel_order: str = "rgb",
        conditioning_embedding_out_channels: Sequence[int] = (16, 32, 96, 256),
        global_pool_conditions: bool = False,
        addition_embed_type_num_heads: int = 64,
    ):
        super().__init__()
        if encoder_hid_dim is not None and encoder_hid_dim_type is None:
            self.register_to_config(encoder_hid_dim_type="text_proj")
        _check_config(dict(self._config))
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        time_embed_dim = self._build_embeddings()
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            block_out_channels[0], conditioning_channels, conditioning_embedding_out_channels
        )
        self.down_blocks = nn.ModuleList()
        resnet = ResnetSpec(time_embed_dim, norm_eps, norm_num_groups, act_fn, 0.0, resnet_time_scale_shift)
        self._build_down_and_mid(resnet)
        self.controlnet_down_blocks = nn.ModuleList([self._zero_conv(block_out_channels[0])])
        for channels, block in zip(block_out_channels, self.down_blocks):
            skips = len(block.resnets) + (block.downsamplers is not None)
            self.controlnet_down_blocks.extend(self._zero_conv(channels) for _ in range(skips))
        self.controlnet_mid_block = self._zero_conv(block_out_channels[-1])

    @staticmethod
    def _zero_conv(channels: int) -> nn.Conv2d:
        return _zero(nn.Conv2d(channels, channels, kernel_size=1))

    def _build_embeddings(self) -> int:
        """Time, class and added (SDXL) embeddings; returns the time embedding width."""
        c = self.config
        time_embed_dim = c.block_out_channels[0] * 4
        self.time_proj = Timesteps(c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        self.time_embedding = TimestepEmbedding(c.block_out_channels[0], time_embed_dim, act_fn=c.act_fn)
        # Kept for the weight names only: diffusers' ControlNet never applies it, and checkpoints were trained so.
        self.encoder_hid_proj = None
        if c.encoder_hid_dim_type == "text_proj":
            self.encoder_hid_proj = nn.Linear(c.encoder_hid_dim, c.cross_attention_dim)
        # diffusers' ControlNet builds its "timestep" class embedding with SiLU whatever act_fn says.
        self.class_embedding = make_class_embedding(
            c.class_embed_type, c.num_class_embeds, c.projection_class_embeddings_input_dim, time_embed_dim,
            c.block_out_channels[0], "silu",
        )
        if c.addition_embed_type == "text_time":
            self.add_time_proj = Timesteps(c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift)
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, time_embed_dim)
        return time_embed_dim

    @classmethod
    def from_single_file(cls, path, config, torch_dtype=None, revision=None) -> "ControlNetModel":
        """A ControlNet from one file, in the original layout (``control_v11p_sd15_canny.safetensors``) or
        diffusers'; ``config`` is its config, or the base model's repo (its UNet config describes the encoder).
        See :func:`diffblocks.components.checkpoints.load_controlnet_file`."""
        from ..checkpoints import load_controlnet_file

        return load_controlnet_file(path, config, torch_dtype=torch_dtype, revision=revision)

    @classmethod
    def from_unet(
        cls,
        unet: UNet2DConditionModel,
        controlnet_conditioning_channel_order: str = "rgb",
        conditioning_embedding_out_channels: Sequence[int] = (16, 32, 96, 256),
        load_weights_from_unet: bool = True,
        conditioning_channels: int = 3,
    ) -> "ControlNetModel":
        """A ControlNet with the UNet's encoder configuration, the usual starting point of ControlNet training.

        Args:
            unet: The UNet whose config (and weights) the encoder copies.
            controlnet_conditioning_channel_order: ``"rgb"``, or ``"bgr"`` to flip the control image's channels.
            conditioning_embedding_out_channels: Widths of the control-image encoder's stages.
            load_weights_from_unet: Copy ``conv_in``, the time / class / added embeddings, the down blocks and
                the mid block from the UNet; the control-image encoder and the zero convolutions stay new.
            conditioning_channels: Channels of the control image.

        Returns:
            A new ControlNet on the CPU in float32 (the default dtype), in training mode.
        """
        own = dict(
            controlnet_conditioning_channel_order=controlnet_conditioning_channel_order,
            conditioning_embedding_out_channels=conditioning_embedding_out_channels,
            conditioning_channels=conditioning_channels,
        )
        shared = {key: unet.config[key] for key in cls.init_params() if key in unet.config and key not in own}
        controlnet = cls(**shared, **own)
        if load_weights_from_unet:
            for name in ("conv_in", "time_embedding", "class_embedding", "add_embedding", "down_blocks", "mid_block"):
                if getattr(controlnet, name, None) is not None:
                    getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
        return controlnet

    # --- forward ----------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guess_mode: bool = False,
        return_dict: bool = True,
    ) -> ControlNetOutput | tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The residuals for the UNet's skip connections and mid block.

        Args:
            sample: Noisy latents ``(batch, in_channels, height, width)``.
            timestep: A number, or a tensor with one value or one per batch element.
            encoder_hidden_states: Text encoder states ``(batch, tokens, cross_attention_dim)``.
            controlnet_cond: The control image ``(batch, conditioning_channels, 8 * height, 8 * width)`` (the
                size the conditioning embedding downsamples to the latents' size).
            conditioning_scale: Multiplies every residual.
            class_labels: Class labels or embeddings, for configs with a class embedding.
            timestep_cond: Not supported (ControlNets have no guidance-embedding projection); must be None.
            attention_mask: ``(batch, tokens)`` keep-mask (or additive bias) for self-attention keys.
            added_cond_kwargs: ``{"text_embeds", "time_ids"}`` for ``addition_embed_type="text_time"`` (SDXL).
            cross_attention_kwargs: Extra keywords passed to every attention processor.
            guess_mode: Scale the residuals from 0.1 (first skip) up to 1.0 (mid block), logarithmically, on
                top of ``conditioning_scale`` (unless ``global_pool_conditions``).
            return_dict: Return a :class:`ControlNetOutput` rather than a ``(down, mid)`` tuple.

        Raises:
            MissingInputError: an input the config needs (class labels, SDXL's added conditions) is missing.
            ConfigError: ``timestep_cond`` was given.
        """
        if timestep_cond is not None:
            raise ConfigError(f"{_OWNER} has no timestep-condition projection (time_cond_proj_dim); pass timestep_cond=None")
        if self.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = torch.flip(controlnet_cond, dims=[1])
        context = dict(
            encoder_hidden_states=encoder_hidden_states, attention_mask=mask_to_bias(attention_mask, sample.dtype),
            encoder_attention_mask=None, cross_attention_kwargs=cross_attention_kwargs,
        )
        emb = self.embed(sample, timestep, class_labels, added_cond_kwargs)
        hidden = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)
        hidden, skips = self._down(hidden, emb, context, None)
        if self.mid_block is not None:
            hidden = self.mid_block(hidden, emb, **context)
        down = tuple(conv(skip) for conv, skip in zip(self.controlnet_down_blocks, skips))
        down, mid = self._scale(down, self.controlnet_mid_block(hidden), conditioning_scale, guess_mode)
        return ControlNetOutput(down, mid) if return_dict else (down, mid)

    def embed(self, sample, timestep, class_labels=None, added_cond_kwargs=None) -> torch.Tensor:
        """The embedding given to every resnet: time (+ class) (+ SDXL text/size conditions)."""
        emb = self.time_embedding(self._time_features(sample, timestep))
        if self.class_embedding is not None:
            if class_labels is None:
                raise MissingInputError(f"{_OWNER} has a class embedding; pass class_labels")
            if self.config.class_embed_type == "timestep":
                class_labels = self.time_proj(class_labels).to(dtype=sample.dtype)
            emb = emb + self.class_embedding(class_labels).to(dtype=emb.dtype)
        if self.config.addition_embed_type == "text_time":
            missing = [key for key in ("text_embeds", "time_ids") if key not in (added_cond_kwargs or {})]
            if missing:
                raise MissingInputError(f"{_OWNER} with addition_embed_type='text_time' needs added_cond_kwargs {missing}")
            emb = emb + self._text_time_embedding(added_cond_kwargs, emb.dtype)
        return emb

    def _scale(self, down: tuple[torch.Tensor, ...], mid: torch.Tensor, scale: float, guess_mode: bool):
        """Apply ``conditioning_scale`` (and guess mode's ramp); average over space for global-pool ControlNets."""
        pooled = self.config.global_pool_conditions
        if guess_mode and not pooled:
            scales = torch.logspace(-1, 0, len(down) + 1, device=mid.device) * scale  # 0.1 to 1.0
            down = tuple(residual * s for residual, s in zip(down, scales))
            mid = mid * scales[-1]
        else:
            down = tuple(residual * scale for residual in down)
            mid = mid * scale
        if pooled:
            down = tuple(torch.mean(residual, dim=(2, 3), keepdim=True) for residual in down)
            mid = torch.mean(mid, dim=(2, 3), keepdim=True)
        return down, mid


def __getattr__(name: str) -> Any:
    # MultiControlNetModel lives in controlnet_multi, which imports this module; resolving it lazily keeps
    # both import orders working.
    if name == "MultiControlNetModel":
        from .controlnet_multi import MultiControlNetModel

        return MultiControlNetModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["ControlNetConditioningEmbedding", "ControlNetModel", "ControlNetOutput", "MultiControlNetModel"]
