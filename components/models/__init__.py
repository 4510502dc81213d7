"""diffblocks' own implementations of the diffusers-format models (no diffusers needed at run time).

Weight names, config keys and numerics follow diffusers, so ``from_pretrained`` reads diffusers folders and
Hub repos and ``save_pretrained`` writes folders diffusers reads.
"""

from .attention import Attention, AttentionProcessorMixin, AttnProcessor, SpatialSelfAttention
from .autoencoder_kl import AutoencoderKL
from .flux_controlnet import FluxControlNetModel, FluxControlNetOutput, FluxMultiControlNetModel
from .flux_transformer import FluxTransformer2DModel
from .controlnet import ControlNetModel, ControlNetOutput
from .controlnet_multi import MultiControlNetModel
from .distributions import DiagonalGaussianDistribution
from ..config import FrozenConfig
from .modeling import ModelMixin
from .redux import ReduxImageEncoder, ReduxImageEncoderOutput
from .outputs import AutoencoderKLOutput, DecoderOutput, UNet2DConditionOutput, UNet2DOutput
from .transformer_2d import BasicTransformerBlock, Transformer2DModel
from .unet_2d import UNet2DModel
from .unet_2d_condition import UNet2DConditionModel

__all__ = [
    "Attention",
    "AttentionProcessorMixin",
    "AttnProcessor",
    "AutoencoderKL",
    "AutoencoderKLOutput",
    "BasicTransformerBlock",
    "ControlNetModel",
    "ControlNetOutput",
    "MultiControlNetModel",
    "DecoderOutput",
    "DiagonalGaussianDistribution",
    "FluxControlNetModel",
    "FluxControlNetOutput",
    "FluxMultiControlNetModel",
    "FluxTransformer2DModel",
    "FrozenConfig",
    "ModelMixin",
    "ReduxImageEncoder",
    "ReduxImageEncoderOutput",
    "SpatialSelfAttention",
    "Transformer2DModel",
    "UNet2DConditionModel",
    "UNet2DConditionOutput",
    "UNet2DModel",
    "UNet2DOutput",
]
