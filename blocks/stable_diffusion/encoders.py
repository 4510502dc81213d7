"""Stable Diffusion 1.x/2.x encoders: the prompt (CLIP) and images (VAE)."""

from __future__ import annotations

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from ...components.image_processor import MaskImageProcessor, VaeImageProcessor
from ...components.models import AutoencoderKL
from ...components.spec import ComponentSpec
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..common import default_size, encode_image, execution_device, image_processor_for

PROMPT = InputParam("prompt", type_hint=str | list[str], description="what to draw (one or a list of prompts)")
NEGATIVE_PROMPT = InputParam("negative_prompt", type_hint=str | list[str], description="what to steer away from")
GENERATOR = InputParam("generator", type_hint=torch.Generator | list[torch.Generator],
                       description="seeds the noise (one, or one per image)")


def as_list(prompt, batch: int | None = None) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if batch is not None and len(prompts) == 1 and batch > 1:
        prompts = prompts * batch
    return prompts


def clip_embeds(tokenizer, text_encoder, prompts: list[str], device, clip_skip: int | None = None,
                max_length: int | None = None) -> torch.Tensor:
    """CLIP hidden states for ``prompts`` (padded to ``max_length``); ``clip_skip`` takes an earlier layer
    and applies the final layer norm, as Stable Diffusion does."""
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length or tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    ids = tokens.input_ids.to(device)
    if clip_skip is None:
        return text_encoder(ids, attention_mask=mask)[0]
    hidden = text_encoder(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
    return text_encoder.text_model.final_layer_norm(hidden)


class StableDiffusionTextEncoderStep(ModularPipelineBlocks):
    """Encode the prompt and the negative prompt with CLIP.

    The negative embeddings are always made (the guider decides per step whether to use them), so a guider
    whose window ends early can never make a later call lose its negative prompt.
    """

    model_name = "stable-diffusion"
    expected_components = [ComponentSpec("text_encoder", CLIPTextModel), ComponentSpec("tokenizer", CLIPTokenizer)]
    inputs = [
        PROMPT,
        NEGATIVE_PROMPT,
        InputParam("prompt_embeds", type_hint=torch.Tensor, description="precomputed prompt embeddings"),
        InputParam("negative_prompt_embeds", type_hint=torch.Tensor, description="precomputed negative embeddings"),
        InputParam("clip_skip", type_hint=int, description="take CLIP's hidden state this many layers from the end"),
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
        if block_state.prompt_embeds is None:
            if block_state.prompt is None:
                raise ValueError("give `prompt` or `prompt_embeds`")
            prompts = as_list(block_state.prompt)
            block_state.prompt_embeds = clip_embeds(components.tokenizer, components.text_encoder, prompts, device,
                                                    block_state.clip_skip)
        embeds = block_state.prompt_embeds
        if block_state.negative_prompt_embeds is None:
            negative = as_list(block_state.negative_prompt or "", embeds.shape[0])
            if len(negative) != embeds.shape[0]:
                raise ValueError(f"negative_prompt has {len(negative)} entries for {embeds.shape[0]} prompts")
            block_state.negative_prompt_embeds = clip_embeds(
                components.tokenizer, components.text_encoder, negative, device, max_length=embeds.shape[1]
            )
        dtype = components.text_encoder.dtype if components.text_encoder is not None else embeds.dtype
        block_state.prompt_embeds = embeds.to(device=device, dtype=dtype)
        block_state.negative_prompt_embeds = block_state.negative_prompt_embeds.to(device=device, dtype=dtype)
        self.set_block_state(state, block_state)
        return components, state


IMAGE = InputParam("image", required=True, description="the input image (PIL, numpy or tensor; or a list)")
HEIGHT = InputParam("height", type_hint=int, description="output height in pixels")
WIDTH = InputParam("width", type_hint=int, description="output width in pixels")


class StableDiffusionVaeEncoderStep(ModularPipelineBlocks):
    """Encode the input image into scaled VAE latents (image-to-image)."""

    model_name = "stable-diffusion"
    encode = staticmethod(encode_image)
    expected_components = [
        ComponentSpec("vae", AutoencoderKL),
        ComponentSpec("image_processor", VaeImageProcessor, config={"vae_scale_factor": 8},
                      default_creation_method="from_config"),
    ]
    inputs = [IMAGE, HEIGHT, WIDTH, GENERATOR, InputParam("dtype", type_hint=torch.dtype)]
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
            block_state.image_latents = self.encode(components.vae, image, block_state.generator)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionInpaintVaeEncoderStep(ModularPipelineBlocks):
    """Preprocess the image and mask for inpainting; encode the image when the denoise loop needs it.

    The image is encoded here only for a 4-channel UNet or ``strength < 1`` (as diffusers does), so a
    seeded generator is consumed in the same order; the masked image is encoded after the noise is drawn.
    """

    model_name = "stable-diffusion"
    encode = staticmethod(encode_image)
    expected_components = [
        ComponentSpec("vae", AutoencoderKL),
        ComponentSpec("image_processor", VaeImageProcessor, config={"vae_scale_factor": 8},
                      default_creation_method="from_config"),
        ComponentSpec("mask_processor", MaskImageProcessor, config={"vae_scale_factor": 8},
                      default_creation_method="from_config"),
    ]
    inputs = [
        IMAGE,
        InputParam("mask_image", required=True, description="white where the image is repainted"),
        HEIGHT, WIDTH, GENERATOR,
        InputParam("strength", type_hint=float, default=1.0, description="how much of the image is repainted"),
        InputParam("padding_mask_crop", type_hint=int,
                   description="repaint only a crop around the mask, padded by this many pixels, then paste it back"),
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
            block_state.image_latents = self.encode(components.vae, init_image.to(device=device, dtype=dtype),
                                                    block_state.generator)
        self.set_block_state(state, block_state)
        return components, state


class StableDiffusionAutoVaeEncoderStep(AutoPipelineBlocks):
    """Encode images: inpaint when `mask_image` is given, image-to-image when `image` is, else skipped."""

    block_classes = [StableDiffusionInpaintVaeEncoderStep, StableDiffusionVaeEncoderStep]
    block_names = ["inpaint", "img2img"]
    block_trigger_inputs = ["mask_image", "image"]


# the design document imports the IP-Adapter step from the encoders module; it needs this module first
from .ip_adapter import StableDiffusionAutoIPAdapterStep, StableDiffusionIPAdapterStep  # noqa: E402,F401
