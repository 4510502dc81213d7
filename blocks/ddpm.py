"""Unconditional pixel-space diffusion (DDPM checkpoints such as the quicktour's cat model)."""

from __future__ import annotations

import torch

from ..components.models import UNet2DModel
from ..components.noise import randn_tensor
from ..components.schedulers import DDPMScheduler
from ..components.spec import ComponentSpec
from ..modular_pipelines import InputParam, LoopSequentialPipelineBlocks, ModularPipelineBlocks, OutputParam
from .common import execution_device, set_scheduler_timesteps, step_kwargs
from .stable_diffusion.decoders import OUTPUT_TYPES
from .stable_diffusion.inputs import POSITIVE_INT, STEPS

UNET = ComponentSpec("unet", UNet2DModel)
SCHEDULER = ComponentSpec("scheduler", DDPMScheduler)


class DDPMSetTimestepsStep(ModularPipelineBlocks):
    """Set the scheduler's timesteps."""

    expected_components = [SCHEDULER]
    inputs = [STEPS.replace(default=1000)]
    intermediate_outputs = [OutputParam("timesteps", type_hint=torch.Tensor), OutputParam("num_inference_steps", type_hint=int)]

    def __call__(self, components, state):
        bs = self.get_block_state(state)
        bs.timesteps, bs.num_inference_steps = set_scheduler_timesteps(components.scheduler, bs.num_inference_steps)
        self.set_block_state(state, bs)
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
        bs = self.get_block_state(state)
        config = components.unet.config
        size = (config.sample_size,) * 2 if isinstance(config.sample_size, int) else tuple(config.sample_size)
        shape = (bs.batch_size, config.in_channels, *size)
        bs.sample = randn_tensor(shape, generator=bs.generator, device=execution_device(components),
                                 dtype=components.unet.dtype)
        self.set_block_state(state, bs)
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
    """Iterate over the timesteps with a progress bar (interruptible)."""

    loop_inputs = [InputParam("timesteps", type_hint=torch.Tensor, required=True)]
    block_classes = [DDPMLoopDenoiser, DDPMLoopStep]
    block_names = ["denoiser", "step"]

    @torch.no_grad()
    def __call__(self, components, state):
        bs = self.get_block_state(state)
        for i, t in enumerate(components.progress_bar(bs.timesteps)):
            if components.interrupted:
                break
            components, bs = self.loop_step(components, bs, i=i, t=t)
        self.set_block_state(state, bs)
        return components, state


class DDPMDecodeStep(ModularPipelineBlocks):
    """Map the samples from [-1, 1] to images."""

    inputs = [InputParam("sample", type_hint=torch.Tensor, required=True),
              InputParam("output_type", type_hint=str, default="pil", description="pil, np or pt")]
    intermediate_outputs = [OutputParam("images")]

    def __call__(self, components, state):
        from PIL import Image

        bs = self.get_block_state(state)
        if bs.output_type not in OUTPUT_TYPES[:3]:
            raise ValueError(f"output_type must be one of pil, np, pt; got {bs.output_type!r}")
        images = (bs.sample / 2 + 0.5).clamp(0, 1)
        if bs.output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if bs.output_type == "pil":
                images = [Image.fromarray((img * 255).round().astype("uint8").squeeze()) for img in images]
        bs.images = images
        self.set_block_state(state, bs)
        return components, state
