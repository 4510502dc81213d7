"""ControlNet for Stable Diffusion 1.x/2.x: prepare the control image(s), then a denoiser that feeds the
ControlNet residuals to the UNet. The ControlNet runs in the same batch as the UNet's guidance branches
(every guider works); in guess mode it sees only the conditional rows and the others get zero residuals.
"""

from __future__ import annotations

from typing import Annotated

import torch

from ...components.errors import AdapterError
from ...components.image_processor import VaeImageProcessor
from ...components.models.controlnet import ControlNetModel, MultiControlNetModel
from ...components.spec import ComponentSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ...modular_pipelines.checks import Finite
from ..checks import FINITE_TENSOR, IMAGE_TYPE, conflict
from ..common import execution_device, vae_scale_factor
from ..processors import image_processor_for
from ..guidance import guided_forward
from .denoise import (
    StableDiffusionDenoiseLoopWrapper,
    StableDiffusionDenoiseStep,
    StableDiffusionInpaintDenoiseStep,
    StableDiffusionInpaintLoopAfterDenoiser,
    StableDiffusionInpaintLoopBeforeDenoiser,
    StableDiffusionLoopAfterDenoiser,
    StableDiffusionLoopBeforeDenoiser,
    StableDiffusionLoopDenoiser,
)
from .inputs import FRACTION, NUM_IMAGES

CONTROLNET = ComponentSpec("controlnet", ControlNetModel)
# one value for every ControlNet, or one per ControlNet
PER_NET_FRACTION = FRACTION | list[FRACTION] | tuple[FRACTION, ...]
PER_NET_SCALE = Annotated[float | list[float] | tuple[float, ...], Finite]
CONTROL_PROCESSOR = ComponentSpec("control_image_processor", VaeImageProcessor,
                                  config={"do_convert_rgb": True, "do_normalize": False},
                                  default_creation_method="from_config")


CONTROL_IMAGE = InputParam("control_image", type_hint=IMAGE_TYPE, required=True,
                           description="the conditioning image (a list for several ControlNets)")
CONTROLNET_SCALE = InputParam("controlnet_conditioning_scale", type_hint=PER_NET_SCALE, default=1.0,
                              description="residual scale (per ControlNet)")
CONTROL_START = InputParam("control_guidance_start", type_hint=PER_NET_FRACTION, default=0.0,
                           description="fraction of steps before the ControlNet acts (per ControlNet)")
CONTROL_END = InputParam("control_guidance_end", type_hint=PER_NET_FRACTION, default=1.0,
                         description="fraction of steps after which it stops (per ControlNet)")


def per_net(block, block_state, name: str, count: int) -> list:
    """One value of input ``name`` per ControlNet (a single value is used for all)."""
    value = getattr(block_state, name)
    values = list(value) if isinstance(value, (list, tuple)) else [value] * count
    if len(values) != count:
        raise conflict(block, [name, "controlnet"], f"{len(values)} values of {name} for {count} ControlNets")
    return values


def check_windows(block, starts: list[float], ends: list[float]) -> None:
    """Each ControlNet's window of steps is not empty."""
    for start, end in zip(starts, ends):
        if start >= end:
            raise conflict(block, ["control_guidance_start", "control_guidance_end"],
                           f"start {start} is not before end {end}; the ControlNet would never act")


def keep_schedule(num_steps: int, starts: list[float], ends: list[float]) -> list[list[float]]:
    """Per step and per ControlNet: 1.0 inside ``[start, end]`` (as fractions of the steps), else 0.0."""
    return [[1.0 - float(i / num_steps < s or (i + 1) / num_steps > e) for s, e in zip(starts, ends)]
            for i in range(num_steps)]


