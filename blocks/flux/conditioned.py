"""FLUX.1 models that read a condition beside the latents, channel-wise, with more input channels than they
predict: Fill (``FLUX.1-Fill-dev``, inpainting and outpainting: the masked image's latents and the mask), as
FluxFillPipeline, and Canny / Depth [dev] (the control image's latents), as FluxControlPipeline. The loop takes plain
Euler steps (the model, not a blend, keeps the unmasked region).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...components.image_processor import MaskImageProcessor
from ...components.spec import ComponentSpec
from ...modular_pipelines import InputParam, ModularPipelineBlocks, OutputParam
from ..common import repeat_to
from ..stable_diffusion.before_denoise import check_generators
from ..checks import IMAGE_TYPE
from ..stable_diffusion.inputs import GENERATOR, HEIGHT, IMAGE, MASK_IMAGE, NUM_IMAGES, WIDTH
from ..vae import encode_image
from .before_denoise import FLUX_STRENGTH, FluxImg2ImgSetTimestepsStep
from .controlnet import control_latents
from .denoise import FluxDenoiseLoopWrapper, FluxLoopAfterDenoiser, FluxLoopDenoiser
from .inputs import (
    GUIDANCE_SCALE,
    IMAGE_PROCESSOR,
    MODEL_NAME,
    VAE,
    execution_device,
    flux_processor,
    image_size,
    pack_latents,
    vae_scale_factor,
)

MASK_PROCESSOR = ComponentSpec("mask_processor", MaskImageProcessor, config={"vae_scale_factor": 16},
                               default_creation_method="from_config")
CONDITION = "condition_latents"


class FluxFillSetTimestepsStep(FluxImg2ImgSetTimestepsStep):
    """The schedule cut by ``strength``, which defaults to 1 (the whole schedule), as FluxFillPipeline's."""

    inputs = [FLUX_STRENGTH.replace(default=1.0) if p.name == "strength" else p
              for p in FluxImg2ImgSetTimestepsStep.inputs]


class FluxFillLatentsStep(ModularPipelineBlocks):
    """Encode the image with the masked region blanked (drawing from the generator after the noise) and lay the
    mask out as the latent grid's pixels: each latent pixel's ``f x f`` mask pixels as channels, ``f`` the VAE's
    scale factor; both packed, side by side."""

    model_name = MODEL_NAME
    expected_components = [VAE, IMAGE_PROCESSOR, MASK_PROCESSOR]
    inputs = [IMAGE, MASK_IMAGE, HEIGHT, WIDTH, GENERATOR, NUM_IMAGES,
              InputParam("batch_size", type_hint=int, required=True), InputParam("dtype", type_hint=torch.dtype)]
    intermediate_outputs = [OutputParam(CONDITION, type_hint=torch.Tensor,
                                        description="packed masked-image latents and mask, read beside the latents")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        check_generators(self, block_state)
        height, width = image_size(block_state)
        image = flux_processor(components).preprocess(block_state.image, height=height, width=width)
        mask = flux_processor(components, "mask_processor").preprocess(block_state.mask_image, height=height,
                                                                         width=width)
        vae, device = components.vae, execution_device(components)
        dtype = block_state.dtype or vae.dtype
        masked = (image.to(torch.float32) * (1 - mask)).to(device=device, dtype=dtype)
        batch = block_state.batch_size * block_state.num_images_per_prompt
        latents = repeat_to(encode_image(vae, masked, block_state.generator).to(device=device, dtype=dtype), batch)
        factor = vae_scale_factor(components)
        mask = F.pixel_unshuffle(repeat_to(mask, batch)[:, :1].to(device), factor)  # (batch, f * f, rows, cols)
        block_state.condition_latents = torch.cat((pack_latents(latents), pack_latents(mask)), dim=-1)
        self.set_block_state(state, block_state)
        return components, state


class FluxControlImageStep(ModularPipelineBlocks):
    """FLUX.1 Canny / Depth [dev]: the control image (edges, depth) VAE-encoded (drawing from the generator, before
    the noise is drawn) and packed, to be read beside the latents."""

    model_name = MODEL_NAME
    expected_components = [VAE, IMAGE_PROCESSOR]
    inputs = [InputParam("control_image", type_hint=IMAGE_TYPE, required=True,
                         description="the structure to follow: a Canny edge map, a depth map"),
              HEIGHT, WIDTH, GENERATOR, NUM_IMAGES, InputParam("batch_size", type_hint=int, required=True),
              InputParam("dtype", type_hint=torch.dtype)]
    intermediate_outputs = [OutputParam(CONDITION, type_hint=torch.Tensor,
                                        description="the packed control latents, read beside the latents")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        check_generators(self, block_state)
        block_state.condition_latents = control_latents(components, block_state, block_state.control_image)
        self.set_block_state(state, block_state)
        return components, state


class FluxConditionLoopDenoiser(FluxLoopDenoiser):
    """Predict the velocity from the latents with ``condition_latents`` beside them (every branch): FLUX.1 Canny /
    Depth [dev]'s control latents, Fill's masked image and mask."""

    inputs = FluxLoopDenoiser.inputs + [InputParam(CONDITION, type_hint=torch.Tensor, required=True)]

    def controls(self, components, block_state, i, t) -> dict:
        return {CONDITION: block_state.condition_latents}


class FluxFillLoopDenoiser(FluxConditionLoopDenoiser):
    """As :class:`FluxConditionLoopDenoiser`, the distilled guidance defaulting to 30, FLUX.1-Fill-dev's."""

    inputs = [GUIDANCE_SCALE.replace(default=30.0) if p.name == "guidance_scale" else p
              for p in FluxConditionLoopDenoiser.inputs]


class FluxFillDenoiseStep(FluxDenoiseLoopWrapper):
    """The FLUX Fill denoise loop."""

    block_classes = [FluxFillLoopDenoiser, FluxLoopAfterDenoiser]


class FluxControlDenoiseStep(FluxDenoiseLoopWrapper):
    """The FLUX.1 Canny / Depth [dev] denoise loop."""

    block_classes = [FluxConditionLoopDenoiser, FluxLoopAfterDenoiser]
