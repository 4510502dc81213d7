"""ControlNet for Stable Diffusion XL: the SD ControlNet steps with SDXL's pooled embeds and time ids."""

from __future__ import annotations

from ...modular_pipelines import AutoPipelineBlocks
from ..stable_diffusion.controlnet import StableDiffusionControlNetInputStep, StableDiffusionControlNetLoopDenoiser
from .denoise import (
    StableDiffusionXLDenoiseLoopWrapper,
    StableDiffusionXLDenoiseStep,
    StableDiffusionXLInpaintDenoiseStep,
    StableDiffusionXLInpaintLoopAfterDenoiser,
    StableDiffusionXLInpaintLoopBeforeDenoiser,
    StableDiffusionXLLoopAfterDenoiser,
    StableDiffusionXLLoopBeforeDenoiser,
    StableDiffusionXLLoopDenoiser,
)

_CONTROL_INPUTS = [p for p in StableDiffusionControlNetLoopDenoiser.inputs if p not in StableDiffusionXLLoopDenoiser.inputs]


class StableDiffusionXLControlNetInputStep(StableDiffusionControlNetInputStep):
    """Preprocess the control image(s) to the latents' size and schedule each ControlNet's strength."""

    model_name = "stable-diffusion-xl"


class StableDiffusionXLAutoControlNetInputStep(AutoPipelineBlocks):
    """Prepare ControlNet inputs when `control_image` is given; skipped otherwise."""

    choices = {
        "controlnet_input": (StableDiffusionXLControlNetInputStep, "control_image"),
    }


class StableDiffusionXLControlNetLoopDenoiser(StableDiffusionControlNetLoopDenoiser):
    """Predict the noise with ControlNet residuals, pooled embeds and time ids; all guidance branches batched."""

    model_name = "stable-diffusion-xl"
    inputs = StableDiffusionXLLoopDenoiser.inputs + _CONTROL_INPUTS
    conditioning = StableDiffusionXLLoopDenoiser.conditioning


class StableDiffusionXLControlNetDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
    """The denoise loop with ControlNet."""

    block_classes = [StableDiffusionXLLoopBeforeDenoiser, StableDiffusionXLControlNetLoopDenoiser,
                     StableDiffusionXLLoopAfterDenoiser]


class StableDiffusionXLInpaintControlNetDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
    """The inpainting denoise loop with ControlNet."""

    block_classes = [StableDiffusionXLInpaintLoopBeforeDenoiser, StableDiffusionXLControlNetLoopDenoiser,
                     StableDiffusionXLInpaintLoopAfterDenoiser]


class StableDiffusionXLAutoControlNetDenoiseStep(AutoPipelineBlocks):
    """Denoise: the ControlNet loop when `control_image` is given, else the plain loop."""

    choices = {
        "controlnet_denoise": (StableDiffusionXLControlNetDenoiseStep, "control_image"),
        "denoise": (StableDiffusionXLDenoiseStep, None),
    }


class StableDiffusionXLAutoInpaintControlNetDenoiseStep(AutoPipelineBlocks):
    """Denoise with ControlNet: the inpainting loop when `mask_image` is given, else the plain ControlNet loop."""

    choices = {
        "inpaint": (StableDiffusionXLInpaintControlNetDenoiseStep, "mask_image"),
        "controlnet_denoise": (StableDiffusionXLControlNetDenoiseStep, None),
    }


class StableDiffusionXLAutoDenoiseStep(AutoPipelineBlocks):
    """Denoise: a ControlNet loop when `control_image` is given (for inpainting when `mask_image` is too), else the
    inpainting loop when `mask_image` is given, else the plain loop."""

    choices = {
        "controlnet": (StableDiffusionXLAutoInpaintControlNetDenoiseStep, "control_image"),
        "inpaint": (StableDiffusionXLInpaintDenoiseStep, "mask_image"),
        "denoise": (StableDiffusionXLDenoiseStep, None),
    }
