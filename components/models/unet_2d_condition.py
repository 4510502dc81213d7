"""The text-conditioned UNet of Stable Diffusion 1.x / 2.x and SDXL (``UNet2DConditionModel``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError, MissingInputError, ModelInputError
from ..config import register_to_config
from .activations import get_activation
from .attention import AttentionProcessorMixin, mask_to_bias
from .embeddings import GaussianFourierProjection, TimestepEmbedding, Timesteps, make_class_embedding
from .mid_blocks import UNetMidBlock2D, UNetMidBlock2DCrossAttn
from .modeling import ModelMixin
from .outputs import UNet2DConditionOutput
from .freeu import FreeU
from .unet_blocks import CrossAttnSpec, ResnetSpec, block_class

_OWNER = "UNet2DConditionModel"
_DOWN = ("DownBlock2D", "CrossAttnDownBlock2D")
_UP = ("UpBlock2D", "CrossAttnUpBlock2D")
# Config keys whose other values select architectures this class does not implement.
_ONLY = {
    "dual_cross_attention": (False,),
    "attention_type": ("default",),
    "cross_attention_norm": (None,),
    "addition_embed_type": (None, "text_time"),
    "encoder_hid_dim_type": (None, "text_proj"),
    "time_embedding_type": ("positional", "fourier"),
    "mid_block_type": ("UNetMidBlock2DCrossAttn", "UNetMidBlock2D", None),
}


def per_block(value: Any, count: int, key: str) -> list:
    """A config value given once for all blocks, or as one entry per block, as a list of ``count`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ConfigError.bad_value(_OWNER, key, f"one value or {count} (one per down block)", value)
        return list(value)
    return [value] * count


def _check_config(config: dict[str, Any]) -> None:
    for key, allowed in _ONLY.items():
        if config[key] not in allowed:
            raise ConfigError.bad_value(_OWNER, key, f"one of {list(allowed)} (others are not implemented)", config[key])
    if len(config["down_block_types"]) != len(config["up_block_types"]):
        raise ConfigError.bad_value(
            _OWNER, "up_block_types", f"{len(config['down_block_types'])} entries like down_block_types", config["up_block_types"]
        )
    if len(config["block_out_channels"]) != len(config["down_block_types"]):
        raise ConfigError.bad_value(
            _OWNER, "block_out_channels", f"{len(config['down_block_types'])} entries like down_block_types", config["block_out_channels"]
        )


class UNet2DConditionModel(ModelMixin, AttentionProcessorMixin):
    """Denoising UNet conditioned on a timestep and text encoder states, with diffusers' config keys and
    weight names (SD 1.x, SD 2.x, SDXL, inpainting with ``in_channels=9``, LCM with ``time_cond_proj_dim``).

    ``attention_head_dim`` is, as in diffusers' configs, the number of heads per block unless
    ``num_attention_heads`` is given. Config values that select architectures not implemented here
    (dual cross-attention, GLIGEN, image-conditioned additions, ...) raise :class:`ConfigError`.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        center_input_sample: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: Sequence[str] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        mid_block_type: str | None = "UNetMidBlock2DCrossAttn",
        up_block_types: Sequence[str] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        only_cross_attention: bool | Sequence[bool] = False,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int | Sequence[int] = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        dropout: float = 0.0,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int | Sequence[int] = 1280,
        transformer_layers_per_block: int | Sequence[int] | Sequence[Sequence[int]] = 1,
        reverse_transformer_layers_per_block: Sequence[Sequence[int]] | None = None,
        encoder_hid_dim: int | None = None,
        encoder_hid_dim_type: str | None = None,
        attention_head_dim: int | Sequence[int] = 8,
        num_attention_heads: int | Sequence[int] | None = None,
        dual_cross_attention: bool = False,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        addition_embed_type: str | None = None,
        addition_time_embed_dim: int | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        resnet_skip_time_act: bool = False,
        resnet_out_scale_factor: float = 1.0,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        time_embedding_act_fn: str | None = None,
        timestep_post_act: str | None = None,
        time_cond_proj_dim: int | None = None,
        conv_in_kernel: int = 3,
        conv_out_kernel: int = 3,
        projection_class_embeddings_input_dim: int | None = None,
        attention_type: str = "default",
        class_embeddings_concat: bool = False,
        mid_block_only_cross_attention: bool | None = None,
        cross_attention_norm: str | None = None,
        addition_embed_type_num_heads: int = 64,
    ):
        super().__init__()
        if encoder_hid_dim is not None and encoder_hid_dim_type is None:
            self.register_to_config(encoder_hid_dim_type="text_proj")
        _check_config(dict(self._config))
        self.sample_size = sample_size
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], conv_in_kernel, padding=(conv_in_kernel - 1) // 2)
        time_embed_dim = self._build_embeddings()
        blocks_temb = time_embed_dim * 2 if class_embeddings_concat else time_embed_dim
        resnet = ResnetSpec(blocks_temb, norm_eps, norm_num_groups, act_fn, dropout, resnet_time_scale_shift)
        # Registration order (down, up, mid) fixes the order of attn_processors, which IP-Adapter weights
        # are indexed by; it is diffusers' order.
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        self._build_down_and_mid(resnet)
        self._build_up(resnet)
        self.conv_norm_out = None
        self.conv_act = None
        if norm_num_groups is not None:
            self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=norm_eps)
            self.conv_act = get_activation(act_fn)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, conv_out_kernel, padding=(conv_out_kernel - 1) // 2)

    # --- construction -----------------------------------------------------------------------------

    def _build_embeddings(self) -> int:
        """Time, class and added (SDXL) embeddings; returns the time embedding width."""
        c = self.config
        if c.time_embedding_type == "fourier":
            time_embed_dim = c.time_embedding_dim or c.block_out_channels[0] * 2
            self.time_proj = GaussianFourierProjection(time_embed_dim // 2, log=False, flip_sin_to_cos=c.flip_sin_to_cos)
            timestep_input_dim = time_embed_dim
        else:
            time_embed_dim = c.time_embedding_dim or c.block_out_channels[0] * 4
            self.time_proj = Timesteps(c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
            timestep_input_dim = c.block_out_channels[0]
        self.time_embedding = TimestepEmbedding(
            timestep_input_dim, time_embed_dim, act_fn=c.act_fn, post_act_fn=c.timestep_post_act,
            cond_proj_dim=c.time_cond_proj_dim,
        )
        self.encoder_hid_proj = None
        if c.encoder_hid_dim_type == "text_proj":
            self.encoder_hid_proj = nn.Linear(c.encoder_hid_dim, c.cross_attention_dim)
        self.class_embedding = make_class_embedding(
            c.class_embed_type, c.num_class_embeds, c.projection_class_embeddings_input_dim, time_embed_dim,
            timestep_input_dim, c.act_fn,
        )
        if c.addition_embed_type == "text_time":
            self.add_time_proj = Timesteps(c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift)
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, time_embed_dim)
        self.time_embed_act = get_activation(c.time_embedding_act_fn) if c.time_embedding_act_fn else None
        return time_embed_dim

    def _block_lists(self) -> dict[str, list]:
        """The per-block config values, one entry per down block."""
        c, n = self.config, len(self.config.down_block_types)
        heads = c.num_attention_heads or c.attention_head_dim
        keys = ("only_cross_attention", "cross_attention_dim", "layers_per_block", "transformer_layers_per_block")
        lists = {key: per_block(c[key], n, key) for key in keys}
        lists["heads"] = per_block(heads, n, "num_attention_heads")
        return lists

    def _cross_spec(self, heads: int, cross_dim: int, layers, only_cross: bool) -> CrossAttnSpec:
        c = self.config
        return CrossAttnSpec(heads, cross_dim, layers, c.use_linear_projection, only_cross, c.upcast_attention)

    def _build_down_and_mid(self, resnet: ResnetSpec) -> None:
        c, lists = self.config, self._block_lists()
        channels = c.block_out_channels
        for i, block_type in enumerate(c.down_block_types):
            cls = block_class("down", block_type, _OWNER, _DOWN)
            kwargs = dict(num_layers=lists["layers_per_block"][i], add_downsample=i < len(channels) - 1,
                          downsample_padding=c.downsample_padding)
            if cls.has_cross_attention:
                kwargs["cross"] = self._cross_spec(lists["heads"][i], lists["cross_attention_dim"][i],
                                                   lists["transformer_layers_per_block"][i], lists["only_cross_attention"][i])
            self.down_blocks.append(cls(channels[max(i - 1, 0)], channels[i], resnet, **kwargs))
        mid_resnet = replace(resnet, output_scale_factor=c.mid_block_scale_factor)
        self.mid_block = None
        if c.mid_block_type == "UNetMidBlock2DCrossAttn":
            cross = self._cross_spec(lists["heads"][-1], lists["cross_attention_dim"][-1],
                                     lists["transformer_layers_per_block"][-1], False)
            self.mid_block = UNetMidBlock2DCrossAttn(channels[-1], mid_resnet, cross)
        elif c.mid_block_type == "UNetMidBlock2D":
            self.mid_block = UNetMidBlock2D(channels[-1], mid_resnet, num_layers=0, add_attention=False)

    def _build_up(self, resnet: ResnetSpec) -> None:
        c, lists = self.config, self._block_lists()
        rev = {key: list(reversed(value)) for key, value in lists.items()}
        if c.reverse_transformer_layers_per_block is not None:
            rev["transformer_layers_per_block"] = list(c.reverse_transformer_layers_per_block)
        channels = list(reversed(c.block_out_channels))
        self.num_upsamplers = len(channels) - 1
        for i, block_type in enumerate(c.up_block_types):
            cls = block_class("up", block_type, _OWNER, _UP)
            kwargs = dict(num_layers=rev["layers_per_block"][i] + 1, add_upsample=i < len(channels) - 1, resolution_idx=i)
            if cls.has_cross_attention:
                kwargs["cross"] = self._cross_spec(rev["heads"][i], rev["cross_attention_dim"][i],
                                                   rev["transformer_layers_per_block"][i], rev["only_cross_attention"][i])
            skip_channels = channels[min(i + 1, len(channels) - 1)]
            prev_channels = channels[max(i - 1, 0)]
            self.up_blocks.append(cls(skip_channels, prev_channels, channels[i], resnet, **kwargs))

    # --- forward ----------------------------------------------------------------------------------

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float, version: int = 1) -> None:
        """FreeU from now on (:class:`~.freeu.FreeU`: ``b1``/``b2`` amplify the backbone features of the two deepest
        decoder stages, ``s1``/``s2`` damp the low frequencies of their skip connections; ``version`` 2 is
        ComfyUI's FreeU_V2). diffusers' signature; this model's weights are not touched."""
        settings = FreeU(b1=b1, b2=b2, s1=s1, s2=s2, version=version)
        for block in self.up_blocks:
            block.freeu = settings

    def disable_freeu(self) -> None:
        """Draw without FreeU again."""
        for block in self.up_blocks:
            block.freeu = None

    @property
    def freeu(self) -> FreeU | None:
        """The FreeU settings in use, or None."""
        return self.up_blocks[0].freeu

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """Predict the noise (or v) of ``sample`` at ``timestep`` given the text states.

        Args:
            sample: Noisy latents ``(batch, in_channels, height, width)``.
            timestep: A number, or a tensor with one value or one per batch element.
            encoder_hidden_states: Text encoder states ``(batch, tokens, cross_attention_dim)``.
            class_labels: Class labels or embeddings, for configs with a class embedding.
            timestep_cond: Guidance embedding added to the time features (``time_cond_proj_dim`` models).
            attention_mask: ``(batch, tokens)`` keep-mask (or additive bias) for self-attention keys.
            cross_attention_kwargs: Extra keywords passed to every attention processor.
            added_cond_kwargs: ``{"text_embeds", "time_ids"}`` for ``addition_embed_type="text_time"`` (SDXL);
                ``"image_embeds"`` (one tensor per adapter) when IP-Adapters are loaded.
            down_block_additional_residuals: One tensor per skip connection, added to them (ControlNet).
            mid_block_additional_residual: Added to the mid-block output (ControlNet).
            encoder_attention_mask: ``(batch, tokens)`` keep-mask (or additive bias) over ``encoder_hidden_states``.
            return_dict: Return a :class:`UNet2DConditionOutput` rather than a 1-tuple.

        Raises:
            MissingInputError: an input the config needs (class labels, SDXL's added conditions) is missing.
        """
        context = dict(
            encoder_hidden_states=self._project_encoder_states(encoder_hidden_states, added_cond_kwargs),
            attention_mask=mask_to_bias(attention_mask, sample.dtype),
            encoder_attention_mask=mask_to_bias(encoder_attention_mask, sample.dtype),
            cross_attention_kwargs=cross_attention_kwargs,
        )
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = self.embed(sample, timestep, timestep_cond, class_labels, added_cond_kwargs)
        hidden, skips = self._down(self.conv_in(sample), emb, context, down_block_additional_residuals)
        if self.mid_block is not None:
            hidden = self.mid_block(hidden, emb, **context)
        if mid_block_additional_residual is not None:
            hidden = hidden + mid_block_additional_residual
        hidden = self._up(hidden, skips, emb, context, upsample_sizes=self._needs_sizes(sample))
        if self.conv_norm_out is not None:
            hidden = self.conv_act(self.conv_norm_out(hidden))
        hidden = self.conv_out(hidden)
        return UNet2DConditionOutput(sample=hidden) if return_dict else (hidden,)

    def embed(self, sample, timestep, timestep_cond=None, class_labels=None, added_cond_kwargs=None) -> torch.Tensor:
        """The embedding given to every resnet: time (+ class) (+ SDXL text/size conditions)."""
        emb = self.time_embedding(self._time_features(sample, timestep), timestep_cond)
        if self.class_embedding is not None:
            if class_labels is None:
                raise MissingInputError(f"{_OWNER} has a class embedding; pass class_labels")
            if self.config.class_embed_type == "timestep":
                class_labels = self.time_proj(class_labels).to(dtype=sample.dtype)
            class_emb = self.class_embedding(class_labels).to(dtype=sample.dtype)
            emb = torch.cat([emb, class_emb], dim=-1) if self.config.class_embeddings_concat else emb + class_emb
        if self.config.addition_embed_type == "text_time":
            emb = emb + self._text_time_embedding(added_cond_kwargs or {}, emb.dtype)
        return self.time_embed_act(emb) if self.time_embed_act is not None else emb

    def _time_features(self, sample: torch.Tensor, timestep: torch.Tensor | float | int) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            is_float, on_mps = isinstance(timestep, float), sample.device.type == "mps"
            dtype = (torch.float32 if on_mps else torch.float64) if is_float else (torch.int32 if on_mps else torch.int64)
            timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
        elif timestep.ndim == 0:
            timestep = timestep[None].to(sample.device)
        return self.time_proj(timestep.expand(sample.shape[0])).to(dtype=sample.dtype)

    def _text_time_embedding(self, added: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        missing = [key for key in ("text_embeds", "time_ids") if key not in added]
        if missing:
            raise MissingInputError(
                f"{_OWNER} with addition_embed_type='text_time' needs added_cond_kwargs {missing} "
                "(pooled text embeddings and the size/crop time ids)"
            )
        text_embeds = added["text_embeds"]
        time_embeds = self.add_time_proj(added["time_ids"].flatten()).reshape(text_embeds.shape[0], -1)
        return self.add_embedding(torch.concat([text_embeds, time_embeds], dim=-1).to(dtype))

    def _project_encoder_states(self, encoder_hidden_states: torch.Tensor, added_cond_kwargs=None):
        if self.config.encoder_hid_dim_type == "ip_image_proj":  # IP-Adapters loaded (components/ip_adapter.py)
            return self._with_image_tokens(encoder_hidden_states, added_cond_kwargs)
        return self.encoder_hid_proj(encoder_hidden_states) if self.encoder_hid_proj is not None else encoder_hidden_states

    def _with_image_tokens(self, encoder_hidden_states: torch.Tensor, added_cond_kwargs):
        """``(text states, [image tokens per adapter])`` for the IP-Adapter processors; the text states alone
        when no ``added_cond_kwargs["image_embeds"]`` is given."""
        text_projection = getattr(self, "text_encoder_hid_proj", None)
        if text_projection is not None:
            encoder_hidden_states = text_projection(encoder_hidden_states)
        image_embeds = (added_cond_kwargs or {}).get("image_embeds")
        if image_embeds is None:
            return encoder_hidden_states
        return encoder_hidden_states, self.encoder_hid_proj(image_embeds)

    def _needs_sizes(self, sample: torch.Tensor) -> bool:
        """Whether upsamplers must be told their output sizes (the input is not a multiple of 2**ups)."""
        factor = 2**self.num_upsamplers
        return any(dim % factor != 0 for dim in sample.shape[-2:])

    def _down(self, hidden, emb, context, residuals) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips = (hidden,)
        for block in self.down_blocks:
            hidden, block_skips = block(hidden, emb, **context)
            skips += block_skips
        if residuals is not None:
            if len(residuals) != len(skips):
                raise ModelInputError.wrong_count(_OWNER, "down_block_additional_residuals", len(residuals),
                                                  len(skips), "skip connections")
            skips = tuple(skip + residual for skip, residual in zip(skips, residuals))
        return hidden, skips

    def _up(self, hidden, skips, emb, context, upsample_sizes: bool) -> torch.Tensor:
        for i, block in enumerate(self.up_blocks):
            count = len(block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            size = skips[-1].shape[2:] if upsample_sizes and i < len(self.up_blocks) - 1 else None
            hidden = block(hidden, block_skips, emb, upsample_size=size, **context)
        return hidden
