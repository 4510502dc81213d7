"""The inputs users give the Stable Diffusion family's blocks, declared once with their constraints.

Every block that reads one of these names declares it from here, so a value is checked the same way
wherever it goes (the pipeline checks each given value before any block runs) and the JSON schema of
any block shows the same bounds.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ...modular_pipelines import InputParam
from ..checks import FINITE_TENSOR, IMAGE_OR_LATENTS_TYPE, IMAGE_TYPE, MASK_TYPE

POSITIVE_INT = Annotated[int, Field(gt=0)]
FRACTION = Annotated[float, Field(ge=0, le=1)]
PROMPTS = str | Annotated[list[str], Field(min_length=1)]

PROMPT = InputParam("prompt", type_hint=PROMPTS, description="what to draw (one or a list of prompts)")
NEGATIVE_PROMPT = InputParam("negative_prompt", type_hint=PROMPTS,
                             description="what to steer away from (one, or one per prompt)")
GENERATOR = InputParam("generator", type_hint=torch.Generator | list[torch.Generator],
                       description="seeds the noise (one, or one per image)")
HEIGHT = InputParam("height", type_hint=POSITIVE_INT, description="output height in pixels")
WIDTH = InputParam("width", type_hint=POSITIVE_INT, description="output width in pixels")
NUM_IMAGES = InputParam("num_images_per_prompt", type_hint=POSITIVE_INT, default=1,
                        description="images made per prompt")
STEPS = InputParam("num_inference_steps", type_hint=POSITIVE_INT, default=50, description="denoising steps")
STRENGTH = InputParam("strength", type_hint=Annotated[float, Field(gt=0, le=1)], default=0.8,
                      description="how much of the image is re-noised (1.0 ignores the image)")
DENOISING_START = InputParam("denoising_start", type_hint=Annotated[float, Field(ge=0, lt=1)],
                             description="start at this fraction (refiner of base+refiner)")
DENOISING_END = InputParam("denoising_end", type_hint=Annotated[float, Field(gt=0, le=1)],
                           description="stop early at this fraction (base of base+refiner)")
ETA = InputParam("eta", type_hint=FRACTION, default=0.0, description="DDIM's eta (0: deterministic, 1: DDPM-like)")
CLIP_SKIP = InputParam("clip_skip", type_hint=Annotated[int, Field(ge=0)],
                       description="take CLIP's hidden state this many layers from the end")
PADDING_MASK_CROP = InputParam(
    "padding_mask_crop", type_hint=Annotated[int, Field(ge=0)],
    description="repaint only a crop around the mask, padded by this many pixels, then paste it back")

IMAGE = InputParam("image", type_hint=IMAGE_TYPE, required=True,
                   description="the input image (PIL, numpy or tensor; or a list)")
IMG2IMG_IMAGE = IMAGE.replace(type_hint=IMAGE_OR_LATENTS_TYPE, description=(
    "the input image (PIL, numpy or tensor; or a list), or a float tensor of VAE latents (a base model's "
    "output_type='latent')"))
MASK_IMAGE = InputParam("mask_image", type_hint=MASK_TYPE, required=True,
                        description="white where the image is repainted")

USER_LATENTS = InputParam("latents", type_hint=FINITE_TENSOR, description="start from these latents instead of noise")
