"""Stable Diffusion 1.x/2.x denoise loop: a wrapper and its before / denoiser / after sub-blocks.

The core loop driver runs the steps (progress bar, interrupt, ``step_callback`` and ``callback_on_step_end``:
see :class:`~diffblocks.modular_pipelines.LoopSequentialPipelineBlocks`); the wrapper's hooks reset the guider
once per call and tell it the step before each iteration.
"""

from __future__ import annotations

import torch

from ...components.models import UNet2DConditionModel
from ...components.schedulers import DDIMScheduler
from ...components.spec import ComponentSpec
from ...guiders import ClassifierFreeGuidance
from ...modular_pipelines import (
    InputParam,
    LoopSequentialPipelineBlocks,
    ModularPipelineBlocks,
    OutputParam,
)
from ...modular_pipelines.remote import moved_classes
from ..checks import FINITE_TENSOR
from ..common import guidance_scale_embedding
from ..scheduling import step_kwargs
from ..guidance import guided_forward
from .inputs import ETA, STEPS

GUIDER = ComponentSpec("guider", ClassifierFreeGuidance, config={"guidance_scale": 7.5},
                       default_creation_method="from_config")
LATENTS = InputParam("latents", type_hint=FINITE_TENSOR, required=True, description="the latents being denoised")


def ip_adapter_conditioning(block_state) -> dict:
    """IP-Adapter image embeddings as UNet ``added_cond_kwargs``, when an IP-Adapter step produced them."""
    if getattr(block_state, "ip_adapter_embeds", None) is None:
        return {}
    return {"added_cond_kwargs.image_embeds": (block_state.ip_adapter_embeds, block_state.negative_ip_adapter_embeds)}


class StableDiffusionLoopBeforeDenoiser(ModularPipelineBlocks):
    """Scale the latents for the current timestep."""

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler)]
    inputs = [LATENTS]
    intermediate_outputs = [OutputParam("scaled_latents", type_hint=torch.Tensor, description="the UNet's input")]

    def __call__(self, components, block_state, i, t):
        block_state.scaled_latents = components.scheduler.scale_model_input(block_state.latents, t)
        return components, block_state


class StableDiffusionInpaintLoopBeforeDenoiser(StableDiffusionLoopBeforeDenoiser):
    """Scale the latents; a 9-channel UNet also gets the mask and the masked-image latents."""

    inputs = [LATENTS, InputParam("mask", type_hint=torch.Tensor), InputParam("masked_image_latents", type_hint=torch.Tensor)]

    def __call__(self, components, block_state, i, t):
        scaled = components.scheduler.scale_model_input(block_state.latents, t)
        if components.unet.config.in_channels == 9:
            scaled = torch.cat([scaled, block_state.mask, block_state.masked_image_latents], dim=1)
        block_state.scaled_latents = scaled
        return components, block_state


class StableDiffusionLoopDenoiser(ModularPipelineBlocks):
    """Predict the noise: every guidance branch in one batched UNet forward, combined by the guider."""

    model_name = "stable-diffusion"
    expected_components = [GUIDER, ComponentSpec("unet", UNet2DConditionModel)]
    inputs = [
        InputParam("scaled_latents", type_hint=torch.Tensor, required=True),
        InputParam("prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("negative_prompt_embeds", type_hint=torch.Tensor),
        InputParam("timestep_cond", type_hint=torch.Tensor),
        InputParam("cross_attention_kwargs", type_hint=dict, description="passed to the attention processors"),
        InputParam("split_guidance_batches", type_hint=bool, default=False,
                   description="run each guidance branch as its own forward (less memory, same result)"),
        InputParam("ip_adapter_embeds", type_hint=list, description="IP-Adapter image embeddings, one per adapter"),
        InputParam("negative_ip_adapter_embeds", type_hint=list),
    ]
    intermediate_outputs = [OutputParam("noise_pred", type_hint=torch.Tensor, description="the guided prediction")]

    def conditioning(self, block_state) -> dict:
        return {"encoder_hidden_states": (block_state.prompt_embeds, block_state.negative_prompt_embeds),
                **ip_adapter_conditioning(block_state)}

    def shared_inputs(self, components, block_state) -> dict:
        return {"timestep_cond": block_state.timestep_cond,
                "cross_attention_kwargs": block_state.cross_attention_kwargs, "return_dict": False}

    def __call__(self, components, block_state, i, t):
        block_state.noise_pred = guided_forward(
            components.guider, components.unet, block_state.scaled_latents, t, self.conditioning(block_state),
            self.shared_inputs(components, block_state), split=block_state.split_guidance_batches,
            parallel=getattr(components, "guidance_parallel", None),
        )
        return components, block_state


class StableDiffusionLoopAfterDenoiser(ModularPipelineBlocks):
    """Take one scheduler step."""

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler)]
    inputs = [
        LATENTS,
        InputParam("noise_pred", type_hint=torch.Tensor, required=True),
        InputParam("generator", type_hint=torch.Generator | list[torch.Generator]),
        ETA,
    ]
    intermediate_outputs = [OutputParam("latents", type_hint=torch.Tensor, description="the denoised latents")]

    def __call__(self, components, block_state, i, t):
        dtype = block_state.latents.dtype
        kwargs = step_kwargs(components.scheduler, block_state.generator, block_state.eta)
        latents = components.scheduler.step(block_state.noise_pred, t, block_state.latents, return_dict=False, **kwargs)[0]
        block_state.latents = latents.to(dtype)
        return components, block_state


