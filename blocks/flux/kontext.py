"""FLUX.1 Kontext [dev]: editing an image by reading it as context. The image's latents (the mode of the VAE's
distribution; nothing is drawn) are packed into tokens placed after the latents' own, at position ids whose first
coordinate is 1; the transformer reads both and predicts the latents' tokens only. As FluxKontextPipeline; with no
image the preset is text-to-image.
"""

from __future__ import annotations

import torch

from ...modular_pipelines import InputParam, ModularPipelineBlocks, OutputParam
from ..checks import check_rows
from ..common import repeat_to
from ..stable_diffusion.inputs import HEIGHT, IMG2IMG_IMAGE, NUM_IMAGES, WIDTH
from ..vae import encode_image
from .before_denoise import SIZE_OUT
from .denoise import FluxDenoiseLoopWrapper, FluxLoopAfterDenoiser, FluxLoopDenoiser
from .inputs import (
    IMAGE_PROCESSOR,
    MODEL_NAME,
    VAE,
    execution_device,
    flux_processor,
    latent_image_ids,
    pack_latents,
    vae_scale_factor,
)

# (width, height): the resolutions FLUX.1 Kontext was trained at, about one megapixel each
KONTEXT_RESOLUTIONS = ((672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184),
                       (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752),
                       (1456, 720), (1504, 688), (1568, 672))
CONTEXT = "context_latents"
CONTEXT_IDS = "context_ids"


def kontext_resolution(height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` of the training resolution whose aspect ratio is nearest ``width / height``."""
    ratio = width / height
    best_width, best_height = min(KONTEXT_RESOLUTIONS, key=lambda size: (abs(ratio - size[0] / size[1]), size))
    return best_height, best_width


class FluxKontextImageStep(ModularPipelineBlocks):
    """Resize the image (to the nearest training resolution with ``auto_resize``, else its own size, in multiples of
    16), encode it and pack it into context tokens with their position ids. ``height`` and ``width`` not given are
    the resized image's, so the edit keeps the image's shape; without an image nothing is added."""

    model_name = MODEL_NAME
    expected_components = [VAE, IMAGE_PROCESSOR]
    inputs = [
        IMG2IMG_IMAGE.replace(required=False, description=(
            "the image to edit (PIL, numpy or tensor; or a list), or a float tensor of its VAE latents; none: "
            "text-to-image")),
        InputParam("auto_resize", type_hint=bool, default=True,
                   description="resize the image to the training resolution nearest its aspect ratio"),
        HEIGHT.replace(description="output height in pixels (default: the resized image's; 1024 without an image)"),
        WIDTH.replace(description="output width in pixels (default: the resized image's; 1024 without an image)"),
        NUM_IMAGES,
        InputParam("batch_size", type_hint=int, required=True),
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [
        OutputParam(CONTEXT, type_hint=torch.Tensor, description="the image's packed latents, read after the latents"),
        OutputParam(CONTEXT_IDS, type_hint=torch.Tensor, description="(tokens, 3) positions (1, row, column)"),
        *SIZE_OUT,
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.context_latents = block_state.context_ids = None
        if block_state.image is not None:
            latents, height, width = self.encode(components, block_state)
            check_rows(self, "image", latents.shape[0], block_state.batch_size, block_state.num_images_per_prompt)
            batch = block_state.batch_size * block_state.num_images_per_prompt
            block_state.context_latents = pack_latents(repeat_to(latents, batch))
            ids = latent_image_ids(latents.shape[2], latents.shape[3], latents.device, latents.dtype)
            ids[:, 0] = 1
            block_state.context_ids = ids
            block_state.height = block_state.height or height
            block_state.width = block_state.width or width
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def encode(components, block_state) -> tuple[torch.Tensor, int, int]:
        """The image's scaled latents (given latents as they are) and its size in pixels after resizing."""
        image, vae = block_state.image, components.vae
        device, dtype = execution_device(components), block_state.dtype or vae.dtype
        factor = vae_scale_factor(components)
        if isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == vae.config.latent_channels:
            return image.to(device=device, dtype=dtype), image.shape[2] * factor, image.shape[3] * factor
        processor = flux_processor(components)
        height, width = processor.get_default_height_width(image[0] if isinstance(image, list) else image)
        if block_state.auto_resize:
            height, width = kontext_resolution(height, width)
        multiple = factor * 2
        height, width = height // multiple * multiple, width // multiple * multiple
        pixels = processor.preprocess(image, height=height, width=width).to(device=device, dtype=dtype)
        return encode_image(vae, pixels, sample_mode="argmax"), height, width


class FluxKontextLoopDenoiser(FluxLoopDenoiser):
    """Predict the velocity of the latents' tokens with the image's context tokens after them (every branch)."""

    inputs = FluxLoopDenoiser.inputs + [InputParam(CONTEXT, type_hint=torch.Tensor),
                                        InputParam(CONTEXT_IDS, type_hint=torch.Tensor)]

    def controls(self, components, block_state, i, t) -> dict:
        if block_state.context_latents is None:
            return {}
        return {CONTEXT: block_state.context_latents, CONTEXT_IDS: block_state.context_ids}


class FluxKontextDenoiseStep(FluxDenoiseLoopWrapper):
    """The FLUX.1 Kontext denoise loop."""

    block_classes = [FluxKontextLoopDenoiser, FluxLoopAfterDenoiser]
