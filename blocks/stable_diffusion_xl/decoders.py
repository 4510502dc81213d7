"""Stable Diffusion XL decode: the SD decode, in float32 when an fp16 VAE asks for upcasting."""

from __future__ import annotations

import torch

from ...modular_pipelines import AutoPipelineBlocks
from ..stable_diffusion.decoders import StableDiffusionDecodeStep, StableDiffusionInpaintDecodeStep, decode_latents


def decode_latents_upcast(vae, latents: torch.Tensor, generator=None) -> torch.Tensor:
    """Decode in float32 when the VAE is fp16 with ``force_upcast`` (SDXL's VAE overflows in fp16)."""
    if vae.dtype != torch.float16 or not vae.config.force_upcast:
        return decode_latents(vae, latents, generator)
    vae.to(torch.float32)
    try:
        return decode_latents(vae, latents.float(), generator)
    finally:
        vae.to(torch.float16)


class StableDiffusionXLDecodeStep(StableDiffusionDecodeStep):
    """Decode the latents with the VAE (upcast when needed) and postprocess them."""

    model_name = "stable-diffusion-xl"
    decode = staticmethod(decode_latents_upcast)


class StableDiffusionXLInpaintDecodeStep(StableDiffusionInpaintDecodeStep):
    """Decode (upcast when needed), then paste a repainted crop back into the original image."""

    model_name = "stable-diffusion-xl"
    decode = staticmethod(decode_latents_upcast)


class StableDiffusionXLAutoDecodeStep(AutoPipelineBlocks):
    """Decode; paste the repainted crop back when `padding_mask_crop` is given."""

    block_classes = [StableDiffusionXLInpaintDecodeStep, StableDiffusionXLDecodeStep]
    block_names = ["inpaint", "decode"]
    block_trigger_inputs = ["padding_mask_crop", None]
