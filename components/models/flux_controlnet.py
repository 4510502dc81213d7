"""The FLUX.1 ControlNet (``FluxControlNetModel``; ``FluxMultiControlNetModel`` for several) in diffusers' layout:
InstantX / Shakker-Labs ControlNets (the control image as packed VAE latents; ``num_mode`` for the Union ones) and
XLabs ones (the control image in pixels, through ``input_hint_block``).

It is a shallow copy of the transformer's trunk (a few double- and single-stream blocks) that reads the packed
latents plus the control tokens; after each block a zero-initialised linear layer gives the residual that
:class:`~diffblocks.components.models.FluxTransformer2DModel` adds after its blocks (``controlnet_block_samples``,
``controlnet_single_block_samples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..config import register_to_config
from ..errors import AdapterError, ModelInputError
from .controlnet import ControlNetConditioningEmbedding, _zero
from .flux_transformer import FluxTransformer2DModel, _ids_2d, build_trunk, embed_conditions
from .modeling import ModelMixin
from .outputs import ModelOutput

_OWNER = "FluxControlNetModel"


@dataclass
class FluxControlNetOutput(ModelOutput):
    """The residuals for the transformer: one per double-stream block of the ControlNet, and one per single-stream
    block (None when it has none), already times ``conditioning_scale``."""

    controlnet_block_samples: list[torch.Tensor] | None
    controlnet_single_block_samples: list[torch.Tensor] | None


class FluxControlNetModel(ModelMixin):
    """A FLUX.1 ControlNet with diffusers' config keys and weight names.

    Args:
        patch_size, in_channels, num_layers, num_single_layers, attention_head_dim, num_attention_heads,
        joint_attention_dim, pooled_projection_dim, guidance_embeds, axes_dims_rope: as the transformer's
            (``num_layers`` / ``num_single_layers``: the ControlNet's own, usually fewer).
        num_mode: Union ControlNets: the number of control modes (canny, depth, ...), each a learned token put
            before the text tokens.
        conditioning_embedding_channels: XLabs ControlNets: the control image goes through a small conv encoder
            (``input_hint_block``) to this many channels instead of being VAE-encoded.
    """

    @register_to_config
    def __init__(
        self,
        patch_size: int = 1,
        in_channels: int = 64,
        num_layers: int = 19,
        num_single_layers: int = 38,
        attention_head_dim: int = 128,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 4096,
        pooled_projection_dim: int = 768,
        guidance_embeds: bool = False,
        axes_dims_rope: Sequence[int] = (16, 56, 56),
        num_mode: int | None = None,
        conditioning_embedding_channels: int | None = None,
    ):
        super().__init__()
        build_trunk(self, in_channels, num_layers, num_single_layers, attention_head_dim, num_attention_heads,
                    joint_attention_dim, pooled_projection_dim, guidance_embeds, axes_dims_rope)
        inner = self.inner_dim
        self.controlnet_blocks = nn.ModuleList([_zero(nn.Linear(inner, inner)) for _ in range(num_layers)])
        self.controlnet_single_blocks = nn.ModuleList([_zero(nn.Linear(inner, inner)) for _ in range(num_single_layers)])
        self.union = num_mode is not None
        if self.union:
            self.controlnet_mode_embedder = nn.Embedding(num_mode, inner)
        if conditioning_embedding_channels is not None:
            self.input_hint_block = ControlNetConditioningEmbedding(conditioning_embedding_channels,
                                                                    block_out_channels=(16, 16, 16, 16))
            self.controlnet_x_embedder = nn.Linear(in_channels, inner)
        else:
            self.input_hint_block = None
            self.controlnet_x_embedder = _zero(nn.Linear(in_channels, inner))

    @classmethod
    def from_transformer(cls, transformer: FluxTransformer2DModel, num_layers: int = 4, num_single_layers: int = 10,
                         load_weights_from_transformer: bool = True, **config: Any) -> "FluxControlNetModel":
        """A ControlNet with the transformer's widths and its first blocks, the usual start of training.

        Args:
            num_layers / num_single_layers: Blocks of each kind (copied from the transformer's first ones).
            load_weights_from_transformer: Copy the embedders and those blocks' weights; the zero layers stay new.
            config: ``num_mode`` / ``conditioning_embedding_channels``.
        """
        shared = {key: transformer.config[key] for key in cls.init_params()
                  if key in transformer.config and key not in ("num_layers", "num_single_layers", *config)}
        controlnet = cls(**shared, num_layers=num_layers, num_single_layers=num_single_layers, **config)
        if load_weights_from_transformer:
            for name in ("pos_embed", "time_text_embed", "context_embedder", "x_embedder"):
                getattr(controlnet, name).load_state_dict(getattr(transformer, name).state_dict())
            for ours, theirs in ((controlnet.transformer_blocks, transformer.transformer_blocks),
                                 (controlnet.single_transformer_blocks, transformer.single_transformer_blocks)):
                for block, source in zip(ours, theirs):
                    block.load_state_dict(source.state_dict())
        return controlnet

    @classmethod
    def from_single_file(cls, path, config=None, torch_dtype: torch.dtype | None = None,
                         revision: str | None = None) -> "FluxControlNetModel":
        """A ControlNet from one file, as ComfyUI keeps them: XLabs' own layout (``flux-canny-controlnet-v3``), or
        diffusers' (an InstantX or Union ControlNet's weights alone); the config read off the tensors' shapes.
        Built on the meta device and filled from the memory-mapped file, as :meth:`from_pretrained`.

        Args:
            path: The file, or ``owner/name/FILE`` on the Hub.
            config: The config, where the shapes do not give it (heads of other than 128 channels): a dict, or a
                folder / Hub repo with ``config.json``.
            torch_dtype: Floating-point dtype of the parameters; default ``torch.get_default_dtype()``.

        Raises:
            MissingFileError: no such file. WeightsMismatchError: tensors that fit no parameter, or too few.
            ConfigError: the config cannot be read off the file and none was given.
        """
        from ..checkpoints import config_of
        from .flux_controlnet_files import file_config, from_xlabs, is_xlabs
        from .modeling import empty_weights
        from .weights import read_weights, single_file

        file = single_file(path, revision)
        state_dict = read_weights([file])
        config = file_config(state_dict, str(file)) if config is None else config_of(cls, config, (None,), revision)
        with empty_weights():
            model = cls.from_config(config)
        model.load_weights(from_xlabs(state_dict, model) if is_xlabs(state_dict) else state_dict,
                           torch_dtype=torch_dtype or torch.get_default_dtype(), source=str(file))
        return model.eval()

    def forward(
        self,
        hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        controlnet_mode: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
        encoder_hidden_states: torch.Tensor | None = None,
        pooled_projections: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        img_ids: torch.Tensor | None = None,
        txt_ids: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        joint_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> FluxControlNetOutput | tuple:
        """The residuals for the transformer's blocks.

        Args:
            hidden_states: Packed latents ``(batch, image_tokens, in_channels)``.
            controlnet_cond: The control image as packed latents ``(batch, image_tokens, in_channels)``, or in
                pixels ``(batch, 3, height, width)`` for a ControlNet with ``input_hint_block``.
            controlnet_mode: Union ControlNets: the mode per batch element, ``(batch, 1)`` long.
            conditioning_scale: Multiplies every residual.
            encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance,
                joint_attention_kwargs: as the transformer's.

        Raises:
            ModelInputError: a Union ControlNet without ``controlnet_mode``, or ids of the wrong rank.
        """
        hidden_states = self.x_embedder(hidden_states)
        if self.input_hint_block is not None:
            controlnet_cond = self._hint_tokens(self.input_hint_block(controlnet_cond))
        hidden_states = hidden_states + self.controlnet_x_embedder(controlnet_cond)
        temb, encoder_hidden_states = embed_conditions(self, timestep, guidance, pooled_projections,
                                                       encoder_hidden_states, hidden_states.dtype)
        txt_ids, img_ids = _ids_2d(txt_ids, "txt_ids"), _ids_2d(img_ids, "img_ids")
        if self.union:
            if controlnet_mode is None:
                raise ModelInputError.missing(_OWNER, "controlnet_mode",
                                              f"a Union ControlNet needs one of its {self.config.num_mode} modes per image")
            encoder_hidden_states = torch.cat([self.controlnet_mode_embedder(controlnet_mode), encoder_hidden_states], 1)
            txt_ids = torch.cat([txt_ids[:1], txt_ids], dim=0)
        rope = self.pos_embed(torch.cat((txt_ids, img_ids), dim=0))
        kwargs = dict(temb=temb, image_rotary_emb=rope, joint_attention_kwargs=joint_attention_kwargs)
        samples, single_samples = [], []
        for block, out in zip(self.transformer_blocks, self.controlnet_blocks):
            encoder_hidden_states, hidden_states = block(
                hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, **kwargs)
            samples.append(out(hidden_states) * conditioning_scale)
        for block, out in zip(self.single_transformer_blocks, self.controlnet_single_blocks):
            encoder_hidden_states, hidden_states = block(
                hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, **kwargs)
            single_samples.append(out(hidden_states) * conditioning_scale)
        result = (samples or None, single_samples or None)
        return FluxControlNetOutput(*result) if return_dict else result

    def _hint_tokens(self, hint: torch.Tensor) -> torch.Tensor:
        """The conv encoder's feature map ``(batch, channels, h, w)`` as tokens of ``patch_size`` x ``patch_size``
        patches, row-major."""
        return F.pixel_unshuffle(hint, self.config.patch_size).flatten(2).transpose(1, 2)


class FluxMultiControlNetModel(nn.Module):
    """Several FLUX.1 ControlNets acting together, each with its own control image, mode and scale, their residuals
    summed; or one Union ControlNet given several control images (one mode each), read once per image.

    Args:
        controlnets: The ControlNets, in the order of their control images.

    Raises:
        AdapterError: ``controlnets`` is empty.
    """

    def __init__(self, controlnets: Sequence[FluxControlNetModel]):
        super().__init__()
        if len(controlnets) == 0:
            raise AdapterError("FluxMultiControlNetModel needs at least one ControlNet")
        self.nets = nn.ModuleList(controlnets)

    @property
    def config(self):
        """The first ControlNet's config (whether they take a guidance scale: FluxControlNetPipeline asks it)."""
        return self.nets[0].config

    @property
    def input_hint_block(self):
        """The first ControlNet's (XLabs ControlNets have one: their residuals cycle over the blocks)."""
        return self.nets[0].input_hint_block

    def forward(self, hidden_states: torch.Tensor, controlnet_cond: Sequence[torch.Tensor],
                controlnet_mode: Sequence[torch.Tensor | None] | None = None,
                conditioning_scale: Sequence[float] | float = 1.0, return_dict: bool = True,
                **kwargs: Any) -> FluxControlNetOutput | tuple:
        """The sum of every ControlNet's residuals; the other arguments are :meth:`FluxControlNetModel.forward`'s.

        Args:
            controlnet_cond: One control image per ControlNet (per image, for one Union ControlNet).
            controlnet_mode: One mode (``(batch, 1)`` long, or None) per image; None: no modes.
            conditioning_scale: One scale per image, or one number for all.

        Raises:
            AdapterError: the images, modes and scales do not come one per ControlNet.
        """
        count = len(controlnet_cond)
        nets = list(self.nets) if len(self.nets) > 1 else [self.nets[0]] * count
        modes = [None] * count if controlnet_mode is None else list(controlnet_mode)
        scales = [conditioning_scale] * count if isinstance(conditioning_scale, (int, float)) else list(conditioning_scale)
        if not len(nets) == len(modes) == len(scales) == count:
            raise AdapterError(f"FluxMultiControlNetModel: {count} control images, {len(modes)} modes and {len(scales)} "
                               f"scales for {len(self.nets)} ControlNets; give one of each per ControlNet")
        total = None
        for net, image, mode, scale in zip(nets, controlnet_cond, modes, scales):
            out = net(hidden_states=hidden_states, controlnet_cond=image, controlnet_mode=mode,
                      conditioning_scale=scale, return_dict=False, **kwargs)
            total = out if total is None else tuple(
                mine if mine is None or theirs is None else [a + b for a, b in zip(mine, theirs)]
                for mine, theirs in zip(total, out))
        return FluxControlNetOutput(*total) if return_dict else total
