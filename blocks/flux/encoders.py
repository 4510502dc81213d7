"""FLUX.1 encoders: the pooled CLIP embedding and the T5 token states of the prompt and, when one is given,
the negative prompt (true CFG); the VAE latents of the input image (image-to-image, inpainting)."""

from __future__ import annotations

import torch

from ...components.image_processor import MaskImageProcessor
from ...components.spec import ComponentSpec, LazyClass
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, missing_one_of
from ..stable_diffusion.encoders import CLIP_TEXT_MODEL, CLIP_TOKENIZER, as_list, check_prompt_counts
from ..stable_diffusion.inputs import (
    GENERATOR,
    HEIGHT,
    IMAGE,
    IMG2IMG_IMAGE,
    MASK_IMAGE,
    NEGATIVE_PROMPT,
    PADDING_MASK_CROP,
    PROMPT,
    WIDTH,
)
from ..vae import encode_image
from .inputs import (
    IMAGE_PROCESSOR,
    MAX_SEQUENCE_LENGTH,
    MODEL_NAME,
    NEGATIVE_PROMPT_2,
    PROMPT_2,
    VAE,
    execution_device,
    flux_processor,
    image_size,
)

# prompt-like inputs checked against the prompt count, each with the embeddings that make it unused
TEXT_INPUTS = (("prompt_2", "prompt_embeds"), ("negative_prompt", "negative_prompt_embeds"),
               ("negative_prompt_2", "negative_prompt_embeds"))
T5_ENCODER = LazyClass("transformers", "T5EncoderModel")
T5_TOKENIZER = LazyClass("transformers", "T5TokenizerFast", "T5Tokenizer")

EMBEDS = OutputParam("prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields",
                     description="T5 states, one row per prompt")
POOLED = OutputParam("pooled_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields",
                     description="pooled CLIP embeddings, one row per prompt")


def clip_pooled(tokenizer, text_encoder, prompts: list[str], device) -> torch.Tensor:
    """CLIP's pooled output for ``prompts`` padded to the tokenizer's length (77 for CLIP)."""
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    pooled = text_encoder(tokens.input_ids.to(device), output_hidden_states=False).pooler_output
    return pooled.to(dtype=text_encoder.dtype)


def t5_states(tokenizer, text_encoder, prompts: list[str], max_length: int, device) -> torch.Tensor:
    """T5's last hidden states for ``prompts`` padded (or cut) to ``max_length`` tokens."""
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return text_encoder(tokens.input_ids.to(device), output_hidden_states=False)[0].to(dtype=text_encoder.dtype)