class StableDiffusionControlNetInputStep(ModularPipelineBlocks):
    """Preprocess the control image(s) to the latents' size and schedule each ControlNet's strength."""

    model_name = "stable-diffusion"
    expected_components = [CONTROLNET, CONTROL_PROCESSOR]
    inputs = [
        CONTROL_IMAGE, CONTROLNET_SCALE, CONTROL_START, CONTROL_END,
        InputParam("guess_mode", type_hint=bool, default=False, description="the ControlNet sees no prompt difference"),
        InputParam("latents", type_hint=FINITE_TENSOR, required=True),
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
        NUM_IMAGES,
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [
        OutputParam("controlnet_cond", description="the preprocessed control image(s), one row per image"),
        OutputParam("conditioning_scale", description="scale per ControlNet"),
        OutputParam("controlnet_keep", type_hint=list, description="per step: 1.0 while each ControlNet acts"),
        OutputParam("guess_mode", type_hint=bool),
    ]

    def check_ready(self, components, values):
        if getattr(components, "controlnet", None) is None:
            raise AdapterError.no_controlnet("control_image was given")

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        controlnet = components.controlnet
        if controlnet is None:
            raise AdapterError.no_controlnet("control_image was given")
        multi = isinstance(controlnet, MultiControlNetModel)
        nets = controlnet.nets if multi else [controlnet]
        images = block_state.control_image if multi else [block_state.control_image]
        if len(images) != len(nets):
            raise conflict(self, ["control_image", "controlnet"], f"{len(images)} control images for {len(nets)} "
                                                                  "ControlNets; give one (or a list) per ControlNet")
        factor = vae_scale_factor(components)
        height, width = block_state.latents.shape[-2] * factor, block_state.latents.shape[-1] * factor
        batch = block_state.latents.shape[0]
        prepared = [self.prepare_image(components, image, height, width, batch, block_state.num_images_per_prompt,
                                       block_state.dtype) for image in images]
        block_state.controlnet_cond = prepared if multi else prepared[0]
        scales = per_net(self, block_state, "controlnet_conditioning_scale", len(nets))
        block_state.conditioning_scale = scales if multi else scales[0]
        starts = per_net(self, block_state, "control_guidance_start", len(nets))
        ends = per_net(self, block_state, "control_guidance_end", len(nets))
        check_windows(self, starts, ends)
        keep = keep_schedule(len(block_state.timesteps), starts, ends)
        block_state.controlnet_keep = keep if multi else [k[0] for k in keep]
        pooled = any(getattr(n.config, "global_pool_conditions", False) for n in nets)
        block_state.guess_mode = bool(block_state.guess_mode or pooled)
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def prepare_image(components, image, height, width, batch, per_prompt, dtype) -> torch.Tensor:
        processor = image_processor_for(components, "control_image_processor")
        image = processor.preprocess(image, height=height, width=width).to(dtype=torch.float32)
        image = image.repeat_interleave(batch if image.shape[0] == 1 else per_prompt, dim=0)
        return image.to(device=execution_device(components), dtype=dtype or image.dtype)


class StableDiffusionAutoControlNetInputStep(AutoPipelineBlocks):
    """Prepare ControlNet inputs when `control_image` is given; skipped otherwise."""

    choices = {
        "controlnet_input": (StableDiffusionControlNetInputStep, "control_image"),
    }


def _rows(branches, per_branch: int, conditional: bool) -> torch.Tensor:
    picked = [i for i, b in enumerate(branches) if b.conditional == conditional]
    return torch.tensor([i * per_branch + r for i in picked for r in range(per_branch)], dtype=torch.long)


def _select(value, rows):
    if isinstance(value, dict):
        return {k: _select(v, rows) for k, v in value.items()}
    return value[rows] if isinstance(value, torch.Tensor) else value


class StableDiffusionControlNetLoopDenoiser(StableDiffusionLoopDenoiser):
    """Predict the noise: the ControlNet's residuals go into the UNet, in one batch with every guidance branch."""

    expected_components = StableDiffusionLoopDenoiser.expected_components + [CONTROLNET]
    inputs = StableDiffusionLoopDenoiser.inputs + [
        InputParam("controlnet_cond", required=True),
        InputParam("conditioning_scale", required=True),
        InputParam("controlnet_keep", type_hint=list, required=True),
        InputParam("guess_mode", type_hint=bool, default=False),
    ]

    def __call__(self, components, block_state, i, t):
        keep = block_state.controlnet_keep[i]
        scale = block_state.conditioning_scale
        scale = [s * k for s, k in zip(scale, keep)] if isinstance(scale, list) else scale * keep
        forward = self.controlled_forward(components, block_state.controlnet_cond, scale, block_state.guess_mode)
        block_state.noise_pred = guided_forward(
            components.guider, components.unet, block_state.scaled_latents, t, self.conditioning(block_state),
            self.shared_inputs(components, block_state), split=block_state.split_guidance_batches, forward=forward,
            parallel=getattr(components, "guidance_parallel", None),
        )
        return components, block_state

    @staticmethod
    def controlled_forward(components, control, scale, guess_mode):
        """A forward of ControlNet then UNet over a batch of guidance branches."""
        controlnet, unet = components.controlnet, components.unet

        def forward(sample, timestep, branches, encoder_hidden_states, added_cond_kwargs=None, **kwargs):
            per_branch = sample.shape[0] // len(branches)
            rows = _rows(branches, per_branch, True) if guess_mode else torch.arange(sample.shape[0])
            cond = [c.repeat(len(rows) // c.shape[0], 1, 1, 1) for c in control] if isinstance(control, list) \
                else control.repeat(len(rows) // control.shape[0], 1, 1, 1)
            down, mid = controlnet(
                sample[rows], timestep, encoder_hidden_states=encoder_hidden_states[rows], controlnet_cond=cond,
                conditioning_scale=scale, guess_mode=guess_mode, added_cond_kwargs=_select(added_cond_kwargs, rows),
                return_dict=False,
            )
            if len(rows) != sample.shape[0]:  # guess mode: zero residuals for the unconditional rows
                down = [_scatter(d, rows, sample.shape[0]) for d in down]
                mid = _scatter(mid, rows, sample.shape[0])
            return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs,
                        down_block_additional_residuals=down, mid_block_additional_residual=mid, **kwargs)

        return forward


def _scatter(values: torch.Tensor, rows: torch.Tensor, total: int) -> torch.Tensor:
    full = values.new_zeros((total, *values.shape[1:]))
    full[rows] = values
    return full


class StableDiffusionControlNetDenoiseStep(StableDiffusionDenoiseLoopWrapper):
    """The denoise loop with ControlNet."""

    block_classes = [StableDiffusionLoopBeforeDenoiser, StableDiffusionControlNetLoopDenoiser,
                     StableDiffusionLoopAfterDenoiser]


class StableDiffusionInpaintControlNetDenoiseStep(StableDiffusionDenoiseLoopWrapper):
    """The inpainting denoise loop with ControlNet."""

    block_classes = [StableDiffusionInpaintLoopBeforeDenoiser, StableDiffusionControlNetLoopDenoiser,
                     StableDiffusionInpaintLoopAfterDenoiser]


class StableDiffusionAutoControlNetDenoiseStep(AutoPipelineBlocks):
    """Denoise: the ControlNet loop when `control_image` is given, else the plain loop."""

    choices = {
        "controlnet_denoise": (StableDiffusionControlNetDenoiseStep, "control_image"),
        "denoise": (StableDiffusionDenoiseStep, None),
    }


class StableDiffusionAutoInpaintControlNetDenoiseStep(AutoPipelineBlocks):
    """Denoise with ControlNet: the inpainting loop when `mask_image` is given, else the plain ControlNet loop."""

    choices = {
        "inpaint": (StableDiffusionInpaintControlNetDenoiseStep, "mask_image"),
        "controlnet_denoise": (StableDiffusionControlNetDenoiseStep, None),
    }


class StableDiffusionAutoDenoiseStep(AutoPipelineBlocks):
    """Denoise: a ControlNet loop when `control_image` is given (for inpainting when `mask_image` is too), else the
    inpainting loop when `mask_image` is given, else the plain loop."""

    choices = {
        "controlnet": (StableDiffusionAutoInpaintControlNetDenoiseStep, "control_image"),
        "inpaint": (StableDiffusionInpaintDenoiseStep, "mask_image"),
        "denoise": (StableDiffusionDenoiseStep, None),
    }
