"""FLUX.1 initial latents from an image: noised to the first kept timestep (image-to-image), plus the packed
mask, noise and image latents the inpainting loop blends with; and the auto steps choosing by input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...components.noise import randn_tensor
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import conflict
from ..common import repeat_to
from ..stable_diffusion.before_denoise import check_generators, check_image_rows
from ..stable_diffusion.inputs import GENERATOR, HEIGHT, NUM_IMAGES, WIDTH
from .before_denoise import (
    IDS_OUT,
    LATENTS_OUT,
    SIZE_OUT,
    FluxImg2ImgSetTimestepsStep,
    FluxPrepareLatentsStep,
    FluxSetTimestepsStep,
    given_latents,
    latents_shape,
)
from .inputs import (
    FLUX_LATENTS,
    MODEL_NAME,
    SCHEDULER,
    TRANSFORMER,
    execution_device,
    image_size,
    latent_image_ids,
    pack_latents,
)

_IMAGE_INPUTS = [
    HEIGHT, WIDTH, GENERATOR, NUM_IMAGES,
    InputParam("image_latents", type_hint=torch.Tensor, required=True),
    InputParam("latent_timestep", type_hint=torch.Tensor, required=True),
    InputParam("batch_size", type_hint=int, required=True),
    InputParam("dtype", type_hint=torch.dtype),
]


class FluxImg2ImgPrepareLatentsStep(ModularPipelineBlocks):
    """Noise the image latents to the first kept timestep (``sigma * noise + (1 - sigma) * image``) and pack
    them; given ``latents`` are used as they are."""

    model_name = MODEL_NAME
    expected_components = [SCHEDULER, TRANSFORMER]
    inputs = [*_IMAGE_INPUTS, FLUX_LATENTS.replace(description="start from these latents instead of the noised image")]
    intermediate_outputs = [LATENTS_OUT, IDS_OUT, *SIZE_OUT]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        shape = latents_shape(self, components, block_state)
        device, dtype = execution_device(components), block_state.dtype
        latents = block_state.latents
        if latents is None:
            image_latents, noise = image_and_noise(self, block_state, shape, device, dtype)
            latents = pack_latents(components.scheduler.scale_noise(image_latents, block_state.latent_timestep, noise))
        block_state.latents = given_latents(self, block_state, latents, shape).to(device=device, dtype=dtype)
        block_state.latent_image_ids = latent_image_ids(shape[2], shape[3], device, dtype)
        block_state.height, block_state.width = image_size(block_state)
        self.set_block_state(state, block_state)
        return components, state


def image_and_noise(block, block_state, shape, device, dtype, draw: bool = True):
    """The image latents repeated to the batch and fresh noise of the same shape, or None without ``draw``
    (drawn after the image was encoded, so a seeded generator is consumed in FluxPipeline's order)."""
    check_generators(block, block_state)
    image_latents = block_state.image_latents
    check_image_rows(block, block_state, image_latents.shape[0])
    if tuple(image_latents.shape[1:]) != tuple(shape[1:]):
        raise conflict(block, ["image", "height", "width"],
                       f"image latents of shape {tuple(image_latents.shape[1:])} but height x width need "
                       f"{tuple(shape[1:])}")
    image_latents = repeat_to(image_latents.to(device=device, dtype=dtype), shape[0])
    noise = randn_tensor(shape, generator=block_state.generator, device=device, dtype=dtype) if draw else None
    return image_latents, noise


class FluxInpaintPrepareLatentsStep(ModularPipelineBlocks):
    """Initial latents as image-to-image, plus the packed noise, image latents and latent-size mask the
    inpainting loop blends the unmasked region back with. Given ``latents`` are the initial noise.

    FluxInpaintPipeline also encodes the masked image, but only FLUX Fill models read those latents (the
    standard transformer does not, and nothing draws from the generator afterwards), so it is skipped here.
    """

    model_name = MODEL_NAME
    expected_components = [SCHEDULER, TRANSFORMER]
    inputs = [*_IMAGE_INPUTS, FLUX_LATENTS.replace(description="the initial noise (instead of drawing it)"),
              InputParam("mask_condition", type_hint=torch.Tensor, required=True)]
    intermediate_outputs = [
        LATENTS_OUT, IDS_OUT, *SIZE_OUT,
        OutputParam("noise", type_hint=torch.Tensor, description="the packed noise the latents were made with"),
        OutputParam("image_latents", type_hint=torch.Tensor, description="the packed image latents"),
        OutputParam("mask", type_hint=torch.Tensor, description="the packed mask at latent resolution (1: repaint)"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        shape = latents_shape(self, components, block_state)
        device, dtype = execution_device(components), block_state.dtype
        image_latents, noise = image_and_noise(self, block_state, shape, device, dtype, draw=block_state.latents is None)
        if block_state.latents is None:
            latents = components.scheduler.scale_noise(image_latents, block_state.latent_timestep, noise)
        else:
            noise = latents = given_latents(self, block_state, block_state.latents, shape)
        block_state.latents = pack(latents).to(device=device, dtype=dtype)
        block_state.noise, block_state.image_latents = pack(noise).to(device), pack(image_latents)
        block_state.mask = self.packed_mask(block_state, shape, device, dtype)
        block_state.latent_image_ids = latent_image_ids(shape[2], shape[3], device, dtype)
        block_state.height, block_state.width = image_size(block_state)
        self.set_block_state(state, block_state)
        return components, state

    def packed_mask(self, block_state, shape, device, dtype) -> torch.Tensor:
        """The mask resized to the latent grid, repeated over the batch and the channels, packed."""
        batch, channels, rows, cols = shape
        mask = F.interpolate(block_state.mask_condition, size=(rows, cols)).to(device=device, dtype=dtype)
        if batch % mask.shape[0]:
            raise conflict(self, ["mask_image", "prompt"], f"{mask.shape[0]} masks for a batch of {batch}; "
                                                           "give one mask or one per image")
        return pack_latents(mask.repeat(batch // mask.shape[0], channels, 1, 1))


def pack(latents: torch.Tensor) -> torch.Tensor:
    """Unpacked ``(batch, c, h, w)`` latents packed; packed ones as they are."""
    return pack_latents(latents) if latents.ndim == 4 else latents


class FluxAutoSetTimestepsStep(AutoPipelineBlocks):
    """Timesteps: cut by `strength` when `image` is given, else the full schedule."""

    choices = {
        "img2img": (FluxImg2ImgSetTimestepsStep, "image"),
        "text2img": (FluxSetTimestepsStep, None),
    }


class FluxAutoPrepareLatentsStep(AutoPipelineBlocks):
    """Initial latents: inpaint when `mask_image` is given, img2img when `image` is, else noise."""

    choices = {
        "inpaint": (FluxInpaintPrepareLatentsStep, "mask_image"),
        "img2img": (FluxImg2ImgPrepareLatentsStep, "image"),
        "text2img": (FluxPrepareLatentsStep, None),
    }
