"""Stable Diffusion XL step blocks."""

from .before_denoise import (
    StableDiffusionXLAutoPrepareAdditionalConditioningStep,
    StableDiffusionXLAutoPrepareLatentsStep,
    StableDiffusionXLAutoSetTimestepsStep,
    StableDiffusionXLImg2ImgPrepareAdditionalConditioningStep,
    StableDiffusionXLImg2ImgPrepareLatentsStep,
    StableDiffusionXLImg2ImgSetTimestepsStep,
    StableDiffusionXLInpaintPrepareLatentsStep,
    StableDiffusionXLInpaintSetTimestepsStep,
    StableDiffusionXLInputStep,
    StableDiffusionXLPrepareAdditionalConditioningStep,
    StableDiffusionXLPrepareLatentsStep,
    StableDiffusionXLSetTimestepsStep,
)
from .controlnet import (
    StableDiffusionXLAutoControlNetDenoiseStep,
    StableDiffusionXLAutoControlNetInputStep,
    StableDiffusionXLAutoDenoiseStep,
    StableDiffusionXLAutoInpaintControlNetDenoiseStep,
    StableDiffusionXLControlNetDenoiseStep,
    StableDiffusionXLControlNetInputStep,
    StableDiffusionXLControlNetLoopDenoiser,
    StableDiffusionXLInpaintControlNetDenoiseStep,
)
from .decoders import StableDiffusionXLAutoDecodeStep, StableDiffusionXLDecodeStep, StableDiffusionXLInpaintDecodeStep
from .denoise import (
    StableDiffusionXLDenoiseLoopAfterDenoiser,
    StableDiffusionXLDenoiseLoopWrapper,
    StableDiffusionXLDenoiseStep,
    StableDiffusionXLInpaintDenoiseStep,
    StableDiffusionXLInpaintLoopAfterDenoiser,
    StableDiffusionXLInpaintLoopBeforeDenoiser,
    StableDiffusionXLLoopAfterDenoiser,
    StableDiffusionXLLoopBeforeDenoiser,
    StableDiffusionXLLoopDenoiser,
)
from .encoders import (
    StableDiffusionXLAutoVaeEncoderStep,
    StableDiffusionXLInpaintVaeEncoderStep,
    StableDiffusionXLTextEncoderStep,
    StableDiffusionXLVaeEncoderStep,
)

from .ip_adapter import StableDiffusionXLAutoIPAdapterStep, StableDiffusionXLIPAdapterStep
from .weighted_encoders import StableDiffusionXLWeightedTextEncoderStep

__all__ = [name for name in dir() if name.startswith("StableDiffusionXL")]
