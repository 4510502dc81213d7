"""Differential Diffusion (Levin & Fried, 2023) built the way the design document's quickstart does it.

Copy ``IMAGE2IMAGE_BLOCKS``, take ``set_timesteps`` from ``TEXT2IMAGE_BLOCKS`` (no ``strength``), replace
``prepare_latents`` and the denoise loop's ``before_denoiser``. The change map says how much each region
may change: 0 keeps the input, 1 repaints it as fully as image-to-image at strength 1.

Run it: ``python examples/differential_diffusion.py [MODEL_REPO]`` (any SDXL-format repo).
"""

from __future__ import annotations

import torch

from diffblocks import (
    AutoPipelineBlocks,
    ComponentSpec,
    InputParam,
    ModularPipelineBlocks,
    OutputParam,
    SequentialPipelineBlocks,
)
from diffblocks.blocks.common import repeat_to
from diffblocks.blocks.stable_diffusion_xl import (
    StableDiffusionXLAutoControlNetInputStep,
    StableDiffusionXLAutoIPAdapterStep,
    StableDiffusionXLControlNetLoopDenoiser,
    StableDiffusionXLDenoiseLoopAfterDenoiser,
    StableDiffusionXLDenoiseLoopWrapper,
    StableDiffusionXLLoopAfterDenoiser,
    StableDiffusionXLLoopDenoiser,
)
from diffblocks.components.image_processor import MaskImageProcessor
from diffblocks.components.noise import randn_tensor
from diffblocks.components.schedulers import EulerDiscreteScheduler
from diffblocks.presets.stable_diffusion_xl import IMAGE2IMAGE_BLOCKS, TEXT2IMAGE_BLOCKS


class SDXLDiffDiffPrepareLatentsStep(ModularPipelineBlocks):
    """Noise the image latents to every timestep and turn the change map into one keep-mask per step."""

    expected_components = [
        ComponentSpec("scheduler", EulerDiscreteScheduler),
        ComponentSpec("mask_processor", MaskImageProcessor,
                      config={"do_normalize": False, "do_binarize": False, "do_convert_grayscale": True},
                      default_creation_method="from_config"),
    ]
    inputs = [
        InputParam("generator"),
        InputParam("diffdiff_map", required=True, description="change map: 0 keeps a region, 1 repaints it"),
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
        InputParam("num_inference_steps", type_hint=int, required=True),
        InputParam("image_latents", type_hint=torch.Tensor, required=True),
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("num_images_per_prompt", type_hint=int, default=1),
        InputParam("dtype", type_hint=torch.dtype),
        InputParam("denoising_start", type_hint=float),
    ]
    intermediate_outputs = [
        OutputParam("latents", type_hint=torch.Tensor),
        OutputParam("original_latents", type_hint=torch.Tensor, description="the image noised to each timestep"),
        OutputParam("diffdiff_masks", type_hint=torch.Tensor, description="per step: 1 where the image is kept"),
    ]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        batch = block_state.batch_size * block_state.num_images_per_prompt
        image_latents = repeat_to(block_state.image_latents.to(dtype=block_state.dtype), batch)
        noise = randn_tensor(image_latents.shape, generator=block_state.generator, device=image_latents.device, dtype=block_state.dtype)
        scheduler = components.scheduler
        block_state.original_latents = torch.stack([scheduler.add_noise(image_latents, noise, t.reshape(1)) for t in block_state.timesteps])
        height, width = image_latents.shape[-2:]
        change = components.mask_processor.preprocess(block_state.diffdiff_map, height=height,
                                                      width=width).to(image_latents)
        thresholds = torch.arange(block_state.num_inference_steps, dtype=change.dtype) / block_state.num_inference_steps
        keep = (1 - change) > (thresholds + (block_state.denoising_start or 0)).view(-1, 1, 1, 1, 1)
        block_state.diffdiff_masks = keep.to(image_latents.dtype)
        block_state.latents = block_state.original_latents[0]
        self.set_block_state(state, block_state)
        return components, state


