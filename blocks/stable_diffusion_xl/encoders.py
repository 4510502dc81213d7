"""Stable Diffusion XL encoders: two CLIP text encoders with pooled embeddings, and the VAE."""

from __future__ import annotations

import torch

from ...components.spec import ComponentSpec, ConfigSpec, LazyClass
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, conflict
from ..common import execution_device, retrieve_latents
from ..stable_diffusion.encoders import (
    CLIP_TEXT_MODEL,
    CLIP_TOKENIZER,
    StableDiffusionInpaintVaeEncoderStep,
    StableDiffusionVaeEncoderStep,
    as_list,
    check_prompt_counts,
)
from ..stable_diffusion.inputs import CLIP_SKIP, NEGATIVE_PROMPT, PROMPT, PROMPTS

# prompt-like inputs checked against the prompt count, each with the embeddings that make it unused
TEXT_INPUTS = (("prompt_2", "prompt_embeds"), ("negative_prompt", "negative_prompt_embeds"),
               ("negative_prompt_2", "negative_prompt_embeds"))


def sdxl_embeds(pairs, prompts_per_encoder, device, clip_skip=None, max_length=None):
    """Concatenated penultimate hidden states of every encoder, and the pooled output of the last one."""
    hidden, pooled = [], None
    for (tokenizer, encoder), prompts in zip(pairs, prompts_per_encoder):
        tokens = tokenizer(prompts, padding="max_length", max_length=max_length or tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        out = encoder(tokens.input_ids.to(device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        hidden.append(out.hidden_states[-2 if clip_skip is None else -(clip_skip + 2)])
    return torch.cat(hidden, dim=-1), pooled


def _encoders(components):
    pairs = [(components.tokenizer, components.text_encoder), (components.tokenizer_2, components.text_encoder_2)]
    return [(t, e) for t, e in pairs if t is not None and e is not None]


class StableDiffusionXLTextEncoderStep(ModularPipelineBlocks):
    """Encode prompt and negative prompt with both CLIP encoders (penultimate layers, pooled embeds).

    With ``force_zeros_for_empty_prompt`` and no negative prompt, the negative embeddings are zeros. The
    negative embeddings are always made, so the guider alone decides per step whether to use them.
    """

    model_name = "stable-diffusion-xl"
    expected_components = [
        ComponentSpec("text_encoder", CLIP_TEXT_MODEL),
        ComponentSpec("text_encoder_2", LazyClass("transformers", "CLIPTextModelWithProjection")),
        ComponentSpec("tokenizer", CLIP_TOKENIZER), ComponentSpec("tokenizer_2", CLIP_TOKENIZER),
    ]
    expected_configs = [ConfigSpec("force_zeros_for_empty_prompt", True)]
    inputs = [
        PROMPT, InputParam("prompt_2", type_hint=PROMPTS, description="prompt for the second encoder"),
        NEGATIVE_PROMPT, InputParam("negative_prompt_2", type_hint=PROMPTS),
        InputParam("prompt_embeds", type_hint=FINITE_TENSOR), InputParam("negative_prompt_embeds", type_hint=FINITE_TENSOR),
        InputParam("pooled_prompt_embeds", type_hint=FINITE_TENSOR),
        InputParam("negative_pooled_prompt_embeds", type_hint=FINITE_TENSOR),
        CLIP_SKIP,
    ]
    intermediate_outputs = [
        OutputParam(name, type_hint=torch.Tensor, kwargs_type="denoiser_input_fields") for name in (
            "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        bs = self.get_block_state(state)
        device = execution_device(components)
        self.check_inputs(bs)
        pairs = _encoders(components)
        if bs.prompt_embeds is None:
            if bs.prompt is None:
                raise ValueError("give `prompt` or `prompt_embeds` (with `pooled_prompt_embeds`)")
            prompts = as_list(bs.prompt)
            prompts_2 = as_list(bs.prompt_2, len(prompts)) if bs.prompt_2 is not None else prompts
            per_encoder = [prompts, prompts_2][-len(pairs):]
            bs.prompt_embeds, bs.pooled_prompt_embeds = sdxl_embeds(pairs, per_encoder, device, bs.clip_skip)
        batch = bs.prompt_embeds.shape[0]
        if bs.negative_prompt_embeds is None:
            if bs.negative_prompt is None and components.force_zeros_for_empty_prompt:
                bs.negative_prompt_embeds = torch.zeros_like(bs.prompt_embeds)
                bs.negative_pooled_prompt_embeds = torch.zeros_like(bs.pooled_prompt_embeds)
            else:
                negative = as_list(bs.negative_prompt or "", batch)
                negative_2 = as_list(bs.negative_prompt_2, batch) if bs.negative_prompt_2 is not None else negative
                bs.negative_prompt_embeds, bs.negative_pooled_prompt_embeds = sdxl_embeds(
                    pairs, [negative, negative_2][-len(pairs):], device, max_length=bs.prompt_embeds.shape[1])
        encoder = components.text_encoder_2 or components.text_encoder
        dtype = encoder.dtype if encoder is not None else bs.prompt_embeds.dtype
        for name in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"):
            value = getattr(bs, name)
            setattr(bs, name, None if value is None else value.to(device=device, dtype=dtype))
        self.set_block_state(state, bs)
        return components, state

    def check_inputs(self, bs) -> None:
        """Before encoding: counts of the prompt-like inputs, and pooled embeddings with given embeddings."""
        check_prompt_counts(self, bs, TEXT_INPUTS)
        for embeds, pooled in (("prompt_embeds", "pooled_prompt_embeds"),
                               ("negative_prompt_embeds", "negative_pooled_prompt_embeds")):
            if getattr(bs, embeds) is not None and getattr(bs, pooled) is None:
                raise conflict(self, [embeds, pooled], f"{embeds} was given without {pooled}; SDXL's UNet needs "
                                                       "both (they come from the same text encoders)")


def encode_image_upcast(vae, image: torch.Tensor, generator=None) -> torch.Tensor:
    """Like :func:`encode_image`, encoding in float32 when the VAE asks for it (``force_upcast``)."""
    dtype = image.dtype
    upcast = bool(getattr(vae.config, "force_upcast", False)) and vae.dtype != torch.float32
    if upcast:
        vae.to(torch.float32)
    image = image.float() if vae.config.force_upcast else image
    try:
        if isinstance(generator, list):
            latents = torch.cat([retrieve_latents(vae.encode(image[i:i + 1]), generator[i]) for i in range(image.shape[0])])
        else:
            latents = retrieve_latents(vae.encode(image), generator)
    finally:
        if upcast:
            vae.to(dtype)
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    latents = latents.to(dtype)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        return (latents - mean) * config.scaling_factor / std
    return config.scaling_factor * latents


class StableDiffusionXLVaeEncoderStep(StableDiffusionVaeEncoderStep):
    """Encode the input image into scaled VAE latents (float32 when the VAE needs upcasting)."""

    model_name = "stable-diffusion-xl"
    encode = staticmethod(encode_image_upcast)


class StableDiffusionXLInpaintVaeEncoderStep(StableDiffusionInpaintVaeEncoderStep):
    """Preprocess image and mask for inpainting; encode the image (float32 when the VAE needs it).

    SDXL's default ``strength`` is 0.9999, so the image is normally encoded.
    """

    model_name = "stable-diffusion-xl"
    encode = staticmethod(encode_image_upcast)
    inputs = [p.replace(default=0.9999) if p.name == "strength" else p for p in StableDiffusionInpaintVaeEncoderStep.inputs]


class StableDiffusionXLAutoVaeEncoderStep(AutoPipelineBlocks):
    """Encode images: inpaint when `mask_image` is given, image-to-image when `image` is, else skipped."""

    block_classes = [StableDiffusionXLInpaintVaeEncoderStep, StableDiffusionXLVaeEncoderStep]
    block_names = ["inpaint", "img2img"]
    block_trigger_inputs = ["mask_image", "image"]


# the design document imports the IP-Adapter step from the encoders module
from .ip_adapter import StableDiffusionXLAutoIPAdapterStep, StableDiffusionXLIPAdapterStep  # noqa: E402,F401
