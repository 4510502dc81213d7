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
from ...components.models.flux_controlnet import FluxControlNetModel, FluxMultiControlNetModel
from ...components.spec import ComponentSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import conflict
from ..stable_diffusion.before_denoise import check_generators
from ..stable_diffusion.controlnet import (
    CONTROL_END,
    CONTROL_IMAGE,
    CONTROL_START,
    CONTROLNET_SCALE,
    check_windows,
    keep_schedule,
    per_net,
)
from ..stable_diffusion.inputs import GENERATOR, HEIGHT, NUM_IMAGES, WIDTH
from ..vae import encode_image
from .denoise import (
    FluxDenoiseLoopWrapper,
    FluxDenoiseStep,
    FluxInpaintDenoiseStep,
    FluxInpaintLoopAfterDenoiser,
    FluxLoopAfterDenoiser,
    FluxLoopDenoiser,
    distilled_guidance,
)
from .inputs import IMAGE_PROCESSOR, MODEL_NAME, VAE, execution_device, flux_processor, image_size, pack_latents

CONTROLNET = ComponentSpec("controlnet", FluxControlNetModel)
MODE = Annotated[int, Field(ge=0)]


class FluxControlNetInputStep(ModularPipelineBlocks):
    """Resize each control image to ``height`` x ``width`` (default 1024), VAE-encode it (drawing from the
    generator, before the noise is drawn) and pack it; schedule each ControlNet's strength over the steps.

    With a ``FluxMultiControlNetModel``, ``control_image`` and ``control_mode`` are lists (one entry per ControlNet,
    or per image for a single Union ControlNet), and the scale and the window one value each or one for all."""

    model_name = MODEL_NAME
    expected_components = [CONTROLNET, VAE, IMAGE_PROCESSOR]
    inputs = [
        CONTROL_IMAGE,
        InputParam("control_mode", type_hint=MODE | list[MODE | None],
                   description="Union ControlNets: which control the image is (their model card lists the modes)"),
        CONTROLNET_SCALE, CONTROL_START, CONTROL_END,
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
        InputParam("batch_size", type_hint=int, required=True),
        HEIGHT, WIDTH, GENERATOR, NUM_IMAGES, InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [
        OutputParam("controlnet_cond", description="the control image(s) as packed latents (in pixels for XLabs ones)"),
        OutputParam("control_mode", description="Union ControlNets: the mode per image"),
        OutputParam("controlnet_conditioning_scale", description="scale (per ControlNet)"),
        OutputParam("controlnet_keep", type_hint=list, description="per step: 1.0 while the ControlNet acts (each)"),
    ]

    def check_ready(self, components, values):
        if getattr(components, "controlnet", None) is None:
            raise AdapterError.no_controlnet("control_image was given", "FluxControlNetModel")

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        controlnet = components.controlnet
        if controlnet is None:
            raise AdapterError.no_controlnet("control_image was given", "FluxControlNetModel")
        check_generators(self, block_state)
        multi = isinstance(controlnet, FluxMultiControlNetModel)
        images = list(block_state.control_image) if multi else [block_state.control_image]
        if multi:  # several ControlNets, or one Union ControlNet read once per image
            nets = list(controlnet.nets) if len(controlnet.nets) > 1 else [controlnet.nets[0]] * len(images)
        else:
            nets = [controlnet]
        if len(images) != len(nets):
            raise conflict(self, ["control_image", "controlnet"], f"{len(images)} control images for {len(nets)} "
                                                                  "ControlNets; give one (or a list) per ControlNet")
        modes = per_net(self, block_state, "control_mode", len(nets))
        for net, mode in zip(nets, modes):
            if net.union != (mode is not None):
                raise conflict(self, ["control_mode", "controlnet"], "a Union ControlNet needs control_mode, and only "
                               f"a Union ControlNet takes one (this one {'is' if net.union else 'is not'})")
        starts = per_net(self, block_state, "control_guidance_start", len(nets))
        ends = per_net(self, block_state, "control_guidance_end", len(nets))
        check_windows(self, starts, ends)
        conds = [self.prepare(components, block_state, image, net) for image, net in zip(images, nets)]
        rows = conds[0].shape[0]
        modes = [None if m is None else torch.tensor(m, device=conds[0].device).view(-1, 1).expand(rows, 1)
                 for m in modes]
        scales = per_net(self, block_state, "controlnet_conditioning_scale", len(nets))
        keep = keep_schedule(len(block_state.timesteps), starts, ends)
        block_state.controlnet_cond = conds if multi else conds[0]
        block_state.control_mode = modes if multi else modes[0]
        block_state.controlnet_conditioning_scale = scales if multi else scales[0]
        block_state.controlnet_keep = keep if multi else [k[0] for k in keep]
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def prepare(components, block_state, image, controlnet) -> torch.Tensor:
        """One control image, as :func:`control_latents` (in pixels for a ControlNet with ``input_hint_block``)."""
        return control_latents(components, block_state, image, encode=controlnet.input_hint_block is None)


def control_latents(components, block_state, image, encode: bool = True) -> torch.Tensor:
    """A control image at the asked size, repeated to the batch, VAE-encoded (drawing from the generator) and packed
    (with ``encode``; else the preprocessed pixels), as diffusers' FLUX pipelines prepare theirs."""
    batch = block_state.batch_size * block_state.num_images_per_prompt
    height, width = image_size(block_state)
    image = flux_processor(components).preprocess(image, height=height, width=width)
    image = image.repeat_interleave(batch if image.shape[0] == 1 else block_state.num_images_per_prompt, dim=0)
    vae = components.vae
    image = image.to(device=execution_device(components), dtype=vae.dtype)
    if encode:
        image = pack_latents(encode_image(vae, image, block_state.generator))
    return image.to(dtype=block_state.dtype or image.dtype)


class FluxControlNetLoopDenoiser(FluxLoopDenoiser):
    """Predict the velocity with the ControlNet's residuals in the transformer (every guidance branch)."""

    expected_components = FluxLoopDenoiser.expected_components + [CONTROLNET]
    inputs = FluxLoopDenoiser.inputs + [
        InputParam("controlnet_cond", required=True),
        InputParam("control_mode"),
        InputParam("controlnet_conditioning_scale", default=1.0),
        InputParam("controlnet_keep", type_hint=list, required=True),
    ]

    def controls(self, components, block_state, i, t) -> dict:
        controlnet, latents = components.controlnet, block_state.latents
        scale, keep = block_state.controlnet_conditioning_scale, block_state.controlnet_keep[i]
        scale = [s * k for s, k in zip(scale, keep)] if isinstance(scale, list) else scale * keep
        samples, single_samples = controlnet(
            hidden_states=latents, controlnet_cond=block_state.controlnet_cond, controlnet_mode=block_state.control_mode,
            conditioning_scale=scale,
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


class FluxAutoControlNetInputStep(AutoPipelineBlocks):
    """Prepare the ControlNet inputs when `control_image` is given; skipped otherwise."""

    choices = {
        "controlnet_input": (FluxControlNetInputStep, "control_image"),
    }


class FluxAutoInpaintControlNetDenoiseStep(AutoPipelineBlocks):
    """Denoise with a ControlNet: the inpainting loop when `mask_image` is given, else the plain ControlNet loop."""

    choices = {
        "inpaint": (FluxInpaintControlNetDenoiseStep, "mask_image"),
        "controlnet_denoise": (FluxControlNetDenoiseStep, None),
    }


class FluxAutoDenoiseStep(AutoPipelineBlocks):
    """Denoise: a ControlNet loop when `control_image` is given (for inpainting when `mask_image` is too), else the
    inpainting loop when `mask_image` is given, else the plain loop."""

    choices = {
        "controlnet": (FluxAutoInpaintControlNetDenoiseStep, "control_image"),
        "inpaint": (FluxInpaintDenoiseStep, "mask_image"),
        "denoise": (FluxDenoiseStep, None),
    }