class SDXLDiffDiffLoopBeforeDenoiser(ModularPipelineBlocks):
    """Put the kept regions back to the noised image, then scale the latents for the UNet."""

    expected_components = [ComponentSpec("scheduler", EulerDiscreteScheduler)]
    inputs = [
        InputParam("latents", required=True, type_hint=torch.Tensor),
        InputParam("denoising_start"),
        InputParam("original_latents", type_hint=torch.Tensor),
        InputParam("diffdiff_masks", type_hint=torch.Tensor),
    ]
    intermediate_outputs = [OutputParam("scaled_latents", type_hint=torch.Tensor)]

    def __call__(self, components, block_state, i, t):
        if i == 0 and block_state.denoising_start is None:
            block_state.latents = block_state.original_latents[0]
        else:
            mask = block_state.diffdiff_masks[i]
            block_state.latents = block_state.original_latents[i] * mask + block_state.latents * (1 - mask)
        block_state.scaled_latents = components.scheduler.scale_model_input(block_state.latents, t)
        return components, block_state


class SDXLDiffDiffDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
    block_classes = [SDXLDiffDiffLoopBeforeDenoiser, StableDiffusionXLLoopDenoiser, StableDiffusionXLLoopAfterDenoiser]
    block_names = ["before_denoiser", "denoiser", "after_denoiser"]


DIFFDIFF_BLOCKS = IMAGE2IMAGE_BLOCKS.copy()
DIFFDIFF_BLOCKS["set_timesteps"] = TEXT2IMAGE_BLOCKS["set_timesteps"]
DIFFDIFF_BLOCKS["prepare_latents"] = SDXLDiffDiffPrepareLatentsStep
DIFFDIFF_BLOCKS["denoise"] = SDXLDiffDiffDenoiseStep


# --- adding workflows: ControlNet, and an Auto block that picks it when `control_image` is given --------


class SDXLDiffDiffControlNetDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
    block_classes = [SDXLDiffDiffLoopBeforeDenoiser, StableDiffusionXLControlNetLoopDenoiser,
                     StableDiffusionXLDenoiseLoopAfterDenoiser]
    block_names = ["before_denoiser", "denoiser", "after_denoiser"]


class SDXLDiffDiffAutoDenoiseStep(AutoPipelineBlocks):
    """Differential Diffusion denoise: with ControlNet when `control_image` is given."""

    choices = {"controlnet_denoise": (SDXLDiffDiffControlNetDenoiseStep, "control_image"),
               "denoise": (SDXLDiffDiffDenoiseStep, None)}


DIFFDIFF_AUTO_BLOCKS = IMAGE2IMAGE_BLOCKS.copy()
DIFFDIFF_AUTO_BLOCKS["prepare_latents"] = SDXLDiffDiffPrepareLatentsStep
DIFFDIFF_AUTO_BLOCKS["set_timesteps"] = TEXT2IMAGE_BLOCKS["set_timesteps"]
DIFFDIFF_AUTO_BLOCKS["denoise"] = SDXLDiffDiffAutoDenoiseStep
DIFFDIFF_AUTO_BLOCKS.insert("ip_adapter", StableDiffusionXLAutoIPAdapterStep, 0)
DIFFDIFF_AUTO_BLOCKS.insert("controlnet_input", StableDiffusionXLAutoControlNetInputStep,
                            list(DIFFDIFF_AUTO_BLOCKS).index("denoise"))


def main(repo: str) -> None:
    from PIL import Image

    blocks = SequentialPipelineBlocks.from_blocks_dict(DIFFDIFF_BLOCKS)
    print(blocks)
    pipe = blocks.init_pipeline(repo)
    pipe.load_components()
    image = Image.new("RGB", (64, 64), "orange")
    ramp = Image.linear_gradient("L").resize((64, 64))  # change grows from top to bottom
    out = pipe(prompt="a green pear", image=image, diffdiff_map=ramp, num_inference_steps=10,
               generator=torch.Generator().manual_seed(0), output="images")[0]
    out.save("diffdiff.png")
    print("wrote diffdiff.png")


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "stabilityai/stable-diffusion-xl-base-1.0")
