"""Stable Diffusion 1.x/2.x steps before the denoise loop: batch, timesteps, initial latents."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...components.models import AutoencoderKL, UNet2DConditionModel
from ...components.noise import randn_tensor
from ...components.schedulers import DDIMScheduler
from ...components.spec import ComponentSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..common import (
    default_size,
    denoising_end_timesteps,
    encode_image,
    execution_device,
    repeat_to,
    set_scheduler_timesteps,
    strength_timesteps,
    vae_scale_factor,
)
from .encoders import GENERATOR, HEIGHT, WIDTH

NUM_IMAGES = InputParam("num_images_per_prompt", type_hint=int, default=1, description="images made per prompt")
STEPS = InputParam("num_inference_steps", type_hint=int, default=50, description="denoising steps")
STRENGTH = InputParam("strength", type_hint=float, default=0.8,
                      description="how much of the image is re-noised (1.0 ignores the image)")
LATENTS_OUT = OutputParam("latents", type_hint=torch.Tensor, description="the initial latents of the denoise loop")


class StableDiffusionInputStep(ModularPipelineBlocks):
    """Expand the text embeddings to ``num_images_per_prompt`` images per prompt; set batch size and dtype."""

    model_name = "stable-diffusion"
    inputs = [
        NUM_IMAGES,
        InputParam("prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("negative_prompt_embeds", type_hint=torch.Tensor),
    ]
    intermediate_outputs = [
        OutputParam("batch_size", type_hint=int, description="number of prompts"),
        OutputParam("dtype", type_hint=torch.dtype, description="dtype of the model inputs"),
        OutputParam("prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields"),
        OutputParam("negative_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        n = block_state.num_images_per_prompt
        block_state.batch_size = block_state.prompt_embeds.shape[0]
        block_state.dtype = block_state.prompt_embeds.dtype
        block_state.prompt_embeds = block_state.prompt_embeds.repeat_interleave(n, dim=0)
        if block_state.negative_prompt_embeds is not None:
            block_state.negative_prompt_embeds = block_state.negative_prompt_embeds.repeat_interleave(n, dim=0)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionSetTimestepsStep(ModularPipelineBlocks):
    """Set the scheduler's timesteps (from a step count, or custom ``timesteps`` / ``sigmas``)."""

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler)]
    inputs = [
        STEPS,
        InputParam("timesteps", type_hint=torch.Tensor | list[int], description="custom timesteps"),
        InputParam("sigmas", type_hint=torch.Tensor | list[float], description="custom sigmas"),
        InputParam("denoising_end", type_hint=float, description="stop early at this fraction (base of base+refiner)"),
    ]
    intermediate_outputs = [
        OutputParam("timesteps", type_hint=torch.Tensor, description="the timesteps the loop runs"),
        OutputParam("num_inference_steps", type_hint=int, description="how many steps the loop runs"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        scheduler = components.scheduler
        timesteps, n = set_scheduler_timesteps(scheduler, block_state.num_inference_steps,
                                               execution_device(components), block_state.timesteps, block_state.sigmas)
        block_state.timesteps, block_state.num_inference_steps = denoising_end_timesteps(
            scheduler, timesteps, n, block_state.denoising_end)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionImg2ImgSetTimestepsStep(StableDiffusionSetTimestepsStep):
    """Set the timesteps, then keep the tail that ``strength`` (or ``denoising_start``) leaves."""

    inputs = StableDiffusionSetTimestepsStep.inputs + [
        STRENGTH,
        InputParam("denoising_start", type_hint=float, description="start at this fraction (refiner of base+refiner)"),
        InputParam("batch_size", type_hint=int, required=True),
        NUM_IMAGES,
    ]
    intermediate_outputs = StableDiffusionSetTimestepsStep.intermediate_outputs + [
        OutputParam("latent_timestep", type_hint=torch.Tensor, description="the timestep the image is noised to"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        scheduler = components.scheduler
        _, n = set_scheduler_timesteps(scheduler, block_state.num_inference_steps, execution_device(components),
                                       block_state.timesteps, block_state.sigmas)
        timesteps, n = strength_timesteps(scheduler, n, block_state.strength, block_state.denoising_start)
        if n < 1:
            raise ValueError(f"strength={block_state.strength} leaves {n} denoising steps; raise strength or steps")
        timesteps, n = denoising_end_timesteps(scheduler, timesteps, n, block_state.denoising_end)
        block_state.timesteps, block_state.num_inference_steps = timesteps, n
        batch = block_state.batch_size * block_state.num_images_per_prompt
        block_state.latent_timestep = timesteps[:1].repeat(batch)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintSetTimestepsStep(StableDiffusionImg2ImgSetTimestepsStep):
    """Img2img timesteps with inpainting's default ``strength`` of 1.0 (repaint the masked area fully)."""

    inputs = [p.replace(default=1.0) if p.name == "strength" else p for p in StableDiffusionImg2ImgSetTimestepsStep.inputs]


class StableDiffusionPrepareLatentsStep(ModularPipelineBlocks):
    """Draw the initial noise (or scale given ``latents``) for text-to-image."""

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler), ComponentSpec("unet", UNet2DConditionModel)]
    inputs = [
        HEIGHT, WIDTH, GENERATOR, NUM_IMAGES,
        InputParam("latents", type_hint=torch.Tensor, description="start from these latents instead of noise"),
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [LATENTS_OUT]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        height, width = default_size(components, block_state.height, block_state.width)
        factor = vae_scale_factor(components)
        batch = block_state.batch_size * block_state.num_images_per_prompt
        shape = (batch, components.unet.config.in_channels, height // factor, width // factor)
        _check_generators(block_state.generator, batch)
        device = execution_device(components)
        if block_state.latents is None:
            latents = randn_tensor(shape, generator=block_state.generator, device=device, dtype=block_state.dtype)
        else:
            latents = block_state.latents.to(device)
        block_state.latents = latents * components.scheduler.init_noise_sigma
        self.set_block_state(state, block_state)
        return components, state


def _check_generators(generator, batch: int) -> None:
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for a batch of {batch} images; give one per image")


class StableDiffusionImg2ImgPrepareLatentsStep(ModularPipelineBlocks):
    """Noise the image latents to the first timestep (image-to-image)."""

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler)]
    inputs = [
        GENERATOR, NUM_IMAGES,
        InputParam("latents", type_hint=torch.Tensor),
        InputParam("image_latents", type_hint=torch.Tensor, required=True),
        InputParam("latent_timestep", type_hint=torch.Tensor, required=True),
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [LATENTS_OUT]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        if block_state.latents is None:
            batch = block_state.batch_size * block_state.num_images_per_prompt
            image_latents = repeat_to(block_state.image_latents.to(dtype=block_state.dtype), batch)
            noise = randn_tensor(image_latents.shape, generator=block_state.generator, device=image_latents.device,
                                 dtype=block_state.dtype)
            block_state.latents = components.scheduler.add_noise(image_latents, noise, block_state.latent_timestep)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintPrepareLatentsStep(ModularPipelineBlocks):
    """Initial latents, noise, latent mask and masked-image latents for inpainting."""

    model_name = "stable-diffusion"
    encode = staticmethod(encode_image)
    expected_components = [ComponentSpec("scheduler", DDIMScheduler), ComponentSpec("vae", AutoencoderKL),
                           ComponentSpec("unet", UNet2DConditionModel)]
    inputs = [
        GENERATOR, NUM_IMAGES, STRENGTH.replace(default=1.0),
        InputParam("latents", type_hint=torch.Tensor),
        InputParam("image_latents", type_hint=torch.Tensor),
        InputParam("init_image", type_hint=torch.Tensor, required=True),
        InputParam("mask_condition", type_hint=torch.Tensor, required=True),
        InputParam("masked_image_latents", type_hint=torch.Tensor, description="precomputed masked-image latents"),
        InputParam("latent_timestep", type_hint=torch.Tensor, required=True),
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [
        LATENTS_OUT,
        OutputParam("noise", type_hint=torch.Tensor, description="the noise the latents were made with"),
        OutputParam("image_latents", type_hint=torch.Tensor),
        OutputParam("mask", type_hint=torch.Tensor, description="the mask at latent resolution"),
        OutputParam("masked_image_latents", type_hint=torch.Tensor),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        batch = block_state.batch_size * block_state.num_images_per_prompt
        dtype, device = block_state.dtype, execution_device(components)
        _check_generators(block_state.generator, batch)
        height, width = block_state.init_image.shape[-2:]
        factor = vae_scale_factor(components)
        shape = (batch, components.vae.config.latent_channels, height // factor, width // factor)
        if block_state.image_latents is not None:
            block_state.image_latents = repeat_to(block_state.image_latents.to(device=device, dtype=dtype), batch)
        block_state.latents, block_state.noise = self.initial_latents(components, block_state, shape, device, dtype)
        self._mask_latents(components, block_state, batch, (height // factor, width // factor), device, dtype)
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def initial_latents(components, block_state, shape, device, dtype):
        """``(latents, noise)``: pure noise at strength 1, else the image latents noised to the first step."""
        scheduler = components.scheduler
        if block_state.latents is not None:
            noise = block_state.latents.to(device)
            return noise * scheduler.init_noise_sigma, noise
        noise = randn_tensor(shape, generator=block_state.generator, device=device, dtype=dtype)
        if block_state.strength == 1.0:
            return noise * scheduler.init_noise_sigma, noise
        return scheduler.add_noise(block_state.image_latents, noise, block_state.latent_timestep), noise

    def _mask_latents(self, components, block_state, batch, size, device, dtype) -> None:
        mask = F.interpolate(block_state.mask_condition, size=size).to(device=device, dtype=dtype)
        masked = block_state.masked_image_latents
        if masked is None:
            masked_image = (block_state.init_image * (block_state.mask_condition < 0.5)).to(device=device, dtype=dtype)
            masked = self.encode(components.vae, masked_image, block_state.generator)
        block_state.mask = repeat_to(mask, batch)
        block_state.masked_image_latents = repeat_to(masked.to(device=device, dtype=dtype), batch)


class StableDiffusionAutoSetTimestepsStep(AutoPipelineBlocks):
    """Timesteps: by `strength` when `image` is given (inpaint: `mask_image` too), else the full schedule."""

    block_classes = [StableDiffusionInpaintSetTimestepsStep, StableDiffusionImg2ImgSetTimestepsStep,
                     StableDiffusionSetTimestepsStep]
    block_names = ["inpaint", "img2img", "text2img"]
    block_trigger_inputs = ["mask_image", "image", None]


class StableDiffusionAutoPrepareLatentsStep(AutoPipelineBlocks):
    """Initial latents: inpaint when `mask_image` is given, img2img when `image` is, else noise."""

    block_classes = [StableDiffusionInpaintPrepareLatentsStep, StableDiffusionImg2ImgPrepareLatentsStep,
                     StableDiffusionPrepareLatentsStep]
    block_names = ["inpaint", "img2img", "text2img"]
    block_trigger_inputs = ["mask_image", "image", None]
