"""Stable Diffusion XL steps before the denoise loop: the SD ones, plus pooled embeds and size conditioning."""

from __future__ import annotations

import torch

from ...components.models import UNet2DConditionModel
from ...components.errors import ConfigError
from ...components.noise import randn_tensor
from ...components.schedulers import EulerDiscreteScheduler
from ...components.spec import ComponentSpec, ConfigSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_FLOAT, FINITE_TENSOR
from ..common import repeat_to, vae_scale_factor
from ..stable_diffusion.before_denoise import (
    StableDiffusionImg2ImgPrepareLatentsStep,
    StableDiffusionImg2ImgSetTimestepsStep,
    StableDiffusionInpaintPrepareLatentsStep,
    StableDiffusionInputStep,
    StableDiffusionPrepareLatentsStep,
    StableDiffusionSetTimestepsStep,
    check_image_rows,
)
from ..stable_diffusion.inputs import DENOISING_START

SCHEDULER = ComponentSpec("scheduler", EulerDiscreteScheduler)


def _with_default(params, name, default):
    return [p.replace(default=default) if p.name == name else p for p in params]


def _with_scheduler(components):
    return [SCHEDULER if c.name == "scheduler" else c for c in components]


class StableDiffusionXLInputStep(StableDiffusionInputStep):
    """Expand text and pooled embeddings to ``num_images_per_prompt`` images per prompt."""

    model_name = "stable-diffusion-xl"
    inputs = StableDiffusionInputStep.inputs + [
        InputParam("pooled_prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("negative_pooled_prompt_embeds", type_hint=torch.Tensor),
    ]
    intermediate_outputs = StableDiffusionInputStep.intermediate_outputs + [
        OutputParam("pooled_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields"),
        OutputParam("negative_pooled_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        n = block_state.num_images_per_prompt
        block_state.batch_size = block_state.prompt_embeds.shape[0]
        block_state.dtype = block_state.prompt_embeds.dtype
        for name in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"):
            value = getattr(block_state, name)
            if value is not None:
                setattr(block_state, name, value.repeat_interleave(n, dim=0))
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionXLSetTimestepsStep(StableDiffusionSetTimestepsStep):
    """Set the scheduler's timesteps (``denoising_end`` stops early for base+refiner)."""

    model_name = "stable-diffusion-xl"
    expected_components = [SCHEDULER]


class StableDiffusionXLImg2ImgSetTimestepsStep(StableDiffusionImg2ImgSetTimestepsStep):
    """Timesteps by ``strength`` (default 0.3) or from ``denoising_start``."""

    model_name = "stable-diffusion-xl"
    expected_components = [SCHEDULER]
    inputs = _with_default(StableDiffusionImg2ImgSetTimestepsStep.inputs, "strength", 0.3)


class StableDiffusionXLInpaintSetTimestepsStep(StableDiffusionImg2ImgSetTimestepsStep):
    """Timesteps for inpainting (default ``strength`` 0.9999)."""

    model_name = "stable-diffusion-xl"
    expected_components = [SCHEDULER]
    inputs = _with_default(StableDiffusionImg2ImgSetTimestepsStep.inputs, "strength", 0.9999)


class StableDiffusionXLPrepareLatentsStep(StableDiffusionPrepareLatentsStep):
    """Draw the initial noise for text-to-image."""

    model_name = "stable-diffusion-xl"
    expected_components = _with_scheduler(StableDiffusionPrepareLatentsStep.expected_components)


class StableDiffusionXLImg2ImgPrepareLatentsStep(StableDiffusionImg2ImgPrepareLatentsStep):
    """Noise the image latents to the first timestep; with ``denoising_start`` use them as they are."""

    model_name = "stable-diffusion-xl"
    expected_components = [SCHEDULER]
    inputs = StableDiffusionImg2ImgPrepareLatentsStep.inputs + [DENOISING_START]

    def __call__(self, components, state):
        if state.get("denoising_start") is None or state.get("latents") is not None:
            return super().__call__(components, state)
        block_state = self.get_block_state(state)
        check_image_rows(self, block_state, block_state.image_latents.shape[0])
        batch = block_state.batch_size * block_state.num_images_per_prompt
        block_state.latents = repeat_to(block_state.image_latents.to(dtype=block_state.dtype), batch)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionXLInpaintPrepareLatentsStep(StableDiffusionInpaintPrepareLatentsStep):
    """Inpainting latents, noise and mask latents; with ``denoising_start`` the image latents are kept."""

    model_name = "stable-diffusion-xl"
    upcast_vae = True
    expected_components = _with_scheduler(StableDiffusionInpaintPrepareLatentsStep.expected_components)
    inputs = _with_default(StableDiffusionInpaintPrepareLatentsStep.inputs, "strength", 0.9999) + [DENOISING_START]

    @staticmethod
    def initial_latents(components, block_state, shape, device, dtype):
        if block_state.denoising_start is None or block_state.latents is not None:
            return StableDiffusionInpaintPrepareLatentsStep.initial_latents(components, block_state, shape, device, dtype)
        noise = randn_tensor(shape, generator=block_state.generator, device=device, dtype=dtype)
        return block_state.image_latents.to(device), noise


SIZE_INPUTS = [
    InputParam("original_size", type_hint=tuple, description="(height, width) the model is told the source had"),
    InputParam("target_size", type_hint=tuple, description="(height, width) the model is told to make"),
    InputParam("crops_coords_top_left", type_hint=tuple, default=(0, 0), description="crop offset conditioning"),
    InputParam("negative_original_size", type_hint=tuple),
    InputParam("negative_target_size", type_hint=tuple),
    InputParam("negative_crops_coords_top_left", type_hint=tuple, default=(0, 0)),
]


class StableDiffusionXLPrepareAdditionalConditioningStep(ModularPipelineBlocks):
    """SDXL's micro-conditioning: size and crop time ids (and their negatives)."""

    model_name = "stable-diffusion-xl"
    expected_components = [ComponentSpec("unet", UNet2DConditionModel)]
    inputs = SIZE_INPUTS + [
        InputParam("latents", type_hint=FINITE_TENSOR, required=True),
        InputParam("pooled_prompt_embeds", type_hint=torch.Tensor, required=True),
    ]
    intermediate_outputs = [
        OutputParam("add_time_ids", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields"),
        OutputParam("negative_add_time_ids", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields"),
    ]

    def uses_aesthetic_score(self, components) -> bool:
        return False

    def time_ids(self, block_state, size, negative: bool, aesthetic: bool = False) -> list[float]:
        target = (block_state.negative_target_size if negative else None) or block_state.target_size or size
        return _original_and_crops(block_state, size, negative) + list(target)

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        factor = vae_scale_factor(components)
        latents = block_state.latents
        size = (latents.shape[-2] * factor, latents.shape[-1] * factor)
        batch, dtype, device = latents.shape[0], block_state.pooled_prompt_embeds.dtype, latents.device
        aesthetic = self.uses_aesthetic_score(components)
        positive = self.time_ids(block_state, size, False, aesthetic)
        negative = self.time_ids(block_state, size, True, aesthetic)
        _check_embedding_width(components.unet, len(positive), block_state.pooled_prompt_embeds.shape[-1])
        block_state.add_time_ids = torch.tensor([positive], dtype=dtype).to(device).repeat(batch, 1)
        block_state.negative_add_time_ids = torch.tensor([negative], dtype=dtype).to(device).repeat(batch, 1)
        self.set_block_state(state, block_state)
        return components, state


def _original_and_crops(block_state, size, negative: bool) -> list:
    """The original size and crop offset time ids (the negative ones when ``negative`` and they are given)."""
    original = (block_state.negative_original_size if negative else None) or block_state.original_size or size
    use_negative = negative and block_state.negative_original_size
    crops = block_state.negative_crops_coords_top_left if use_negative else block_state.crops_coords_top_left
    return list(original) + list(crops)


def _check_embedding_width(unet, num_ids: int, pooled_dim: int) -> None:
    expected = unet.add_embedding.linear_1.in_features
    given = unet.config.addition_time_embed_dim * num_ids + pooled_dim
    if given != expected:
        raise ConfigError.embedding_width(expected, num_ids, pooled_dim, given)


class StableDiffusionXLImg2ImgPrepareAdditionalConditioningStep(StableDiffusionXLPrepareAdditionalConditioningStep):
    """Micro-conditioning for img2img / inpaint; refiners (``requires_aesthetics_score``) get aesthetic scores."""

    expected_configs = [ConfigSpec("requires_aesthetics_score", False)]
    inputs = StableDiffusionXLPrepareAdditionalConditioningStep.inputs + [
        InputParam("aesthetic_score", type_hint=FINITE_FLOAT, default=6.0,
                   description="refiners: the aesthetic score the model is told the image has"),
        InputParam("negative_aesthetic_score", type_hint=FINITE_FLOAT, default=2.5),
    ]

    def uses_aesthetic_score(self, components) -> bool:
        return bool(components.requires_aesthetics_score)

    def time_ids(self, block_state, size, negative: bool, aesthetic: bool = False) -> list[float]:
        if not aesthetic:
            return super().time_ids(block_state, size, negative)
        score = block_state.negative_aesthetic_score if negative else block_state.aesthetic_score
        return _original_and_crops(block_state, size, negative) + [score]


class StableDiffusionXLAutoSetTimestepsStep(AutoPipelineBlocks):
    """Timesteps: by `strength` when `image` is given (inpaint: `mask_image` too), else the full schedule."""

    choices = {
        "inpaint": (StableDiffusionXLInpaintSetTimestepsStep, "mask_image"),
        "img2img": (StableDiffusionXLImg2ImgSetTimestepsStep, "image"),
        "text2img": (StableDiffusionXLSetTimestepsStep, None),
    }


class StableDiffusionXLAutoPrepareLatentsStep(AutoPipelineBlocks):
    """Initial latents: inpaint when `mask_image` is given, img2img when `image` is, else noise."""

    choices = {
        "inpaint": (StableDiffusionXLInpaintPrepareLatentsStep, "mask_image"),
        "img2img": (StableDiffusionXLImg2ImgPrepareLatentsStep, "image"),
        "text2img": (StableDiffusionXLPrepareLatentsStep, None),
    }


class StableDiffusionXLAutoPrepareAdditionalConditioningStep(AutoPipelineBlocks):
    """Micro-conditioning: the img2img form (aesthetic scores for refiners) when `image` is given."""

    choices = {
        "img2img": (StableDiffusionXLImg2ImgPrepareAdditionalConditioningStep, "image"),
        "text2img": (StableDiffusionXLPrepareAdditionalConditioningStep, None),
    }
