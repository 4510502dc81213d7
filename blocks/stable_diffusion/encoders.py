"""Stable Diffusion 1.x/2.x encoders: the prompt (CLIP) and images (VAE)."""

from __future__ import annotations

import torch

from ...components.image_processor import MaskImageProcessor, VaeImageProcessor
from ...components.models import AutoencoderKL
from ...components.spec import ComponentSpec, LazyClass
from ...components.textual_inversion import expand_prompts
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, check_multiple, conflict, missing_one_of
from ..common import default_size, execution_device, vae_scale_factor
from ..processors import image_processor_for
from ..vae import encode_image
from .inputs import (
    CLIP_SKIP,
    GENERATOR,
    HEIGHT,
    IMAGE,
    IMG2IMG_IMAGE,
    MASK_IMAGE,
    NEGATIVE_PROMPT,
    PADDING_MASK_CROP,
    PROMPT,
    STRENGTH,
    WIDTH,
)


# transformers classes, imported when a pipeline first needs them (not when a preset is imported)
CLIP_TEXT_MODEL = LazyClass("transformers", "CLIPTextModel")
CLIP_TOKENIZER = LazyClass("transformers", "CLIPTokenizer")
# the VAE and its image processor, as the encode and decode steps declare them
VAE = ComponentSpec("vae", AutoencoderKL)
IMAGE_PROCESSOR = ComponentSpec("image_processor", VaeImageProcessor, config={"vae_scale_factor": 8},
                                default_creation_method="from_config")


def as_list(prompt, batch: int | None = None) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if batch is not None and len(prompts) == 1 and batch > 1:
        prompts = prompts * batch
    return prompts


def clip_embeds(tokenizer, text_encoder, prompts: list[str], device, clip_skip: int | None = None,
                max_length: int | None = None) -> torch.Tensor:
    """CLIP hidden states for ``prompts`` (padded to ``max_length``); ``clip_skip`` takes an earlier layer
    and applies the final layer norm, as Stable Diffusion does."""
    prompts = expand_prompts(tokenizer, prompts)  # multi-vector textual-inversion tokens
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length or tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    ids = tokens.input_ids.to(device)
    if clip_skip is None:
        return text_encoder(ids, attention_mask=mask)[0]
    hidden = text_encoder(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)  # transformers 5: no text_model


def prompt_count(block_state) -> int | None:
    """How many prompts: from ``prompt``, else the rows of ``prompt_embeds`` (None when neither is given)."""
    if block_state.prompt_embeds is not None:
        return block_state.prompt_embeds.shape[0]
    return None if block_state.prompt is None else len(as_list(block_state.prompt))


def check_prompt_counts(block, block_state, pairs=(("negative_prompt", "negative_prompt_embeds"),)) -> None:
    """Before encoding: each prompt-like input is one text (a string or one-item list) or one per prompt, and
    precomputed negative embeddings have the shape of the prompt embeddings (as diffusers' check_inputs)."""
    count = prompt_count(block_state)
    source = "prompt_embeds" if block_state.prompt_embeds is not None else "prompt"
    for name, embeds_name in pairs:
        value, embeds = getattr(block_state, name, None), getattr(block_state, embeds_name, None)
        if count is not None and value is not None and embeds is None and len(as_list(value)) not in (1, count):
            raise conflict(block, [source, name], f"{count} prompt(s) but {len(as_list(value))} {name} entries; "
                                                  f"give one {name} or one per prompt")
    positive, negative = block_state.prompt_embeds, block_state.negative_prompt_embeds
    if positive is not None and negative is not None and positive.shape != negative.shape:
        raise conflict(block, ["prompt_embeds", "negative_prompt_embeds"],
                       f"shapes {tuple(positive.shape)} and {tuple(negative.shape)} differ; they must be equal")