class StableDiffusionInpaintLoopAfterDenoiser(StableDiffusionLoopAfterDenoiser):
    """Take one scheduler step; a 4-channel UNet then keeps the unmasked region from the noised image."""

    inputs = StableDiffusionLoopAfterDenoiser.inputs + [
        InputParam("mask", type_hint=torch.Tensor),
        InputParam("image_latents", type_hint=torch.Tensor),
        InputParam("noise", type_hint=torch.Tensor),
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
    ]

    def __call__(self, components, block_state, i, t):
        components, block_state = super().__call__(components, block_state, i, t)
        if components.unet.config.in_channels == 4:
            known = block_state.image_latents
            if i < len(block_state.timesteps) - 1:
                next_t = block_state.timesteps[i + 1]
                known = components.scheduler.add_noise(known, block_state.noise, torch.tensor([next_t]))
            block_state.latents = (1 - block_state.mask) * known + block_state.mask * block_state.latents
        return components, block_state


class StableDiffusionDenoiseLoopWrapper(LoopSequentialPipelineBlocks):
    """Iterate over the timesteps, running the sub-blocks once per step."""

    model_name = "stable-diffusion"
    block_names = ["before_denoiser", "denoiser", "after_denoiser"]  # a subclass gives the three block_classes
    loop_expected_components = [GUIDER, ComponentSpec("scheduler", DDIMScheduler),
                                ComponentSpec("unet", UNet2DConditionModel)]
    loop_inputs = [
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
        STEPS.replace(default=None, required=True),
    ]

    def before_loop(self, components, block_state) -> None:
        guider = components.guider
        guider.reset()
        guider.check_model(components.unet)  # a perturbation naming a layer the UNet lacks fails before step 0
        block_state.timestep_cond = self.timestep_cond(components, block_state)

    def before_step(self, components, block_state, i, t) -> None:
        components.guider.set_state(step=i, num_inference_steps=block_state.num_inference_steps, timestep=t)

    @staticmethod
    def timestep_cond(components, block_state):
        """LCM-style UNets (``time_cond_proj_dim``) are conditioned on the guidance scale."""
        dim = components.unet.config.time_cond_proj_dim
        if dim is None:
            return None
        scale = getattr(components.guider, "guidance_scale", 1.0)
        batch = block_state.latents.shape[0]
        emb = guidance_scale_embedding(torch.tensor(scale - 1).repeat(batch), dim)
        return emb.to(device=block_state.latents.device, dtype=block_state.latents.dtype)


class StableDiffusionDenoiseStep(StableDiffusionDenoiseLoopWrapper):
    """The text-to-image / image-to-image denoise loop."""

    block_classes = [StableDiffusionLoopBeforeDenoiser, StableDiffusionLoopDenoiser, StableDiffusionLoopAfterDenoiser]


class StableDiffusionInpaintDenoiseStep(StableDiffusionDenoiseLoopWrapper):
    """The inpainting denoise loop (9-channel UNets get the mask; 4-channel ones blend it in)."""

    block_classes = [StableDiffusionInpaintLoopBeforeDenoiser, StableDiffusionLoopDenoiser,
                     StableDiffusionInpaintLoopAfterDenoiser]


# the Auto denoise step picks the ControlNet loops too, so it is declared with them
__getattr__ = moved_classes(__name__, {"StableDiffusionAutoDenoiseStep": f"{__package__}.controlnet"})
