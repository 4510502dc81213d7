"""Unconditional pixel-space diffusion (DDPM checkpoints such as the quicktour's cat model)."""

from __future__ import annotations

import torch

from ..components.models import UNet2DModel
from ..components.noise import randn_tensor
from ..components.schedulers import DDPMScheduler
from ..components.spec import ComponentSpec
from ..modular_pipelines import InputParam, LoopSequentialPipelineBlocks, ModularPipelineBlocks, OutputParam
from .checks import invalid
from .common import execution_device
from .scheduling import set_scheduler_timesteps, step_kwargs
from .stable_diffusion.decoders import OUTPUT_TYPES
from .stable_diffusion.inputs import IMAGE, POSITIVE_INT, STEPS

UNET = ComponentSpec("unet", UNet2DModel)
SCHEDULER = ComponentSpec("scheduler", DDPMScheduler)


class DDPMSetTimestepsStep(ModularPipelineBlocks):
    """Set the scheduler's timesteps."""

    expected_components = [SCHEDULER]
    inputs = [STEPS.replace(default=1000)]
    intermediate_outputs = [OutputParam("timesteps", type_hint=torch.Tensor), OutputParam("num_inference_steps", type_hint=int)]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.timesteps, block_state.num_inference_steps = set_scheduler_timesteps(
            components.scheduler, block_state.num_inference_steps)
        self.set_block_state(state, block_state)
        return components, state


class DDPMPrepareNoiseStep(ModularPipelineBlocks):
    """Draw the starting noise in pixel space."""

    expected_components = [UNET]
    inputs = [
        InputParam("batch_size", type_hint=POSITIVE_INT, default=1, description="how many images"),
        InputParam("generator", type_hint=torch.Generator | list[torch.Generator]),
    ]
    intermediate_outputs = [OutputParam("sample", type_hint=torch.Tensor, description="the noisy images")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        config = components.unet.config
        size = (config.sample_size,) * 2 if isinstance(config.sample_size, int) else tuple(config.sample_size)
        shape = (block_state.batch_size, config.in_channels, *size)
        block_state.sample = randn_tensor(shape, generator=block_state.generator, device=execution_device(components),
                                 dtype=components.unet.dtype)
        self.set_block_state(state, block_state)
        return components, state


class DDPMLoopDenoiser(ModularPipelineBlocks):
    """Predict the noise with the unconditional UNet."""

    expected_components = [UNET]
    inputs = [InputParam("sample", type_hint=torch.Tensor, required=True)]
    intermediate_outputs = [OutputParam("model_output", type_hint=torch.Tensor)]

    def __call__(self, components, block_state, i, t):
        block_state.model_output = components.unet(block_state.sample, t).sample
        return components, block_state


class DDPMLoopStep(ModularPipelineBlocks):
    """Take one scheduler step."""

    expected_components = [SCHEDULER]
    inputs = [InputParam("model_output", type_hint=torch.Tensor, required=True),
              InputParam("generator", type_hint=torch.Generator | list[torch.Generator])]
    intermediate_outputs = [OutputParam("sample", type_hint=torch.Tensor)]

    def __call__(self, components, block_state, i, t):
        kwargs = step_kwargs(components.scheduler, block_state.generator, None)
        block_state.sample = components.scheduler.step(block_state.model_output, t, block_state.sample, **kwargs).prev_sample
        return components, block_state


class DDPMDenoiseStep(LoopSequentialPipelineBlocks):
    """Iterate over the timesteps (the core loop driver: progress bar, interrupt, callbacks on ``sample``)."""

    latents_name = "sample"
    loop_inputs = [InputParam("timesteps", type_hint=torch.Tensor, required=True)]
    block_classes = [DDPMLoopDenoiser, DDPMLoopStep]
    block_names = ["denoiser", "step"]


class DDPMDecodeStep(ModularPipelineBlocks):
    """Map the samples from [-1, 1] to images."""

    inputs = [InputParam("sample", type_hint=torch.Tensor, required=True),
              InputParam("output_type", type_hint=str, default="pil", description="pil, np or pt")]
    intermediate_outputs = [OutputParam("images", type_hint=IMAGE.type_hint, description="the generated images")]

    def __call__(self, components, state):
        from PIL import Image

        block_state = self.get_block_state(state)
        if block_state.output_type not in OUTPUT_TYPES[:3]:
            raise invalid(self, "output_type", f"must be one of {', '.join(OUTPUT_TYPES[:3])}", block_state.output_type)
        images = (block_state.sample / 2 + 0.5).clamp(0, 1)
        if block_state.output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if block_state.output_type == "pil":
                images = [Image.fromarray((img * 255).round().astype("uint8").squeeze()) for img in images]
        block_state.images = images
        self.set_block_state(state, block_state)
        return components, state