class FluxTextEncoderStep(ModularPipelineBlocks):
    """Encode the prompt with CLIP (pooled) and T5 (per token); the negative prompt too when one is given.

    Without a negative prompt (or negative embeddings) none are made, and the denoise loop then skips a CFG
    guider and runs the conditional prediction only, as FluxPipeline does: true CFG needs a negative prompt.
    """

    model_name = MODEL_NAME
    expected_components = [
        ComponentSpec("text_encoder", CLIP_TEXT_MODEL), ComponentSpec("tokenizer", CLIP_TOKENIZER),
        ComponentSpec("text_encoder_2", T5_ENCODER), ComponentSpec("tokenizer_2", T5_TOKENIZER),
    ]
    inputs = [
        PROMPT, PROMPT_2, NEGATIVE_PROMPT, NEGATIVE_PROMPT_2, MAX_SEQUENCE_LENGTH,
        InputParam("prompt_embeds", type_hint=FINITE_TENSOR, description="precomputed T5 states"),
        InputParam("pooled_prompt_embeds", type_hint=FINITE_TENSOR, description="precomputed pooled CLIP embeddings"),
        InputParam("negative_prompt_embeds", type_hint=FINITE_TENSOR, description="precomputed negative T5 states"),
        InputParam("negative_pooled_prompt_embeds", type_hint=FINITE_TENSOR,
                   description="precomputed negative pooled CLIP embeddings"),
    ]
    intermediate_outputs = [
        EMBEDS, POOLED,
        OutputParam("negative_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields",
                    description="negative T5 states (None without a negative prompt)"),
        OutputParam("negative_pooled_prompt_embeds", type_hint=torch.Tensor, kwargs_type="denoiser_input_fields",
                    description="negative pooled CLIP embeddings (None without a negative prompt)"),
        OutputParam("text_ids", type_hint=torch.Tensor, description="(text tokens, 3) zero positions of the T5 tokens"),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        device = execution_device(components)
        check_prompt_counts(self, block_state, TEXT_INPUTS)
        if block_state.prompt_embeds is None or block_state.pooled_prompt_embeds is None:
            if block_state.prompt is None:
                given = block_state.prompt_embeds is not None
                raise missing_one_of(self, ["prompt", "pooled_prompt_embeds" if given else "prompt_embeds"])
            block_state.prompt_embeds, block_state.pooled_prompt_embeds = self.encode(
                components, block_state.prompt, block_state.prompt_2, block_state.max_sequence_length, device)
        batch = block_state.prompt_embeds.shape[0]
        negative = block_state.negative_prompt_embeds, block_state.negative_pooled_prompt_embeds
        if (negative[0] is None or negative[1] is None) and block_state.negative_prompt is not None:
            negative = self.encode(components, as_list(block_state.negative_prompt, batch),
                                   block_state.negative_prompt_2 and as_list(block_state.negative_prompt_2, batch),
                                   block_state.prompt_embeds.shape[1], device)
        block_state.negative_prompt_embeds, block_state.negative_pooled_prompt_embeds = (
            None if n is None else n.to(device) for n in negative)
        block_state.prompt_embeds = block_state.prompt_embeds.to(device)
        block_state.pooled_prompt_embeds = block_state.pooled_prompt_embeds.to(device)
        dtype = components.text_encoder.dtype if components.text_encoder is not None else block_state.prompt_embeds.dtype
        block_state.text_ids = torch.zeros(block_state.prompt_embeds.shape[1], 3, device=device, dtype=dtype)
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def encode(components, prompt, prompt_2, max_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T5 states, pooled CLIP embeddings)`` of ``prompt`` (T5 reads ``prompt_2`` when given; one
        ``prompt_2`` serves every prompt)."""
        prompts = as_list(prompt)
        pooled = clip_pooled(components.tokenizer, components.text_encoder, prompts, device)
        embeds = t5_states(components.tokenizer_2, components.text_encoder_2, as_list(prompt_2 or prompt, len(prompts)),
                           max_length, device)
        return embeds, pooled


class FluxVaeEncoderStep(ModularPipelineBlocks):
    """Resize the input image to ``height`` x ``width`` (default 1024) and encode it into scaled VAE latents
    ``(z - shift_factor) * scaling_factor`` (image-to-image); VAE latents given as the image pass through."""

    model_name = MODEL_NAME
    expected_components = [VAE, IMAGE_PROCESSOR]
    inputs = [IMG2IMG_IMAGE, HEIGHT, WIDTH, GENERATOR, InputParam("dtype", type_hint=torch.dtype)]
    intermediate_outputs = [OutputParam("image_latents", type_hint=torch.Tensor, description="scaled VAE latents")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        height, width = image_size(block_state)
        image = flux_processor(components).preprocess(block_state.image, height=height, width=width)
        block_state.image_latents = encode_or_pass(components, image, block_state.generator, block_state.dtype)
        self.set_block_state(state, block_state)
        return components, state


def encode_or_pass(components, image: torch.Tensor, generator, dtype) -> torch.Tensor:
    """Scaled latents of a preprocessed image (in the model dtype, on the execution device); an image that
    already has the VAE's latent channels is taken as latents."""
    vae = components.vae
    image = image.to(device=execution_device(components), dtype=dtype or vae.dtype)
    if image.shape[1] == vae.config.latent_channels:
        return image
    return encode_image(vae, image, generator)


class FluxInpaintVaeEncoderStep(ModularPipelineBlocks):
    """Preprocess the image and the mask (optionally a crop around the mask, ``padding_mask_crop``) and
    encode the image, as FluxInpaintPipeline does before drawing the noise."""

    model_name = MODEL_NAME
    expected_components = [
        VAE, IMAGE_PROCESSOR,
        ComponentSpec("mask_processor", MaskImageProcessor, config={"vae_scale_factor": 16},
                      default_creation_method="from_config"),
    ]
    inputs = [IMAGE, MASK_IMAGE, HEIGHT, WIDTH, GENERATOR, PADDING_MASK_CROP, InputParam("dtype", type_hint=torch.dtype)]
    intermediate_outputs = [
        OutputParam("crops_coords", type_hint=tuple, description="the crop repainted (None: the whole image)"),
        OutputParam("image_latents", type_hint=torch.Tensor, description="scaled VAE latents of the image"),
        OutputParam("mask_condition", type_hint=torch.Tensor, description="the preprocessed mask, {0, 1}"),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        images, masks = flux_processor(components), flux_processor(components, "mask_processor")
        height, width = image_size(block_state)
        crop, resize_mode = None, "default"
        if block_state.padding_mask_crop is not None:  # repaint a crop around the mask, pasted back at decode
            crop = masks.get_crop_region(block_state.mask_image, width, height, pad=block_state.padding_mask_crop)
            resize_mode = "fill"
        init_image = images.preprocess(block_state.image, height=height, width=width, crops_coords=crop,
                                       resize_mode=resize_mode).to(dtype=torch.float32)
        block_state.mask_condition = masks.preprocess(block_state.mask_image, height=height, width=width,
                                                      resize_mode=resize_mode, crops_coords=crop)
        block_state.crops_coords = crop
        block_state.image_latents = encode_or_pass(components, init_image, block_state.generator, block_state.dtype)
        self.set_block_state(state, block_state)
        return components, state


class FluxAutoVaeEncoderStep(AutoPipelineBlocks):
    """Encode images: inpaint when `mask_image` is given, image-to-image when `image` is, else skipped."""

    choices = {
        "inpaint": (FluxInpaintVaeEncoderStep, "mask_image"),
        "img2img": (FluxVaeEncoderStep, "image"),
    }
