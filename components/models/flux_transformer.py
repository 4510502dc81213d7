"""The FLUX.1 rectified-flow transformer (``FluxTransformer2DModel``), dev and schnell, in diffusers' layout.

It works on packed latents: each token is a 2x2 patch of 16-channel VAE latents (64 channels), with
``img_ids`` ``(tokens, 3)`` giving each token's ``(0, row, column)`` and ``txt_ids`` (zeros) the text tokens'
positions for the rotary embedding. ``timestep`` is the flow time in [0, 1] (sigma), ``guidance`` the
distilled guidance scale of dev models.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..config import register_to_config
from ..errors import ConfigError, ModelInputError
from .flux_blocks import AdaNormOut, FluxAttention, FluxSingleTransformerBlock, FluxTransformerBlock
from .flux_embeddings import FluxPosEmbed, TimestepGuidanceTextEmbedding
from .modeling import ModelMixin
from .outputs import ModelOutput

_OWNER = "FluxTransformer2DModel"


@dataclass
class Transformer2DModelOutput(ModelOutput):
    """``sample``: the predicted velocity for each packed latent token, ``(batch, tokens, channels)``."""

    sample: torch.Tensor


def _ids_2d(ids: torch.Tensor, name: str) -> torch.Tensor:
    """Position ids as ``(tokens, 3)``; the batched ``(batch, tokens, 3)`` form older pipelines passed is
    accepted and its first row used (every row is the same)."""
    if ids.ndim == 3:
        ids = ids[0]
    if ids.ndim != 2:
        raise ModelInputError.bad_shape(_OWNER, name, "(tokens, axes)", tuple(ids.shape))
    return ids


def _controlnet_residual(samples: Sequence[torch.Tensor], index: int, count: int, repeat: bool) -> torch.Tensor:
    """The ControlNet residual for block ``index`` of ``count``: each sample serves consecutive blocks (or
    they cycle, for XLabs ControlNets with ``repeat``)."""
    if repeat:
        return samples[index % len(samples)]
    return samples[index // int(math.ceil(count / len(samples)))]


def build_trunk(model: nn.Module, in_channels: int, num_layers: int, num_single_layers: int, attention_head_dim: int,
                num_attention_heads: int, joint_attention_dim: int, pooled_projection_dim: int, guidance_embeds: bool,
                axes_dims_rope: Sequence[int]) -> None:
    """Give ``model`` FLUX's embedders and its double- and single-stream blocks (the transformer's, and a
    ControlNet's shallower copy), under diffusers' names."""
    model.inner_dim = inner = num_attention_heads * attention_head_dim
    model.pos_embed = FluxPosEmbed(theta=10000, axes_dim=axes_dims_rope)
    model.time_text_embed = TimestepGuidanceTextEmbedding(inner, pooled_projection_dim, guidance_embeds)
    model.context_embedder = nn.Linear(joint_attention_dim, inner)
    model.x_embedder = nn.Linear(in_channels, inner)
    model.transformer_blocks = nn.ModuleList(
        [FluxTransformerBlock(inner, num_attention_heads, attention_head_dim) for _ in range(num_layers)])
    model.single_transformer_blocks = nn.ModuleList(
        [FluxSingleTransformerBlock(inner, num_attention_heads, attention_head_dim) for _ in range(num_single_layers)])


def embed_conditions(model: nn.Module, timestep, guidance, pooled_projections, encoder_hidden_states, dtype):
    """``(temb, text states)``: time (flow time x 1000), guidance (x 1000) and pooled text in one embedding, and
    the T5 states projected to the model's width."""
    timestep = timestep.to(dtype) * 1000
    guidance = guidance.to(dtype) * 1000 if guidance is not None else None
    return model.time_text_embed(timestep, guidance, pooled_projections), model.context_embedder(encoder_hidden_states)


