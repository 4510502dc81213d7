"""IP-Adapter image prompts for Stable Diffusion 1.x/2.x: encode the image(s) for the loaded adapters.

The adapters themselves are loaded into the UNet with ``pipe.loader.load_ip_adapter(...)``; this step turns
``ip_adapter_image`` (or precomputed ``ip_adapter_embeds``) into the embeddings the denoiser hands the UNet
as ``added_cond_kwargs["image_embeds"]``: one tensor per adapter, ``(batch * num_images_per_prompt, images,
features...)``, with features the CLIP image embedding for base adapters and the encoder's penultimate hidden
states for "plus" (resampler) adapters. The negative embeddings are zeros for base adapters and the encoding
of a black image for plus adapters, as diffusers does.

The step counts the batch from ``prompt`` (or ``prompt_embeds``) itself, so it belongs before the "input"
step, which repeats ``prompt_embeds`` per image: first, as in
``blocks.sub_blocks.insert("ip_adapter", StableDiffusionAutoIPAdapterStep(), 0)``, or right after the text
encoder. Precomputed ``ip_adapter_embeds`` win over ``ip_adapter_image``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from ...components.ip_adapter import ip_image_projections
from ...components.models import UNet2DConditionModel
from ...components.spec import ComponentSpec, LazyClass
from ...modular_pipelines import AutoPipelineBlocks, InputParam, ModularPipelineBlocks, OutputParam
from ...components.errors import AdapterError
from ..common import execution_device
from ..checks import FINITE_LIST, FINITE_TENSOR, IMAGE_TYPE
from .encoders import as_list  # (encoders.py may re-export this module's steps at its end)
from .inputs import NUM_IMAGES, PROMPT

IMAGE_ENCODER = ComponentSpec("image_encoder", LazyClass("transformers", "CLIPVisionModelWithProjection"),
                              description="CLIP vision model of the IP-Adapter (filled by pipe.loader.load_ip_adapter)")
# transformers 5: CLIPImageProcessor needs torchvision; its PIL variant computes the same pixels without it
# (transformers 4: CLIPImageProcessor is the PIL / numpy one)
FEATURE_EXTRACTOR = ComponentSpec("feature_extractor", LazyClass("transformers", "CLIPImageProcessorPil", "CLIPImageProcessor"), config={"size": 224, "crop_size": 224},
                                  description="resizes and normalises images for the image encoder",
                                  default_creation_method="from_config")
EMBEDS_DOC = "one tensor per IP-Adapter: (rows, images, dim) for base adapters, (rows, images, tokens, dim) for plus"


def _batch_rows(prompt, prompt_embeds, num_images_per_prompt: int) -> int:
    batch = len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0] if prompt_embeds is not None else 1
    return batch * num_images_per_prompt


def to_rows(embeds: torch.Tensor, rows: int, num_images_per_prompt: int) -> torch.Tensor:
    """Embeddings with 1, ``batch`` or ``rows`` rows as ``rows`` rows (``batch * num_images_per_prompt``)."""
    have = embeds.shape[0]
    if have == rows:
        return embeds
    if have == 1:
        return embeds.expand(rows, *embeds.shape[1:]).contiguous()
    if have * num_images_per_prompt == rows:
        return embeds.repeat_interleave(num_images_per_prompt, dim=0)
    raise AdapterError.bad_embeds("IP-Adapter embeddings", f"{have} rows; expected 1, the number of prompts or {rows}")


def _encoder(components):
    encoder = components.image_encoder
    if encoder is None:
        raise AdapterError.missing_image_encoder("the pipeline's image_encoder component is empty")
    return encoder


def _features(encoder, pixels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hidden_states":
        return encoder(pixels, output_hidden_states=True).hidden_states[-2]
    return encoder(pixels).image_embeds


def encode_ip_images(components, images: Any, projections: Sequence, device) -> tuple[list, list]:
    """``(positive, negative)`` embeddings, one ``(1, images, ...)`` tensor per adapter."""
    per_adapter = images if isinstance(images, (list, tuple)) else [images]
    if len(projections) == 1 and len(per_adapter) > 1 and not any(isinstance(i, (list, tuple)) for i in per_adapter):
        per_adapter = [list(per_adapter)]  # several images for the one adapter
    if len(per_adapter) != len(projections):
        raise AdapterError.wrong_count("ip_adapter_image", "entries", len(per_adapter), len(projections),
                                       "give one image (or list of images) per adapter")
    encoder = _encoder(components)
    positive, negative = [], []
    for image, projection in zip(per_adapter, projections):
        pixels = image if isinstance(image, torch.Tensor) else components.feature_extractor(
            image, return_tensors="pt").pixel_values
        pixels = pixels.to(device=device, dtype=encoder.dtype)
        embeds = _features(encoder, pixels, projection.image_features)
        if projection.image_features == "hidden_states":
            uncond = _features(encoder, torch.zeros_like(pixels), "hidden_states")
        else:
            uncond = torch.zeros_like(embeds)
        positive.append(embeds[None])
        negative.append(uncond[None])
    return positive, negative


def negative_like(components, embeds: torch.Tensor, projection) -> torch.Tensor:
    """The unconditional embeddings for precomputed ``embeds`` given without negatives."""
    if projection.image_features != "hidden_states":
        return torch.zeros_like(embeds)
    encoder = components.image_encoder
    if encoder is None:
        raise AdapterError.bad_embeds("ip_adapter_embeds", "for a plus IP-Adapter need negative_ip_adapter_embeds "
                                                           "too (or an image_encoder to encode a black image)")
    size = encoder.config.image_size
    black = torch.zeros(1, 3, size, size, device=embeds.device, dtype=encoder.dtype)
    uncond = _features(encoder, black, "hidden_states").to(embeds.dtype)
    return uncond.expand(*embeds.shape[:2], *uncond.shape[1:]).contiguous()


class StableDiffusionIPAdapterStep(ModularPipelineBlocks):
    """Encode ``ip_adapter_image`` (or take ``ip_adapter_embeds``) for the IP-Adapters loaded in the UNet.

    Load the adapters first: ``pipe.loader.load_ip_adapter(repo, subfolder=..., weight_name=...)`` and
    optionally ``pipe.loader.set_ip_adapter_scale(0.6)``. Outputs one embedding tensor per adapter, already
    repeated for every image of the batch.
    """

    model_name = "stable-diffusion"
    description = ("Encodes ip_adapter_image for the IP-Adapters in the UNet (load them with "
                   "pipe.loader.load_ip_adapter(...), scale them with pipe.loader.set_ip_adapter_scale(...))")
    expected_components = [IMAGE_ENCODER, FEATURE_EXTRACTOR, ComponentSpec("unet", UNet2DConditionModel)]
    inputs = [
        InputParam("ip_adapter_image", type_hint=IMAGE_TYPE,
                   description="the image prompt: an image, or one image (list) per IP-Adapter"),
        InputParam("ip_adapter_embeds", type_hint=FINITE_LIST, description="precomputed image embeddings, " + EMBEDS_DOC),
        InputParam("negative_ip_adapter_embeds", type_hint=FINITE_LIST, description="precomputed negative image embeddings"),
        PROMPT,
        InputParam("prompt_embeds", type_hint=FINITE_TENSOR, description="precomputed prompt embeddings"),
        NUM_IMAGES,
    ]
    intermediate_outputs = [
        OutputParam("ip_adapter_embeds", type_hint=list, kwargs_type="denoiser_input_fields",
                    description="image embeddings for the UNet, " + EMBEDS_DOC),
        OutputParam("negative_ip_adapter_embeds", type_hint=list, kwargs_type="denoiser_input_fields",
                    description="negative image embeddings, like ip_adapter_embeds"),
    ]

    def check_ready(self, components, values):
        given = values.get("ip_adapter_image") is not None or values.get("ip_adapter_embeds") is not None
        if given and not self.projections(components):
            raise AdapterError.no_adapter("ip_adapter_image (or ip_adapter_embeds) was given", *self.no_adapter_hint)

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        if block_state.ip_adapter_image is None and block_state.ip_adapter_embeds is None:
            block_state.negative_ip_adapter_embeds = None  # nothing to do: the UNet runs without image tokens
            self.set_block_state(state, block_state)
            return components, state
        projections = self.projections(components)
        if not projections:
            raise AdapterError.no_adapter("ip_adapter_image (or ip_adapter_embeds) was given", *self.no_adapter_hint)
        device = execution_device(components)
        if block_state.ip_adapter_embeds is None:
            positive, negative = self.encode(components, block_state.ip_adapter_image, projections, device)
        else:
            positive, negative = self._precomputed(components, block_state, projections)
        rows = _batch_rows(block_state.prompt, block_state.prompt_embeds, block_state.num_images_per_prompt)
        n = block_state.num_images_per_prompt
        block_state.ip_adapter_embeds = [to_rows(e, rows, n).to(device) for e in positive]
        block_state.negative_ip_adapter_embeds = [to_rows(e, rows, n).to(device) for e in negative]
        self.set_block_state(state, block_state)
        return components, state

    no_adapter_hint: tuple[str, ...] = ()  # (model, example) for the error when no adapter is loaded

    @staticmethod
    def projections(components) -> list:
        """The image projection of each IP-Adapter loaded in the model (none: no adapter loaded)."""
        return ip_image_projections(components.unet) if components.unet is not None else []

    @staticmethod
    def encode(components, images, projections, device) -> tuple[list, list]:
        """``(positive, negative)`` embeddings of ``images``, one tensor per adapter."""
        return encode_ip_images(components, images, projections, device)

    @staticmethod
    def _precomputed(components, block_state, projections) -> tuple[list, list]:
        positive = list(block_state.ip_adapter_embeds)
        if len(positive) != len(projections):
            raise AdapterError.wrong_count("ip_adapter_embeds", "tensors", len(positive), len(projections))
        for embeds, projection in zip(positive, projections):
            ndim = 4 if projection.image_features == "hidden_states" else 3
            if embeds.ndim != ndim:
                raise AdapterError.bad_embeds("ip_adapter_embeds", f"expected {ndim}-D tensors ({EMBEDS_DOC}), got "
                                                                   f"shape {tuple(embeds.shape)}")
        negative = block_state.negative_ip_adapter_embeds
        if negative is None:
            negative = [negative_like(components, e, p) for e, p in zip(positive, projections)]
        if len(negative) != len(positive):
            raise AdapterError.wrong_count("negative_ip_adapter_embeds", "tensors", len(negative), len(positive))
        return positive, list(negative)


class StableDiffusionAutoIPAdapterStep(AutoPipelineBlocks):
    """IP-Adapter: runs when ``ip_adapter_image`` (or precomputed ``ip_adapter_embeds``) is given, else skipped."""

    choices = {
        "ip_adapter": (StableDiffusionIPAdapterStep, "ip_adapter_image"),
        "from_embeds": (StableDiffusionIPAdapterStep, "ip_adapter_embeds"),
    }
