"""Stable Diffusion decode: latents to images (``output_type`` pil / np / pt / latent)."""

from __future__ import annotations

import inspect

import torch

from ...components.image_processor import VaeImageProcessor
from ...components.models import AutoencoderKL
from ...components.spec import ComponentSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR
from ..common import image_processor_for
from .inputs import IMAGE, MASK_IMAGE, PADDING_MASK_CROP

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def decode_latents(vae, latents: torch.Tensor, generator=None) -> torch.Tensor:
    """VAE pixels in [-1, 1] for scaled latents (undoing ``shift_factor`` / ``latents_mean`` when set)."""
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        latents = latents * std / config.scaling_factor + mean
    else:
        latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
    kwargs = {"generator": generator} if "generator" in inspect.signature(vae.decode).parameters else {}
    return vae.decode(latents, return_dict=False, **kwargs)[0]


class StableDiffusionDecodeStep(ModularPipelineBlocks):
    """Decode the latents with the VAE and postprocess them."""

    model_name = "stable-diffusion"
    decode = staticmethod(decode_latents)
    expected_components = [
        ComponentSpec("vae", AutoencoderKL),
        ComponentSpec("image_processor", VaeImageProcessor, config={"vae_scale_factor": 8},
                      default_creation_method="from_config"),
    ]
    inputs = [
        InputParam("latents", type_hint=FINITE_TENSOR, required=True),
        InputParam("output_type", type_hint=str, default="pil", description="pil, np, pt or latent"),
        InputParam("generator", type_hint=torch.Generator | list[torch.Generator]),
    ]
    intermediate_outputs = [OutputParam("images", description="the generated images (list of PIL, array or tensor)")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        output_type = block_state.output_type
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if output_type == "latent":
            block_state.images = block_state.latents
        else:
            vae = components.vae
            pixels = self.decode(vae, block_state.latents.to(vae.dtype), block_state.generator)
            block_state.images = image_processor_for(components).postprocess(
                pixels, output_type=output_type, do_denormalize=[True] * pixels.shape[0])
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintDecodeStep(StableDiffusionDecodeStep):
    """Decode, then paste a repainted crop (``padding_mask_crop``) back into the original image (PIL output)."""

    inputs = StableDiffusionDecodeStep.inputs + [
        IMAGE.replace(required=False, description="the original image the crop is pasted into"),
        MASK_IMAGE.replace(required=False),
        PADDING_MASK_CROP,
        InputParam("crops_coords", type_hint=tuple),
    ]

    def __call__(self, components, state):
        components, state = super().__call__(components, state)
        crop = state.get("crops_coords")
        if state.get("padding_mask_crop") is not None and crop is not None and state.get("output_type") in (None, "pil"):
            processor = image_processor_for(components)
            image, mask = state.get("image"), state.get("mask_image")
            state.set("images", [processor.apply_overlay(mask, image, out, crop) for out in state.get("images")])
        return components, state


class StableDiffusionAutoDecodeStep(AutoPipelineBlocks):
    """Decode; paste the repainted crop back when `padding_mask_crop` is given."""

    block_classes = [StableDiffusionInpaintDecodeStep, StableDiffusionDecodeStep]
    block_names = ["inpaint", "decode"]
    block_trigger_inputs = ["padding_mask_crop", None]
