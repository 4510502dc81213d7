"""Stable Diffusion 1.x / 2.x step blocks."""

from .before_denoise import (
    StableDiffusionAutoPrepareLatentsStep,
    StableDiffusionAutoSetTimestepsStep,
    StableDiffusionImg2ImgPrepareLatentsStep,
    StableDiffusionImg2ImgSetTimestepsStep,
    StableDiffusionInpaintPrepareLatentsStep,
    StableDiffusionInpaintSetTimestepsStep,
    StableDiffusionInputStep,
    StableDiffusionPrepareLatentsStep,
    StableDiffusionSetTimestepsStep,
)
from .controlnet import (
    StableDiffusionAutoControlNetDenoiseStep,
    StableDiffusionAutoControlNetInputStep,
    StableDiffusionAutoDenoiseStep,
    StableDiffusionAutoInpaintControlNetDenoiseStep,
    StableDiffusionControlNetDenoiseStep,
    StableDiffusionControlNetInputStep,
    StableDiffusionControlNetLoopDenoiser,
    StableDiffusionInpaintControlNetDenoiseStep,
)
from .decoders import StableDiffusionAutoDecodeStep, StableDiffusionDecodeStep, StableDiffusionInpaintDecodeStep
from .denoise import (
    StableDiffusionDenoiseLoopWrapper,
    StableDiffusionDenoiseStep,
    StableDiffusionInpaintDenoiseStep,
    StableDiffusionInpaintLoopAfterDenoiser,
    StableDiffusionInpaintLoopBeforeDenoiser,
    StableDiffusionLoopAfterDenoiser,
    StableDiffusionLoopBeforeDenoiser,
    StableDiffusionLoopDenoiser,
)
from .encoders import (
    StableDiffusionAutoVaeEncoderStep,
    StableDiffusionInpaintVaeEncoderStep,
    StableDiffusionTextEncoderStep,
    StableDiffusionVaeEncoderStep,
)

from .ip_adapter import StableDiffusionAutoIPAdapterStep, StableDiffusionIPAdapterStep
from .weighted_encoders import StableDiffusionWeightedTextEncoderStep

__all__ = [name for name in dir() if name.startswith("StableDiffusion")]