class FluxTransformer2DModel(ModelMixin):
    """FLUX.1 transformer: ``num_layers`` double-stream then ``num_single_layers`` single-stream blocks over
    text (T5) and image tokens, conditioned on time, pooled CLIP text and (dev) the guidance scale.

    Config keys and weight names are diffusers', so ``from_pretrained`` reads ``black-forest-labs/FLUX.1-dev``'s
    ``transformer`` folder (``guidance_embeds=True``) and FLUX.1-schnell's (``guidance_embeds=False``).

    Args:
        patch_size: Kept for the config; FLUX packs patches outside the model (1).
        in_channels: Channels per token (64: 16 latent channels x a 2x2 patch).
        out_channels: Output channels per token (default ``in_channels``).
        num_layers: Double-stream blocks.
        num_single_layers: Single-stream blocks.
        attention_head_dim: Channels per head (``sum(axes_dims_rope)``).
        num_attention_heads: Heads; the width is ``heads * head_dim``.
        joint_attention_dim: Width of the T5 states.
        pooled_projection_dim: Width of the pooled CLIP embedding.
        guidance_embeds: Condition on a guidance scale (dev).
        axes_dims_rope: Rotary channels per position axis.
    """

    @register_to_config
    def __init__(
        self,
        patch_size: int = 1,
        in_channels: int = 64,
        out_channels: int | None = None,
        num_layers: int = 19,
        num_single_layers: int = 38,
        attention_head_dim: int = 128,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 4096,
        pooled_projection_dim: int = 768,
        guidance_embeds: bool = False,
        axes_dims_rope: Sequence[int] = (16, 56, 56),
    ):
        super().__init__()
        self.out_channels = out_channels or in_channels
        build_trunk(self, in_channels, num_layers, num_single_layers, attention_head_dim, num_attention_heads,
                    joint_attention_dim, pooled_projection_dim, guidance_embeds, axes_dims_rope)
        self.norm_out = AdaNormOut(self.inner_dim)
        self.proj_out = nn.Linear(self.inner_dim, patch_size * patch_size * self.out_channels)
        self.encoder_hid_proj: nn.Module | None = None  # the image projection of loaded IP-Adapters

    @classmethod
    def from_single_file(cls, path: str | os.PathLike, config: Mapping[str, Any] | str | os.PathLike | None = None,
                         torch_dtype: torch.dtype | None = None, revision: str | None = None):
        """A transformer from one file in Black Forest Labs' original layout (``flux1-dev.safetensors``, a
        fine-tune, an fp8 copy; a ComfyUI checkpoint with the VAE and text encoders too: only the transformer
        is read), or in diffusers' layout with ``config``. Built on the meta device and filled from the
        memory-mapped file, as :meth:`from_pretrained`.

        Args:
            path: The file, or ``owner/name/FILE`` on the Hub.
            config: The config, where the file's tensor shapes do not give it (heads of other than 128 channels,
                or diffusers' layout): a dict, or a folder / Hub repo with ``transformer/config.json`` or
                ``config.json``.
            torch_dtype: Floating-point dtype of the parameters (fp8 files are converted to it); default
                ``torch.get_default_dtype()``.

        Raises:
            MissingFileError: no such file. WeightsMismatchError: tensors that fit no parameter, or too few.
            ConfigError: the config cannot be read off the file and none was given.
        """
        from .flux_original import from_original, is_original, original_config, strip_prefix
        from .modeling import empty_weights
        from .weights import read_weights, single_file

        file = single_file(path, revision)
        state_dict = strip_prefix(read_weights([file]))
        original = is_original(state_dict)
        if config is None and not original:
            raise ConfigError(f"{file}: not in Black Forest Labs' layout; pass config= for a file in diffusers' "
                              "layout (or load its folder with from_pretrained)")
        if config is not None:
            from ..checkpoints import config_of

            config = config_of(cls, config, ("transformer", None), revision)
        else:
            config = original_config(state_dict, str(file))
        with empty_weights():
            model = cls.from_config(config)
        dtype = torch_dtype or torch.get_default_dtype()
        model.load_weights(from_original(state_dict, model) if original else state_dict, torch_dtype=dtype,
                           source=str(file))
        return model.eval()

    # --- attention processors ------------------------------------------------------------------

    @property
    def attn_processors(self) -> dict[str, Any]:
        """Every attention layer's processor, keyed ``"<module path>.processor"``."""
        return {f"{name}.processor": module.processor for name, module in self.named_modules()
                if isinstance(module, FluxAttention)}

    def set_attn_processor(self, processor) -> None:
        """Install one processor in every attention layer, or one per layer from a dict keyed as
        :attr:`attn_processors`."""
        for name, module in self.named_modules():
            if isinstance(module, FluxAttention):
                module.set_processor(processor[f"{name}.processor"] if isinstance(processor, dict) else processor)

    # --- forward -------------------------------------------------------------------------------

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor,
        timestep: torch.Tensor,
        img_ids: torch.Tensor,
        txt_ids: torch.Tensor,
        guidance: torch.Tensor | None = None,
        joint_attention_kwargs: dict[str, Any] | None = None,
        controlnet_block_samples: Sequence[torch.Tensor] | None = None,
        controlnet_single_block_samples: Sequence[torch.Tensor] | None = None,
        return_dict: bool = True,
        controlnet_blocks_repeat: bool = False,
        ip_adapter_image_embeds: Sequence[torch.Tensor] | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the flow velocity of the packed latents.

        Args:
            hidden_states: Packed latents ``(batch, image_tokens, in_channels)``.
            encoder_hidden_states: T5 states ``(batch, text_tokens, joint_attention_dim)``.
            pooled_projections: Pooled CLIP embedding ``(batch, pooled_projection_dim)``.
            timestep: Flow time (sigma, in [0, 1]) per batch element; multiplied by 1000 here.
            img_ids: ``(image_tokens, 3)`` positions of the image tokens.
            txt_ids: ``(text_tokens, 3)`` positions of the text tokens (zeros).
            guidance: Guidance scale per batch element (dev models; multiplied by 1000 here).
            joint_attention_kwargs: Extra keywords for the attention processors.
            controlnet_block_samples: Residuals added after the double-stream blocks (FLUX ControlNets).
            controlnet_single_block_samples: Residuals added after the single-stream blocks.
            return_dict: Return a :class:`Transformer2DModelOutput` rather than a 1-tuple.
            controlnet_blocks_repeat: Cycle the double-stream residuals over the blocks (XLabs ControlNets).
            ip_adapter_image_embeds: With IP-Adapters loaded, one CLIP image-embedding tensor per adapter,
                ``(batch, images, dim)`` (also read from ``joint_attention_kwargs``, as diffusers passes it).

        Raises:
            ModelInputError: ids of the wrong rank, or no ``guidance`` for a dev model.
        """
        hidden_states = self.x_embedder(hidden_states)
        temb, encoder_hidden_states = embed_conditions(self, timestep, guidance, pooled_projections,
                                                       encoder_hidden_states, hidden_states.dtype)
        ids = torch.cat((_ids_2d(txt_ids, "txt_ids"), _ids_2d(img_ids, "img_ids")), dim=0)
        rope = self.pos_embed(ids)
        joint_attention_kwargs = dict(joint_attention_kwargs or {})
        ip_embeds = joint_attention_kwargs.pop("ip_adapter_image_embeds", ip_adapter_image_embeds)
        kwargs = dict(temb=temb, image_rotary_emb=rope, joint_attention_kwargs=joint_attention_kwargs)
        double_kwargs = kwargs
        if ip_embeds is not None and self.encoder_hid_proj is not None:
            double_kwargs = {**kwargs, "joint_attention_kwargs": {**joint_attention_kwargs,
                                                                  "ip_hidden_states": self.encoder_hid_proj(ip_embeds)}}
        for i, block in enumerate(self.transformer_blocks):
            encoder_hidden_states, hidden_states = block(
                hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, **double_kwargs)
            if controlnet_block_samples is not None:
                hidden_states = hidden_states + _controlnet_residual(
                    controlnet_block_samples, i, len(self.transformer_blocks), controlnet_blocks_repeat)
        for i, block in enumerate(self.single_transformer_blocks):
            encoder_hidden_states, hidden_states = block(
                hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, **kwargs)
            if controlnet_single_block_samples is not None:
                hidden_states = hidden_states + _controlnet_residual(
                    controlnet_single_block_samples, i, len(self.single_transformer_blocks), False)
        output = self.proj_out(self.norm_out(hidden_states, temb))
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)
