"""Stable Diffusion 1.x/2.x steps before the denoise loop: batch, timesteps, initial latents."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...components.models import AutoencoderKL, UNet2DConditionModel
from ...components.noise import randn_tensor
from ...components.schedulers import DDIMScheduler
from ...components.spec import ComponentSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, batch_text, check_latents, check_multiple, check_rows, conflict
from ..common import default_size, execution_device, repeat_to, vae_scale_factor
from ..scheduling import denoising_end_timesteps, schedule_steps, set_scheduler_timesteps, strength_timesteps
from ..vae import encode_image
from .inputs import (
    DENOISING_END,
    DENOISING_START,
    GENERATOR,
    HEIGHT,
    NUM_IMAGES,
    STEPS,
    STRENGTH,
    USER_LATENTS,
    WIDTH,
)

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
        DENOISING_END,
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
        block_state.timesteps, block_state.num_inference_steps = self.cut_end(scheduler, timesteps, n, block_state)
        self.set_block_state(state, block_state)
        return components, state

    def cut_end(self, scheduler, timesteps, n: int, block_state):
        """The schedule up to ``denoising_end``; refused when that leaves no step."""
        timesteps, kept = denoising_end_timesteps(scheduler, timesteps, n, block_state.denoising_end)
        if kept < 1:
            raise conflict(self, ["denoising_end", "num_inference_steps"],
                           f"denoising_end={block_state.denoising_end} keeps none of the {n} steps; raise either")
        return timesteps, kept


class StableDiffusionImg2ImgSetTimestepsStep(StableDiffusionSetTimestepsStep):
    """Set the timesteps, then keep the tail that ``strength`` (or ``denoising_start``) leaves."""

    inputs = StableDiffusionSetTimestepsStep.inputs + [
        STRENGTH,
        DENOISING_START,
        InputParam("batch_size", type_hint=int, required=True),
        NUM_IMAGES,
    ]
    intermediate_outputs = StableDiffusionSetTimestepsStep.intermediate_outputs + [
        OutputParam("latent_timestep", type_hint=torch.Tensor, description="the timestep the image is noised to"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        scheduler = components.scheduler
        set_scheduler_timesteps(scheduler, block_state.num_inference_steps, execution_device(components),
                                block_state.timesteps, block_state.sigmas)
        total = schedule_steps(scheduler)
        timesteps, n = strength_timesteps(scheduler, total, block_state.strength, block_state.denoising_start)
        if n < 1:
            raise self.no_steps_error(block_state, total)
        block_state.timesteps, block_state.num_inference_steps = self.cut_end(scheduler, timesteps, n, block_state)
        batch = block_state.batch_size * block_state.num_images_per_prompt
        block_state.latent_timestep = timesteps[:1].repeat(batch)
        self.set_block_state(state, block_state)
        return components, state

    def no_steps_error(self, block_state, total: int):
        """The error for ``strength`` (or ``denoising_start``) leaving no step of the schedule."""
        start = block_state.denoising_start
        if start is not None:
            return conflict(self, ["denoising_start", "num_inference_steps"],
                            f"denoising_start={start} leaves none of the {total} steps; lower it or raise the steps")
        strength = block_state.strength
        return conflict(self, ["strength", "num_inference_steps"],
                        f"strength={strength} with num_inference_steps={total} leaves int({total} x {strength}) = 0 "
                        "denoising steps; raise either")


class StableDiffusionInpaintSetTimestepsStep(StableDiffusionImg2ImgSetTimestepsStep):
    """Img2img timesteps with inpainting's default ``strength`` of 1.0 (repaint the masked area fully)."""

    inputs = [p.replace(default=1.0) if p.name == "strength" else p for p in StableDiffusionImg2ImgSetTimestepsStep.inputs]


