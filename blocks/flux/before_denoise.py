"""FLUX.1 steps before the denoise loop: batch expansion, the resolution-shifted flow-matching schedule (cut
by ``strength`` for image-to-image and inpainting), and the packed initial noise with its position ids."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ...components.noise import randn_tensor
from ...components.schedulers.flow_match_euler import flux_mu
from ...modular_pipelines import InputParam, ModularPipelineBlocks, OutputParam
from ..checks import batch_text, check_latents, conflict, invalid
from ..stable_diffusion.before_denoise import check_generators
from ..stable_diffusion.inputs import GENERATOR, HEIGHT, NUM_IMAGES, STRENGTH, WIDTH
from .inputs import (
    FLUX_LATENTS,
    FLUX_STEPS,
    MODEL_NAME,
    SCHEDULER,
    TRANSFORMER,
    execution_device,
    image_size,
    latent_image_ids,
    latent_size,
    pack_latents,
    vae_scale_factor,
)

_EXPANDED = ("prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds", "negative_pooled_prompt_embeds")
LATENTS_OUT = OutputParam("latents", type_hint=torch.Tensor, description="the initial packed latents (batch, tokens, 64)")
IDS_OUT = OutputParam("latent_image_ids", type_hint=torch.Tensor, description="(tokens, 3) positions of the latent tokens")
SIZE_OUT = [OutputParam("height", type_hint=int, description="the image height in pixels"),
            OutputParam("width", type_hint=int, description="the image width in pixels")]
FLUX_STRENGTH = STRENGTH.replace(default=0.6)


class FluxInputStep(ModularPipelineBlocks):
    """Repeat the text embeddings for ``num_images_per_prompt`` images per prompt; set batch size and dtype."""

    model_name = MODEL_NAME
    inputs = [
        NUM_IMAGES,
        InputParam("prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("pooled_prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("negative_prompt_embeds", type_hint=torch.Tensor),
        InputParam("negative_pooled_prompt_embeds", type_hint=torch.Tensor),
    ]
    intermediate_outputs = [
        OutputParam("batch_size", type_hint=int, description="number of prompts"),
        OutputParam("dtype", type_hint=torch.dtype, description="dtype of the model inputs"),
        *(OutputParam(name, type_hint=torch.Tensor, kwargs_type="denoiser_input_fields") for name in _EXPANDED),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.batch_size = block_state.prompt_embeds.shape[0]
        block_state.dtype = block_state.prompt_embeds.dtype
        for name in _EXPANDED:
            value = getattr(block_state, name)
            if value is not None:
                setattr(block_state, name, value.repeat_interleave(block_state.num_images_per_prompt, dim=0))
        self.set_block_state(state, block_state)
        return components, state


def schedule_kwargs(scheduler, image_seq_len: int, num_inference_steps: int, sigmas=None, timesteps=None) -> dict:
    """What ``scheduler.set_timesteps`` gets, as FluxPipeline gives it: sigmas ``linspace(1, 1/n, n)`` unless
    custom ones (or the scheduler's own flow sigmas) are used, and ``mu`` when the scheduler takes it."""
    config = scheduler.config
    params = inspect.signature(scheduler.set_timesteps).parameters
    kwargs: dict = {"num_inference_steps": None}
    if timesteps is not None:
        kwargs["timesteps"] = timesteps
    elif sigmas is not None:
        kwargs["sigmas"] = sigmas
    elif not config.get("use_flow_sigmas", False) and "sigmas" in params:
        kwargs["sigmas"] = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
    else:
        kwargs["num_inference_steps"] = num_inference_steps
    if "mu" in params:
        kwargs["mu"] = flux_mu(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                               config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    return kwargs


class FluxSetTimestepsStep(ModularPipelineBlocks):
    """Set the flow-matching schedule: sigmas from 1 to ``1/n`` (or custom ones), shifted by ``mu`` from the
    number of latent tokens ``height`` x ``width`` makes (bigger images are shifted towards noise) when the
    scheduler shifts dynamically."""

    model_name = MODEL_NAME
    expected_components = [SCHEDULER]
    inputs = [
        FLUX_STEPS,
        InputParam("sigmas", type_hint=torch.Tensor | list[float], description="custom sigmas (before shifting)"),
        InputParam("timesteps", type_hint=torch.Tensor | list[float], description="custom timesteps"),
        HEIGHT, WIDTH,
    ]
    intermediate_outputs = [
        OutputParam("timesteps", type_hint=torch.Tensor, description="the timesteps the loop runs"),
        OutputParam("num_inference_steps", type_hint=int, description="how many steps the loop runs"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        total = self.set_schedule(components, block_state)
        block_state.timesteps, block_state.num_inference_steps = components.scheduler.timesteps, total
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def set_schedule(components, block_state) -> int:
        """Set the scheduler's full schedule (begin index 0); returns its number of steps."""
        scheduler = components.scheduler
        rows, cols = latent_size(*image_size(block_state), vae_scale_factor(components))
        kwargs = schedule_kwargs(scheduler, (rows // 2) * (cols // 2), block_state.num_inference_steps,
                                 block_state.sigmas, block_state.timesteps)
        scheduler.set_timesteps(kwargs.pop("num_inference_steps"), device=execution_device(components), **kwargs)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return len(scheduler.timesteps)


class FluxImg2ImgSetTimestepsStep(FluxSetTimestepsStep):
    """Set the schedule, then keep the last ``strength`` of it (FluxImg2ImgPipeline's rounding:
    ``int(n - n * strength)`` steps are skipped); the first kept timestep is where the image is noised to."""

    inputs = FluxSetTimestepsStep.inputs + [
        FLUX_STRENGTH, NUM_IMAGES, InputParam("batch_size", type_hint=int, required=True)]
    intermediate_outputs = FluxSetTimestepsStep.intermediate_outputs + [
        OutputParam("latent_timestep", type_hint=torch.Tensor, description="the timestep the image is noised to")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        scheduler = components.scheduler
        total = self.set_schedule(components, block_state)
        skipped = int(max(total - min(total * block_state.strength, total), 0)) * scheduler.order
        if total - skipped < 1:
            raise conflict(self, ["strength", "num_inference_steps"],
                           f"strength={block_state.strength} with num_inference_steps={total} leaves no denoising "
                           "step; raise either")
        scheduler.set_begin_index(skipped)
        block_state.timesteps = scheduler.timesteps[skipped:]
        block_state.num_inference_steps = total - skipped
        batch = block_state.batch_size * block_state.num_images_per_prompt
        block_state.latent_timestep = block_state.timesteps[:1].repeat(batch)
        self.set_block_state(state, block_state)
        return components, state


class FluxPrepareLatentsStep(ModularPipelineBlocks):
    """Draw the initial noise (or take given ``latents``), pack it into 2x2-patch tokens, and make the
    tokens' position ids. ``height`` / ``width`` default to 1024 and come out as used."""

    model_name = MODEL_NAME
    expected_components = [TRANSFORMER]
    inputs = [
        HEIGHT, WIDTH, GENERATOR, NUM_IMAGES, FLUX_LATENTS,
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [LATENTS_OUT, IDS_OUT, *SIZE_OUT]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        check_generators(self, block_state)
        shape = latents_shape(self, components, block_state)
        device, dtype = execution_device(components), block_state.dtype
        latents = block_state.latents
        if latents is None:
            latents = pack_latents(randn_tensor(shape, generator=block_state.generator, device=device, dtype=dtype))
        block_state.latents = given_latents(self, block_state, latents, shape).to(device=device, dtype=dtype)
        block_state.latent_image_ids = latent_image_ids(shape[2], shape[3], device, dtype)
        block_state.height, block_state.width = image_size(block_state)
        self.set_block_state(state, block_state)
        return components, state


def latents_shape(block, components, block_state) -> tuple[int, int, int, int]:
    """``(batch, latent channels, rows, cols)`` of the unpacked latents for the asked image size."""
    height, width = image_size(block_state)
    factor = vae_scale_factor(components)
    rows, cols = latent_size(height, width, factor)
    for name, value, size in (("height", height, rows), ("width", width, cols)):
        if size == 0:
            raise invalid(block, name, f"must be at least {factor * 2} (twice the VAE's scale factor)", value)
    batch = block_state.batch_size * block_state.num_images_per_prompt
    config = components.transformer.config  # Fill / Control models read more channels than they predict
    return batch, (config.get("out_channels") or config.in_channels) // 4, rows, cols


def given_latents(block, block_state, latents: torch.Tensor, shape) -> torch.Tensor:
    """Latents of the size the block would make, packed: packed ones as they are, unpacked ones packed."""
    sizes = f"{batch_text(block_state.batch_size, block_state.num_images_per_prompt)} and height x width"
    if latents.ndim == 4:
        check_latents(block, latents, shape, ["prompt", "height", "width"], sizes)
        latents = pack_latents(latents)
    check_latents(block, latents, (shape[0], shape[2] * shape[3] // 4, shape[1] * 4), ["prompt", "height", "width"], sizes)
    return latents
