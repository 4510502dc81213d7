"""What the FLUX.1 blocks share: their inputs (the Stable Diffusion family's where they mean the same), the
component specs, the execution device, and packing latents into 2x2-patch tokens.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ...components.image_processor import VaeImageProcessor
from ...components.models import AutoencoderKL, FluxTransformer2DModel
from ...components.schedulers.flow_match_euler import FlowMatchEulerDiscreteScheduler
from ...components.spec import ComponentSpec
from ...guiders import ClassifierFreeGuidance
from ...modular_pipelines import InputParam
from ..checks import FINITE_TENSOR
from ..processors import _ConfigKey, _rebuilt
from ..stable_diffusion.inputs import PROMPTS, STEPS

MODEL_NAME = "flux"

TRANSFORMER = ComponentSpec("transformer", FluxTransformer2DModel)
SCHEDULER = ComponentSpec("scheduler", FlowMatchEulerDiscreteScheduler)
VAE = ComponentSpec("vae", AutoencoderKL)
# FLUX images are multiples of 16 pixels: 8 for the VAE, 2 for the latent patches
IMAGE_PROCESSOR = ComponentSpec("image_processor", VaeImageProcessor, config={"vae_scale_factor": 16},
                                default_creation_method="from_config")
# true CFG (FluxPipeline's true_cfg_scale): off unless the guider's scale is raised and a negative prompt given
GUIDER = ComponentSpec("guider", ClassifierFreeGuidance, config={"guidance_scale": 1.0},
                       default_creation_method="from_config")

DEFAULT_SIZE = 1024  # FluxPipeline's default height and width: 128 latent pixels x the VAE's 8
FLUX_STEPS = STEPS.replace(default=28)
GUIDANCE_SCALE = InputParam(
    "guidance_scale", type_hint=Annotated[float, Field(ge=0)], default=3.5,
    description="the distilled guidance FLUX.1-dev is conditioned on (schnell ignores it); true CFG is the guider's")
MAX_SEQUENCE_LENGTH = InputParam("max_sequence_length", type_hint=Annotated[int, Field(gt=0, le=512)], default=512,
                                 description="T5 tokens the prompt is padded or cut to")
PROMPT_2 = InputParam("prompt_2", type_hint=PROMPTS, description="the prompt for T5 (default: prompt)")
NEGATIVE_PROMPT_2 = InputParam("negative_prompt_2", type_hint=PROMPTS,
                               description="the negative prompt for T5 (default: negative_prompt)")
FLUX_LATENTS = InputParam("latents", type_hint=FINITE_TENSOR,
                          description="start from these latents (packed (batch, tokens, 64) or (batch, 16, h, w))")


def execution_device(components) -> torch.device:
    """Where the transformer runs: its offload hook's device when it has one, else its weights' device, else
    the pipeline's."""
    transformer = getattr(components, "transformer", None)
    if transformer is None:
        return components.device
    for module in transformer.modules():
        device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(transformer.parameters()).device


def vae_scale_factor(components) -> int:
    """``2 ** (levels - 1)`` of the loaded VAE (8 for FLUX's; 8 without a VAE)."""
    vae = getattr(components, "vae", None)
    return 8 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)


def flux_processor(components, name: str = "image_processor"):
    """The pipeline's processor ``name`` for sizes that are multiples of twice the loaded VAE's scale factor
    (the latents are cut into 2x2 patches), rebuilt when its configured factor differs."""
    processor = getattr(components, name)
    factor = vae_scale_factor(components) * 2
    if processor.config.get("vae_scale_factor") == factor:
        return processor
    return _rebuilt(type(processor), _ConfigKey({**processor.config, "vae_scale_factor": factor}))


def image_size(block_state) -> tuple[int, int]:
    """``(height, width)`` asked for, 1024 for either not given (as FluxPipeline)."""
    return block_state.height or DEFAULT_SIZE, block_state.width or DEFAULT_SIZE


def latent_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """The latent grid of a ``height`` x ``width`` image: ``pixels / factor``, rounded down to an even size."""
    return 2 * (int(height) // (factor * 2)), 2 * (int(width) // (factor * 2))


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """``(batch, c, h, w)`` -> ``(batch, h/2 * w/2, c * 4)``: one token per 2x2 patch, channels major."""
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // 2) * (width // 2), channels * 4)


def unpack_latents(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`pack_latents` for a ``height`` x ``width`` latent grid."""
    batch, _, channels = latents.shape
    patches = latents.view(batch, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, channels // 4, height, width)


def latent_image_ids(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """``(h/2 * w/2, 3)`` positions ``(0, row, column)`` of the packed tokens of an ``h`` x ``w`` latent grid."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)
