"""ControlNet for FLUX.1 (InstantX / Shakker-Labs, Union, and XLabs ControlNets), as FluxControlNetPipeline (and
its image-to-image and inpainting pipelines):
the control image is VAE-encoded and packed like the latents (XLabs ControlNets take it in pixels), before the
initial noise is drawn; each step the ControlNet runs once on the prompt and its residuals go into the
transformer for every guidance branch.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ...components.errors import AdapterError
from ...components.models.flux_controlnet import FluxControlNetModel
from ...components.spec import ComponentSpec
from ...modular_pipelines import InputParam, ModularPipelineBlocks, OutputParam
from ...modular_pipelines.checks import Finite
from ..checks import IMAGE_TYPE, conflict
from ..stable_diffusion.before_denoise import check_generators
from ..stable_diffusion.controlnet import keep_schedule
from ..stable_diffusion.inputs import FRACTION, GENERATOR, HEIGHT, NUM_IMAGES, WIDTH
from ..vae import encode_image
from .denoise import (
    FluxDenoiseLoopWrapper,
    FluxInpaintLoopAfterDenoiser,
    FluxLoopAfterDenoiser,
    FluxLoopDenoiser,
    distilled_guidance,
)
from .inputs import IMAGE_PROCESSOR, MODEL_NAME, VAE, execution_device, flux_processor, image_size, pack_latents

CONTROLNET = ComponentSpec("controlnet", FluxControlNetModel)


class FluxControlNetInputStep(ModularPipelineBlocks):
    """Resize the control image to ``height`` x ``width`` (default 1024), VAE-encode it (drawing from the
    generator, before the noise is drawn) and pack it; schedule the ControlNet's strength over the steps."""

    model_name = MODEL_NAME
    expected_components = [CONTROLNET, VAE, IMAGE_PROCESSOR]
    inputs = [
        InputParam("control_image", type_hint=IMAGE_TYPE, required=True, description="the conditioning image"),
        InputParam("control_mode", type_hint=Annotated[int, Field(ge=0)],
                   description="Union ControlNets: which control the image is (their model card lists the modes)"),
        InputParam("controlnet_conditioning_scale", type_hint=Annotated[float, Finite], default=1.0,
                   description="residual scale"),
        InputParam("control_guidance_start", type_hint=FRACTION, default=0.0,
                   description="fraction of steps before the ControlNet acts"),
        InputParam("control_guidance_end", type_hint=FRACTION, default=1.0,
                   description="fraction of steps after which it stops"),
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
        InputParam("batch_size", type_hint=int, required=True),
        HEIGHT, WIDTH, GENERATOR, NUM_IMAGES, InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [
        OutputParam("controlnet_cond", type_hint=torch.Tensor,
                    description="the control image as packed latents (in pixels for XLabs ControlNets)"),
        OutputParam("control_mode", type_hint=torch.Tensor, description="Union ControlNets: the mode per image"),
        OutputParam("controlnet_keep", type_hint=list, description="per step: 1.0 while the ControlNet acts"),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        controlnet = components.controlnet
        if controlnet is None:
            raise AdapterError.no_controlnet("control_image was given", "FluxControlNetModel")
        check_generators(self, block_state)
        start, end = block_state.control_guidance_start, block_state.control_guidance_end
        if start >= end:
            raise conflict(self, ["control_guidance_start", "control_guidance_end"],
                           f"start {start} is not before end {end}; the ControlNet would never act")
        if controlnet.union != (block_state.control_mode is not None):
            raise conflict(self, ["control_mode", "controlnet"], "a Union ControlNet needs control_mode, and only "
                           f"a Union ControlNet takes one (this one {'is' if controlnet.union else 'is not'})")
        batch = block_state.batch_size * block_state.num_images_per_prompt
        height, width = image_size(block_state)
        image = flux_processor(components).preprocess(block_state.control_image, height=height, width=width)
        image = image.repeat_interleave(batch if image.shape[0] == 1 else block_state.num_images_per_prompt, dim=0)
        vae = components.vae
        image = image.to(device=execution_device(components), dtype=vae.dtype)
        if controlnet.input_hint_block is None:
            image = pack_latents(encode_image(vae, image, block_state.generator))
        block_state.controlnet_cond = image.to(dtype=block_state.dtype or image.dtype)
        mode = block_state.control_mode
        block_state.control_mode = None if mode is None else \
            torch.tensor(mode, device=image.device, dtype=torch.long).view(-1, 1).expand(image.shape[0], 1)
        block_state.controlnet_keep = [k[0] for k in keep_schedule(len(block_state.timesteps), [start], [end])]
        self.set_block_state(state, block_state)
        return components, state


class FluxControlNetLoopDenoiser(FluxLoopDenoiser):
    """Predict the velocity with the ControlNet's residuals in the transformer (every guidance branch)."""

    expected_components = FluxLoopDenoiser.expected_components + [CONTROLNET]
    inputs = FluxLoopDenoiser.inputs + [
        InputParam("controlnet_cond", type_hint=torch.Tensor, required=True),
        InputParam("control_mode", type_hint=torch.Tensor),
        InputParam("controlnet_conditioning_scale", type_hint=float, default=1.0),
        InputParam("controlnet_keep", type_hint=list, required=True),
    ]

    def controls(self, components, block_state, i, t) -> dict:
        controlnet, latents = components.controlnet, block_state.latents
        samples, single_samples = controlnet(
            hidden_states=latents, controlnet_cond=block_state.controlnet_cond, controlnet_mode=block_state.control_mode,
            conditioning_scale=block_state.controlnet_conditioning_scale * block_state.controlnet_keep[i],
            timestep=t.expand(latents.shape[0]).to(latents.dtype) / 1000,
            guidance=distilled_guidance(controlnet, block_state.guidance_scale, latents),
            pooled_projections=block_state.pooled_prompt_embeds, encoder_hidden_states=block_state.prompt_embeds,
            txt_ids=block_state.text_ids, img_ids=block_state.latent_image_ids,
            joint_attention_kwargs=block_state.joint_attention_kwargs, return_dict=False)
        return {"controlnet_block_samples": samples, "controlnet_single_block_samples": single_samples,
                "controlnet_blocks_repeat": controlnet.input_hint_block is not None}


class FluxControlNetDenoiseStep(FluxDenoiseLoopWrapper):
    """The text-to-image denoise loop with a ControlNet."""

    block_classes = [FluxControlNetLoopDenoiser, FluxLoopAfterDenoiser]


class FluxInpaintControlNetDenoiseStep(FluxDenoiseLoopWrapper):
    """The inpainting denoise loop with a ControlNet."""

    block_classes = [FluxControlNetLoopDenoiser, FluxInpaintLoopAfterDenoiser]
