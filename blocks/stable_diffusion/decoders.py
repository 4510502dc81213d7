"""Stable Diffusion decode: latents to images (``output_type`` pil / np / pt / latent)."""

from __future__ import annotations

import torch

from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, invalid
from ..processors import image_processor_for, paste_repainted_crops
from ..vae import decode_latents
from .encoders import IMAGE_PROCESSOR, VAE
from .inputs import IMAGE, MASK_IMAGE, PADDING_MASK_CROP

OUTPUT_TYPES = ("pil", "np", "pt", "latent")

# what the inpaint decode steps read to paste a repainted crop back into the original image
CROP_PASTE_INPUTS = [
    IMAGE.replace(required=False, description="the original image the crop is pasted into"),
    MASK_IMAGE.replace(required=False),
    PADDING_MASK_CROP,
    InputParam("crops_coords", type_hint=tuple),
]


class StableDiffusionDecodeStep(ModularPipelineBlocks):
    """Decode the latents with the VAE and postprocess them."""

    model_name = "stable-diffusion"
    upcast_vae = False  # decode in float32 when an fp16 VAE asks for it (see blocks.vae)
    expected_components = [VAE, IMAGE_PROCESSOR]
    inputs = [
        InputParam("latents", type_hint=FINITE_TENSOR, required=True),
        InputParam("output_type", type_hint=str, default="pil", description="pil, np, pt or latent"),
        InputParam("generator", type_hint=torch.Generator | list[torch.Generator]),
    ]
    intermediate_outputs = [OutputParam("images", type_hint=IMAGE.type_hint, description="the generated images (list of PIL, array or tensor)")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        output_type = block_state.output_type
        if output_type not in OUTPUT_TYPES:
            raise invalid(self, "output_type", f"must be one of {', '.join(OUTPUT_TYPES)}", output_type)
        if output_type == "latent":
            block_state.images = block_state.latents
        else:
            vae = components.vae
            latents = block_state.latents.to(vae.dtype)
            pixels = decode_latents(vae, latents, block_state.generator, upcast=self.upcast_vae)
            block_state.images = image_processor_for(components).postprocess(
                pixels, output_type=output_type, do_denormalize=[True] * pixels.shape[0])
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintDecodeStep(StableDiffusionDecodeStep):
    """Decode, then paste a repainted crop (``padding_mask_crop``) back into the original image (PIL output)."""

    inputs = StableDiffusionDecodeStep.inputs + CROP_PASTE_INPUTS

    def __call__(self, components, state):
        components, state = super().__call__(components, state)
        paste_repainted_crops(state, image_processor_for(components))
        return components, state


class StableDiffusionAutoDecodeStep(AutoPipelineBlocks):
    """Decode; paste the repainted crop back when `padding_mask_crop` is given."""

    choices = {
        "inpaint": (StableDiffusionInpaintDecodeStep, "padding_mask_crop"),
        "decode": (StableDiffusionDecodeStep, None),
    }
