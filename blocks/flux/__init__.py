"""FLUX.1 step blocks (dev and schnell): text encoders, packed latents and the resolution-shifted
flow-matching schedule, the transformer denoise loop with the distilled guidance and optional true CFG,
image-to-image and inpainting, ControlNet, IP-Adapter, Fill, Canny / Depth, Kontext, Redux, unpack and decode."""

from .controlnet import (
    FluxAutoControlNetInputStep,
    FluxAutoDenoiseStep,
    FluxAutoInpaintControlNetDenoiseStep,
    FluxControlNetDenoiseStep,
    FluxControlNetInputStep,
    FluxControlNetLoopDenoiser,
    FluxInpaintControlNetDenoiseStep,
)
from .before_denoise import FluxImg2ImgSetTimestepsStep, FluxInputStep, FluxPrepareLatentsStep, FluxSetTimestepsStep
from .decoders import FluxAutoDecodeStep, FluxDecodeStep, FluxInpaintDecodeStep
from .denoise import (
    FluxDenoiseLoopWrapper,
    FluxDenoiseStep,
    FluxInpaintDenoiseStep,
    FluxInpaintLoopAfterDenoiser,
    FluxLoopAfterDenoiser,
    FluxLoopDenoiser,
)
from .conditioned import (
    FluxConditionLoopDenoiser,
    FluxControlDenoiseStep,
    FluxControlImageStep,
    FluxFillDenoiseStep,
    FluxFillLatentsStep,
    FluxFillLoopDenoiser,
    FluxFillSetTimestepsStep,
)
from .encoders import FluxAutoVaeEncoderStep, FluxInpaintVaeEncoderStep, FluxTextEncoderStep, FluxVaeEncoderStep
from .redux import FluxReduxEncoderStep
from .ip_adapter import FluxAutoIPAdapterStep, FluxIPAdapterStep
from .kontext import FluxKontextDenoiseStep, FluxKontextImageStep, FluxKontextLoopDenoiser
from .image_latents import (
    FluxAutoPrepareLatentsStep,
    FluxAutoSetTimestepsStep,
    FluxImg2ImgPrepareLatentsStep,
    FluxInpaintPrepareLatentsStep,
)

__all__ = [name for name in dir() if name.startswith("Flux")]
