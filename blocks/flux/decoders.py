"""FLUX.1 decode: unpack the latent tokens, undo the VAE's shift and scaling, decode, postprocess."""

from __future__ import annotations

import torch

from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, invalid
from ..processors import paste_repainted_crops
from ..stable_diffusion.decoders import CROP_PASTE_INPUTS, OUTPUT_TYPES
from ..stable_diffusion.inputs import IMAGE
from ..vae import decode_latents
from .inputs import IMAGE_PROCESSOR, MODEL_NAME, VAE, flux_processor, latent_size, unpack_latents, vae_scale_factor


class FluxDecodeStep(ModularPipelineBlocks):
    """Unpack the latent tokens to ``(batch, 16, h, w)``, decode them with the VAE (``z / scaling_factor +
    shift_factor``) and postprocess; ``output_type="latent"`` returns the packed latents, as FluxPipeline does."""

    model_name = MODEL_NAME
    expected_components = [VAE, IMAGE_PROCESSOR]
    inputs = [
        InputParam("latents", type_hint=FINITE_TENSOR, required=True, description="the packed latents"),
        InputParam("height", type_hint=int, required=True, description="the image height in pixels"),
        InputParam("width", type_hint=int, required=True, description="the image width in pixels"),
        InputParam("output_type", type_hint=str, default="pil", description="pil, np, pt or latent"),
    ]
    intermediate_outputs = [OutputParam("images", type_hint=IMAGE.type_hint,
                                        description="the generated images (list of PIL, array or tensor)")]

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
            rows, cols = latent_size(block_state.height, block_state.width, vae_scale_factor(components))
            latents = unpack_latents(block_state.latents, rows, cols).to(dtype=vae.dtype)
            pixels = decode_latents(vae, latents)
            block_state.images = components.image_processor.postprocess(pixels, output_type=output_type)
        self.set_block_state(state, block_state)
        return components, state


class FluxInpaintDecodeStep(FluxDecodeStep):
    """Decode, then paste a repainted crop (``padding_mask_crop``) back into the original image (PIL output)."""

    inputs = FluxDecodeStep.inputs + CROP_PASTE_INPUTS

    def __call__(self, components, state):
        components, state = super().__call__(components, state)
        paste_repainted_crops(state, flux_processor(components))
        return components, state


class FluxAutoDecodeStep(AutoPipelineBlocks):
    """Decode; paste the repainted crop back when `padding_mask_crop` is given."""

    choices = {
        "inpaint": (FluxInpaintDecodeStep, "padding_mask_crop"),
        "decode": (FluxDecodeStep, None),
    }
