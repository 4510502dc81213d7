"""FLUX.1 Redux: images as the prompt (variations, restyling, mixing pictures). SigLIP reads each image and Redux's
embedder maps its tokens to the T5 width; they follow the prompt's T5 tokens, or zeros without a prompt. Each image's
row is scaled (``prompt_embeds_scale``, ``pooled_prompt_embeds_scale``) and the rows are summed into one prompt, as
FluxPriorReduxPipeline does. Load the three components with ``pipe.loader.load_redux(repo)``.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ...components.errors import AdapterError
from ...components.models import ReduxImageEncoder
from ...components.spec import ComponentSpec, LazyClass
from ...modular_pipelines import InputParam, ModularPipelineBlocks, OutputParam
from ..checks import IMAGE_TYPE, conflict
from ..stable_diffusion.encoders import as_list
from ..stable_diffusion.inputs import PROMPT
from .encoders import EMBEDS, POOLED, FluxTextEncoderStep
from .inputs import MAX_SEQUENCE_LENGTH, MODEL_NAME, PROMPT_2, TRANSFORMER, execution_device

REDUX_COMPONENTS = ("image_encoder", "feature_extractor", "image_embedder")
IMAGE_ENCODER = ComponentSpec("image_encoder", LazyClass("transformers", "SiglipVisionModel"),
                              description="FLUX.1 Redux's SigLIP vision model (pipe.loader.load_redux)")
# transformers 5: SiglipImageProcessor needs torchvision; its PIL variant computes the same pixels without it
FEATURE_EXTRACTOR = ComponentSpec("feature_extractor", LazyClass("transformers", "SiglipImageProcessorPil",
                                                                 "SiglipImageProcessor"),
                                  config={"size": {"height": 384, "width": 384}},
                                  description="resizes and normalises images for SigLIP",
                                  default_creation_method="from_config")
IMAGE_EMBEDDER = ComponentSpec("image_embedder", ReduxImageEncoder,
                               description="maps SigLIP's tokens to the T5 width (pipe.loader.load_redux)")
SCALES = float | list[float]


class FluxReduxEncoderStep(ModularPipelineBlocks):
    """The prompt embeddings from ``redux_image`` (one image or several, mixed) and, optionally, a prompt."""

    model_name = MODEL_NAME
    expected_components = [IMAGE_ENCODER, FEATURE_EXTRACTOR, IMAGE_EMBEDDER, *FluxTextEncoderStep.expected_components,
                           TRANSFORMER]
    inputs = [
        InputParam("redux_image", type_hint=IMAGE_TYPE, required=True,
                   description="the picture(s) to vary or mix (PIL or numpy; a list mixes them into one prompt)"),
        PROMPT.replace(description="text read with the images (one, or one per image; default: none, zeros)"),
        PROMPT_2,
        MAX_SEQUENCE_LENGTH,
        InputParam("prompt_embeds_scale", type_hint=Annotated[float, Field(ge=0)] | list[Annotated[float, Field(ge=0)]],
                   default=1.0, description="each image's weight in the mix of T5-width tokens (one, or one per image)"),
        InputParam("pooled_prompt_embeds_scale", type_hint=Annotated[float, Field(ge=0)] | list[Annotated[float, Field(ge=0)]],
                   default=1.0, description="each image's weight in the mix of pooled embeddings (one, or one per image)"),
    ]
    intermediate_outputs = [
        EMBEDS, POOLED,
        OutputParam("text_ids", type_hint=torch.Tensor, description="(text tokens, 3) zero positions of the tokens"),
    ]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        images = block_state.redux_image if isinstance(block_state.redux_image, list) else [block_state.redux_image]
        count = len(images)
        scales = [self.scales(block_state, name, count) for name in ("prompt_embeds_scale", "pooled_prompt_embeds_scale")]
        prompts = self.prompts(components, block_state, count)
        missing = [name for name in REDUX_COMPONENTS if getattr(components, name, None) is None]
        if missing:
            raise AdapterError.no_redux(missing)
        device = execution_device(components)
        image_embeds = self.encode_images(components, images).to(device)
        embeds, pooled = self.text(components, block_state, prompts, count, device, image_embeds.dtype)
        embeds = torch.cat((embeds.to(image_embeds.dtype), image_embeds), dim=1)
        weights = [torch.tensor(s, device=device, dtype=image_embeds.dtype) for s in scales]
        block_state.prompt_embeds = (embeds * weights[0][:, None, None]).sum(dim=0, keepdim=True)
        block_state.pooled_prompt_embeds = (pooled.to(image_embeds.dtype) * weights[1][:, None]).sum(dim=0, keepdim=True)
        block_state.text_ids = torch.zeros(block_state.prompt_embeds.shape[1], 3, device=device,
                                           dtype=image_embeds.dtype)
        self.set_block_state(state, block_state)
        return components, state

    def scales(self, block_state, name: str, count: int) -> list[float]:
        value = getattr(block_state, name)
        if not isinstance(value, list):
            return [float(value)] * count
        if len(value) != count:
            raise conflict(self, [name, "redux_image"], f"{len(value)} weights for {count} images; give one per image")
        return [float(v) for v in value]

    @staticmethod
    def encode_images(components, images: list) -> torch.Tensor:
        """Redux's tokens of each image: ``(images, tokens, T5 width)``."""
        encoder = components.image_encoder
        pixels = components.feature_extractor(images, do_convert_rgb=True, return_tensors="pt").pixel_values
        first = next(encoder.parameters())
        tokens = encoder(pixel_values=pixels.to(device=first.device, dtype=first.dtype)).last_hidden_state
        embedder = components.image_embedder
        return embedder(tokens.to(next(embedder.parameters()))).image_embeds

    def prompts(self, components, block_state, count: int) -> list[str] | None:
        """The prompt, one per image (None without one), checked before anything is encoded."""
        if block_state.prompt is None:
            return None
        prompts = as_list(block_state.prompt, count)
        if len(prompts) != count:
            raise conflict(self, ["prompt", "redux_image"], f"{len(prompts)} prompts for {count} images; give one "
                                                            "prompt or one per image")
        if components.text_encoder is None or components.text_encoder_2 is None:
            raise conflict(self, ["prompt", "text_encoder"], "a prompt needs the text encoders loaded; leave the "
                                                             "prompt out to use the images alone")
        return prompts

    @staticmethod
    def text(components, block_state, prompts, count: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts' ``(T5 states, pooled CLIP embeddings)``, one row per image; zeros without prompts."""
        length = block_state.max_sequence_length
        if prompts is None:
            config = components.transformer.config
            return (torch.zeros(count, length, config.joint_attention_dim, device=device, dtype=dtype),
                    torch.zeros(count, config.pooled_projection_dim, device=device, dtype=dtype))
        prompt_2 = block_state.prompt_2 and as_list(block_state.prompt_2, count)
        return FluxTextEncoderStep.encode(components, prompts, prompt_2, length, device)