class StableDiffusionTextEncoderStep(ModularPipelineBlocks):
    """Encode the prompt and the negative prompt with CLIP.

    The negative embeddings are always made (the guider decides per step whether to use them), so a guider
    whose window ends early can never make a later call lose its negative prompt.
    """

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("text_encoder", CLIP_TEXT_MODEL), ComponentSpec("tokenizer", CLIP_TOKENIZER)]
    inputs = [
        PROMPT,
        NEGATIVE_PROMPT,
        InputParam("prompt_embeds", type_hint=FINITE_TENSOR, description="precomputed prompt embeddings"),
        InputParam("negative_prompt_embeds", type_hint=FINITE_TENSOR, description="precomputed negative embeddings"),
        CLIP_SKIP,
    ]
    intermediate_outputs = [
        OutputParam("prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields",
                    description="text embeddings, one row per prompt"),
        OutputParam("negative_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields",
                    description="negative text embeddings, one row per prompt"),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        device = execution_device(components)
        check_prompt_counts(self, block_state)
        if block_state.prompt_embeds is None:
            if block_state.prompt is None:
                raise missing_one_of(self, ["prompt", "prompt_embeds"])
            prompts = as_list(block_state.prompt)
            block_state.prompt_embeds = clip_embeds(components.tokenizer, components.text_encoder, prompts, device,
                                                    block_state.clip_skip)
        embeds = block_state.prompt_embeds
        if block_state.negative_prompt_embeds is None:
            negative = as_list(block_state.negative_prompt or "", embeds.shape[0])
            block_state.negative_prompt_embeds = clip_embeds(
                components.tokenizer, components.text_encoder, negative, device, max_length=embeds.shape[1]
            )
        dtype = components.text_encoder.dtype if components.text_encoder is not None else embeds.dtype
        block_state.prompt_embeds = embeds.to(device=device, dtype=dtype)
        block_state.negative_prompt_embeds = block_state.negative_prompt_embeds.to(device=device, dtype=dtype)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionVaeEncoderStep(ModularPipelineBlocks):
    """Encode the input image into scaled VAE latents (image-to-image)."""

    model_name = "stable-diffusion"
    upcast_vae = False  # encode in float32 when the VAE asks for it (see blocks.vae)
    expected_components = [VAE, IMAGE_PROCESSOR]
    inputs = [IMG2IMG_IMAGE, HEIGHT, WIDTH, GENERATOR, InputParam("dtype", type_hint=torch.dtype)]
    intermediate_outputs = [OutputParam("image_latents", type_hint=torch.Tensor, description="scaled VAE latents")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        device = execution_device(components)
        image = image_processor_for(components).preprocess(block_state.image, height=block_state.height,
                                                            width=block_state.width)
        dtype = block_state.dtype or components.vae.dtype
        image = image.to(device=device, dtype=dtype)
        if image.shape[1] == components.vae.config.latent_channels:  # already latents (e.g. from a base model)
            block_state.image_latents = image
        else:
            block_state.image_latents = encode_image(components.vae, image, block_state.generator,
                                                     upcast=self.upcast_vae)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintVaeEncoderStep(ModularPipelineBlocks):
    """Preprocess the image and mask for inpainting; encode the image when the denoise loop needs it.

    The image is encoded here only for a 4-channel UNet or ``strength < 1`` (as diffusers does), so a
    seeded generator is consumed in the same order; the masked image is encoded after the noise is drawn.
    """

    model_name = "stable-diffusion"
    upcast_vae = False  # encode in float32 when the VAE asks for it (see blocks.vae)
    expected_components = [
        VAE,
        IMAGE_PROCESSOR,
        ComponentSpec("mask_processor", MaskImageProcessor, config={"vae_scale_factor": 8},
                      default_creation_method="from_config"),
    ]
    inputs = [
        IMAGE,
        MASK_IMAGE,
        HEIGHT, WIDTH, GENERATOR,
        STRENGTH.replace(default=1.0, description="how much of the image is repainted"),
        PADDING_MASK_CROP,
        InputParam("dtype", type_hint=torch.dtype),
    ]
    intermediate_outputs = [
        OutputParam("crops_coords", type_hint=tuple, description="the crop repainted (None: the whole image)"),
        OutputParam("image_latents", type_hint=torch.Tensor, description="scaled VAE latents (None when unused)"),
        OutputParam("init_image", type_hint=torch.Tensor, description="the preprocessed image, [-1, 1]"),
        OutputParam("mask_condition", type_hint=torch.Tensor, description="the preprocessed mask, {0, 1}"),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        images, masks = image_processor_for(components), image_processor_for(components, "mask_processor")
        height, width = default_size(components, block_state.height, block_state.width)
        check_multiple(self, height, width, vae_scale_factor(components))
        crop, resize_mode = None, "default"
        if block_state.padding_mask_crop is not None:  # repaint a crop around the mask, pasted back at decode
            crop = masks.get_crop_region(block_state.mask_image, width, height, pad=block_state.padding_mask_crop)
            resize_mode = "fill"
        init_image = images.preprocess(block_state.image, height=height, width=width, crops_coords=crop,
                                       resize_mode=resize_mode).to(dtype=torch.float32)
        height, width = init_image.shape[-2:]
        block_state.mask_condition = masks.preprocess(block_state.mask_image, height=height, width=width,
                                                      resize_mode=resize_mode, crops_coords=crop)
        block_state.crops_coords = crop
        block_state.init_image = init_image
        block_state.image_latents = None
        if components.unet.config.in_channels == 4 or block_state.strength < 1.0:
            dtype = block_state.dtype or components.vae.dtype
            device = execution_device(components)
            block_state.image_latents = encode_image(components.vae, init_image.to(device=device, dtype=dtype),
                                                     block_state.generator, upcast=self.upcast_vae)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionAutoVaeEncoderStep(AutoPipelineBlocks):
    """Encode images: inpaint when `mask_image` is given, image-to-image when `image` is, else skipped."""

    choices = {
        "inpaint": (StableDiffusionInpaintVaeEncoderStep, "mask_image"),
        "img2img": (StableDiffusionVaeEncoderStep, "image"),
    }


# the design document imports the IP-Adapter step from the encoders module; it needs this module first
from .ip_adapter import StableDiffusionAutoIPAdapterStep, StableDiffusionIPAdapterStep  # noqa: E402,F401