class StableDiffusionPrepareLatentsStep(ModularPipelineBlocks):
    """Draw the initial noise (or scale given ``latents``) for text-to-image.

    Given ``latents`` set the size; ``height`` / ``width`` given with them must agree with their shape.
    """

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler), ComponentSpec("unet", UNet2DConditionModel)]
    inputs = [
        HEIGHT, WIDTH, GENERATOR, NUM_IMAGES, USER_LATENTS,
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [LATENTS_OUT]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        check_generators(self, block_state)
        shape = self.latents_shape(components, block_state)
        device = execution_device(components)
        if block_state.latents is None:
            latents = randn_tensor(shape, generator=block_state.generator, device=device, dtype=block_state.dtype)
        else:
            check_latents(self, block_state.latents, shape, ["prompt", "num_images_per_prompt"],
                          f"{batch_text(block_state.batch_size, block_state.num_images_per_prompt)} and the UNet's "
                          f"{shape[1]} channels")
            latents = block_state.latents.to(device)
        block_state.latents = latents * components.scheduler.init_noise_sigma
        self.set_block_state(state, block_state)
        return components, state

    def latents_shape(self, components, block_state) -> tuple[int, int, int, int]:
        """``(batch, channels, height / f, width / f)``; the size from ``height`` / ``width``, else from the
        given latents, else the UNet's default."""
        factor = vae_scale_factor(components)
        height, width = block_state.height, block_state.width
        latents = block_state.latents
        if latents is not None and latents.ndim == 4:
            size = {"height": latents.shape[-2] * factor, "width": latents.shape[-1] * factor}
            asked = {"height": height, "width": width}
            wrong = [name for name, value in asked.items() if value not in (None, size[name])]
            if wrong:
                given = " and ".join(f"{name}={asked[name]}" for name in wrong)
                raise conflict(self, [*wrong, "latents"],
                               f"{given}, but latents of shape {tuple(latents.shape)} make {size['height']}x"
                               f"{size['width']} images (VAE scale factor {factor}); drop {'/'.join(wrong)} or give "
                               "latents of the size wanted")
            height, width = size["height"], size["width"]
        height, width = default_size(components, height, width)
        check_multiple(self, height, width, factor)
        batch = block_state.batch_size * block_state.num_images_per_prompt
        return batch, components.unet.config.in_channels, height // factor, width // factor


def check_generators(block, block_state) -> None:
    """A list of generators has one per image (``prompt`` count x ``num_images_per_prompt``)."""
    generator = block_state.generator
    batch = block_state.batch_size * block_state.num_images_per_prompt
    if isinstance(generator, list) and len(generator) != batch:
        raise conflict(block, ["generator", "prompt", "num_images_per_prompt"],
                       f"{len(generator)} generator(s) for "
                       f"{batch_text(block_state.batch_size, block_state.num_images_per_prompt)}; give one per image")


def check_image_rows(block, block_state, image_rows: int) -> None:
    """The images (or their latents) can be repeated to the batch: 1, one per prompt or a divisor of it."""
    check_rows(block, "image", image_rows, block_state.batch_size, block_state.num_images_per_prompt)


class StableDiffusionImg2ImgPrepareLatentsStep(ModularPipelineBlocks):
    """Noise the image latents to the first timestep (image-to-image)."""

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("scheduler", DDIMScheduler)]
    inputs = [
        GENERATOR, NUM_IMAGES, USER_LATENTS.replace(description="start from these latents instead of the noised image"),
        InputParam("image_latents", type_hint=torch.Tensor, required=True),
        InputParam("latent_timestep", type_hint=torch.Tensor, required=True),
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [LATENTS_OUT]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        check_image_rows(self, block_state, block_state.image_latents.shape[0])
        batch = block_state.batch_size * block_state.num_images_per_prompt
        if block_state.latents is None:
            check_generators(self, block_state)
            image_latents = repeat_to(block_state.image_latents.to(dtype=block_state.dtype), batch)
            noise = randn_tensor(image_latents.shape, generator=block_state.generator, device=image_latents.device,
                                 dtype=block_state.dtype)
            block_state.latents = components.scheduler.add_noise(image_latents, noise, block_state.latent_timestep)
        else:
            shape = (batch, *block_state.image_latents.shape[1:])
            check_latents(self, block_state.latents, shape, ["image", "prompt"],
                          f"the image and {batch_text(block_state.batch_size, block_state.num_images_per_prompt)}")
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintPrepareLatentsStep(ModularPipelineBlocks):
    """Initial latents, noise, latent mask and masked-image latents for inpainting."""

    model_name = "stable-diffusion"
    upcast_vae = False  # encode in float32 when the VAE asks for it (see blocks.vae)
    expected_components = [ComponentSpec("scheduler", DDIMScheduler), ComponentSpec("vae", AutoencoderKL),
                           ComponentSpec("unet", UNet2DConditionModel)]
    inputs = [
        GENERATOR, NUM_IMAGES, STRENGTH.replace(default=1.0),
        USER_LATENTS.replace(description="the initial noise (instead of drawing it)"),
        InputParam("image_latents", type_hint=torch.Tensor),
        InputParam("init_image", type_hint=torch.Tensor, required=True),
        InputParam("mask_condition", type_hint=torch.Tensor, required=True),
        InputParam("masked_image_latents", type_hint=FINITE_TENSOR, description="precomputed masked-image latents"),
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
        self.check_counts(block_state)
        height, width = block_state.init_image.shape[-2:]
        factor = vae_scale_factor(components)
        shape = (batch, components.vae.config.latent_channels, height // factor, width // factor)
        if block_state.latents is not None:
            check_latents(self, block_state.latents, shape, ["image", "prompt"],
                          f"the image and {batch_text(block_state.batch_size, block_state.num_images_per_prompt)}")
        if block_state.image_latents is not None:
            block_state.image_latents = repeat_to(block_state.image_latents.to(device=device, dtype=dtype), batch)
        block_state.latents, block_state.noise = self.initial_latents(components, block_state, shape, device, dtype)
        self._mask_latents(components, block_state, batch, (height // factor, width // factor), device, dtype)
        self.set_block_state(state, block_state)
        return components, state

    def check_counts(self, block_state) -> None:
        """Images and masks each repeat to the batch; several of both must pair up one to one."""
        check_generators(self, block_state)
        images, masks = block_state.init_image.shape[0], block_state.mask_condition.shape[0]
        if images > 1 and masks > 1 and images != masks:
            raise conflict(self, ["image", "mask_image"],
                           f"{images} images and {masks} masks; give one mask, one image, or as many of both")
        check_image_rows(self, block_state, images)
        check_rows(self, "mask_image", masks, block_state.batch_size, block_state.num_images_per_prompt, "masks")

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
            masked = encode_image(components.vae, masked_image, block_state.generator, upcast=self.upcast_vae)
        block_state.mask = repeat_to(mask, batch)
        block_state.masked_image_latents = repeat_to(masked.to(device=device, dtype=dtype), batch)


class StableDiffusionAutoSetTimestepsStep(AutoPipelineBlocks):
    """Timesteps: by `strength` when `image` is given (inpaint: `mask_image` too), else the full schedule."""

    choices = {
        "inpaint": (StableDiffusionInpaintSetTimestepsStep, "mask_image"),
        "img2img": (StableDiffusionImg2ImgSetTimestepsStep, "image"),
        "text2img": (StableDiffusionSetTimestepsStep, None),
    }


class StableDiffusionAutoPrepareLatentsStep(AutoPipelineBlocks):
    """Initial latents: inpaint when `mask_image` is given, img2img when `image` is, else noise."""

    choices = {
        "inpaint": (StableDiffusionInpaintPrepareLatentsStep, "mask_image"),
        "img2img": (StableDiffusionImg2ImgPrepareLatentsStep, "image"),
        "text2img": (StableDiffusionPrepareLatentsStep, None),
    }
