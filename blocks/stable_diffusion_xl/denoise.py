"""Stable Diffusion XL denoise loop: the SD loop with pooled text embeds and time ids for the UNet."""

from __future__ import annotations

import torch

from ...modular_pipelines import InputParam
from ...modular_pipelines.remote import moved_classes
from ..stable_diffusion.denoise import (
    StableDiffusionDenoiseLoopWrapper,
    StableDiffusionInpaintLoopAfterDenoiser,
    StableDiffusionInpaintLoopBeforeDenoiser,
    StableDiffusionLoopAfterDenoiser,
    StableDiffusionLoopBeforeDenoiser,
    StableDiffusionLoopDenoiser,
    ip_adapter_conditioning,
)
from .before_denoise import SCHEDULER


def _xl(components):
    return [SCHEDULER if c.name == "scheduler" else c for c in components]


class StableDiffusionXLLoopBeforeDenoiser(StableDiffusionLoopBeforeDenoiser):
    """Scale the latents for the current timestep."""

    model_name = "stable-diffusion-xl"
    expected_components = _xl(StableDiffusionLoopBeforeDenoiser.expected_components)


class StableDiffusionXLInpaintLoopBeforeDenoiser(StableDiffusionInpaintLoopBeforeDenoiser):
    """Scale the latents; a 9-channel UNet also gets the mask and the masked-image latents."""

    model_name = "stable-diffusion-xl"
    expected_components = _xl(StableDiffusionInpaintLoopBeforeDenoiser.expected_components)


class StableDiffusionXLLoopDenoiser(StableDiffusionLoopDenoiser):
    """Predict the noise with text embeds, pooled embeds and time ids; all guidance branches batched."""

    model_name = "stable-diffusion-xl"
    inputs = StableDiffusionLoopDenoiser.inputs + [
        InputParam("pooled_prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("negative_pooled_prompt_embeds", type_hint=torch.Tensor),
        InputParam("add_time_ids", type_hint=torch.Tensor, required=True),
        InputParam("negative_add_time_ids", type_hint=torch.Tensor),
    ]

    def conditioning(self, block_state) -> dict:
        return {
            "encoder_hidden_states": (block_state.prompt_embeds, block_state.negative_prompt_embeds),
            "added_cond_kwargs.text_embeds": (block_state.pooled_prompt_embeds, block_state.negative_pooled_prompt_embeds),
            "added_cond_kwargs.time_ids": (block_state.add_time_ids, block_state.negative_add_time_ids),
            **ip_adapter_conditioning(block_state),
        }


class StableDiffusionXLLoopAfterDenoiser(StableDiffusionLoopAfterDenoiser):
    """Take one scheduler step."""

    model_name = "stable-diffusion-xl"
    expected_components = _xl(StableDiffusionLoopAfterDenoiser.expected_components)


class StableDiffusionXLInpaintLoopAfterDenoiser(StableDiffusionInpaintLoopAfterDenoiser):
    """Take one scheduler step; a 4-channel UNet then keeps the unmasked region from the noised image."""

    model_name = "stable-diffusion-xl"
    expected_components = _xl(StableDiffusionInpaintLoopAfterDenoiser.expected_components)


class StableDiffusionXLDenoiseLoopWrapper(StableDiffusionDenoiseLoopWrapper):
    """Iterate over the timesteps, running the sub-blocks once per step."""

    model_name = "stable-diffusion-xl"
    loop_expected_components = _xl(StableDiffusionDenoiseLoopWrapper.loop_expected_components)


class StableDiffusionXLDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
    """The text-to-image / image-to-image denoise loop."""

    block_classes = [StableDiffusionXLLoopBeforeDenoiser, StableDiffusionXLLoopDenoiser, StableDiffusionXLLoopAfterDenoiser]


class StableDiffusionXLInpaintDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
    """The inpainting denoise loop."""

    block_classes = [StableDiffusionXLInpaintLoopBeforeDenoiser, StableDiffusionXLLoopDenoiser,
                     StableDiffusionXLInpaintLoopAfterDenoiser]


# the name the design document's ControlNet example uses for the after-denoiser
StableDiffusionXLDenoiseLoopAfterDenoiser = StableDiffusionXLLoopAfterDenoiser


# the Auto denoise step picks the ControlNet loops too, so it is declared with them
__getattr__ = moved_classes(__name__, {"StableDiffusionXLAutoDenoiseStep": f"{__package__}.controlnet"})
