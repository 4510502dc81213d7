"""Stable Diffusion XL decode: the SD decode, in float32 when an fp16 VAE asks for upcasting (see blocks.vae)."""

from __future__ import annotations

from ...modular_pipelines import AutoPipelineBlocks
from ..stable_diffusion.decoders import StableDiffusionDecodeStep, StableDiffusionInpaintDecodeStep


class StableDiffusionXLDecodeStep(StableDiffusionDecodeStep):
    """Decode the latents with the VAE (upcast when needed) and postprocess them."""

    model_name = "stable-diffusion-xl"
    upcast_vae = True


class StableDiffusionXLInpaintDecodeStep(StableDiffusionInpaintDecodeStep):
    """Decode (upcast when needed), then paste a repainted crop back into the original image."""

    model_name = "stable-diffusion-xl"
    upcast_vae = True


class StableDiffusionXLAutoDecodeStep(AutoPipelineBlocks):
    """Decode; paste the repainted crop back when `padding_mask_crop` is given."""

    choices = {
        "inpaint": (StableDiffusionXLInpaintDecodeStep, "padding_mask_crop"),
        "decode": (StableDiffusionXLDecodeStep, None),
    }
