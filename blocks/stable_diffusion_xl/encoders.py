"""Stable Diffusion XL encoders: two CLIP text encoders with pooled embeddings, and the VAE."""

from __future__ import annotations

import torch

from ...components.spec import ComponentSpec, ConfigSpec, LazyClass
from ...components.textual_inversion import expand_prompts
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ..checks import FINITE_TENSOR, conflict, missing_one_of
from ..common import execution_device
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
        prompts = expand_prompts(tokenizer, prompts)  # multi-vector textual-inversion tokens
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
        block_state = self.get_block_state(state)
        device = execution_device(components)
        self.check_inputs(block_state)
        pairs = _encoders(components)
        if block_state.prompt_embeds is None:
            if block_state.prompt is None:
                raise missing_one_of(self, ["prompt", "prompt_embeds"])
            prompts = as_list(block_state.prompt)
            prompts_2 = as_list(block_state.prompt_2, len(prompts)) if block_state.prompt_2 is not None else prompts
            block_state.prompt_embeds, block_state.pooled_prompt_embeds = sdxl_embeds(
                pairs, [prompts, prompts_2][-len(pairs):], device, block_state.clip_skip)
        if block_state.negative_prompt_embeds is None:
            self.encode_negative(components, block_state, pairs, device)
        encoder = components.text_encoder_2 or components.text_encoder
        dtype = encoder.dtype if encoder is not None else block_state.prompt_embeds.dtype
        for name in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"):
            value = getattr(block_state, name)
            setattr(block_state, name, None if value is None else value.to(device=device, dtype=dtype))
        self.set_block_state(state, block_state)
        return components, state

    @staticmethod
    def encode_negative(components, block_state, pairs, device) -> None:
        """Negative embeddings: zeros for no negative prompt (``force_zeros_for_empty_prompt``), else encoded."""
        if block_state.negative_prompt is None and components.force_zeros_for_empty_prompt:
            block_state.negative_prompt_embeds = torch.zeros_like(block_state.prompt_embeds)
            block_state.negative_pooled_prompt_embeds = torch.zeros_like(block_state.pooled_prompt_embeds)
            return
        batch = block_state.prompt_embeds.shape[0]
        negative = as_list(block_state.negative_prompt or "", batch)
        negative_2 = negative if block_state.negative_prompt_2 is None else as_list(block_state.negative_prompt_2, batch)
        block_state.negative_prompt_embeds, block_state.negative_pooled_prompt_embeds = sdxl_embeds(
            pairs, [negative, negative_2][-len(pairs):], device, max_length=block_state.prompt_embeds.shape[1])

    def check_inputs(self, block_state) -> None:
        """Before encoding: counts of the prompt-like inputs, and pooled embeddings with given embeddings."""
        check_prompt_counts(self, block_state, TEXT_INPUTS)
        for embeds, pooled in (("prompt_embeds", "pooled_prompt_embeds"),
                               ("negative_prompt_embeds", "negative_pooled_prompt_embeds")):
            if getattr(block_state, embeds) is not None and getattr(block_state, pooled) is None:
                raise conflict(self, [embeds, pooled], f"{embeds} was given without {pooled}; SDXL's UNet needs "
                                                       "both (they come from the same text encoders)")


class StableDiffusionXLVaeEncoderStep(StableDiffusionVaeEncoderStep):
    """Encode the input image into scaled VAE latents (float32 when the VAE needs upcasting)."""

    model_name = "stable-diffusion-xl"
    upcast_vae = True


class StableDiffusionXLInpaintVaeEncoderStep(StableDiffusionInpaintVaeEncoderStep):
    """Preprocess image and mask for inpainting; encode the image (float32 when the VAE needs it).

    SDXL's default ``strength`` is 0.9999, so the image is normally encoded.
    """

    model_name = "stable-diffusion-xl"
    upcast_vae = True
    inputs = [p.replace(default=0.9999) if p.name == "strength" else p for p in StableDiffusionInpaintVaeEncoderStep.inputs]


class StableDiffusionXLAutoVaeEncoderStep(AutoPipelineBlocks):
    """Encode images: inpaint when `mask_image` is given, image-to-image when `image` is, else skipped."""

    choices = {
        "inpaint": (StableDiffusionXLInpaintVaeEncoderStep, "mask_image"),
        "img2img": (StableDiffusionXLVaeEncoderStep, "image"),
    }


# the design document imports the IP-Adapter step from the encoders module
from .ip_adapter import StableDiffusionXLAutoIPAdapterStep, StableDiffusionXLIPAdapterStep  # noqa: E402,F401
