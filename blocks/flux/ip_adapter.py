"""IP-Adapters for FLUX.1 (XLabs'): encode ``ip_adapter_image`` with CLIP for the adapters loaded in the transformer
(``pipe.loader.load_ip_adapter``). The negative embeddings are a black image's, as FluxPipeline makes them for true
CFG. Put the step first, as Stable Diffusion's: it counts the batch from the prompt itself."""

from __future__ import annotations

from PIL import Image

from ...modular_pipelines import AutoPipelineBlocks
from ..stable_diffusion.ip_adapter import FEATURE_EXTRACTOR, IMAGE_ENCODER, StableDiffusionIPAdapterStep, encode_ip_images
from .inputs import MODEL_NAME, TRANSFORMER


class FluxIPAdapterStep(StableDiffusionIPAdapterStep):
    """Encode ``ip_adapter_image`` (or take ``ip_adapter_embeds``) for the IP-Adapters in FLUX.1's transformer:
    one ``(rows, images, dim)`` tensor per adapter; skipped without an image."""

    model_name = MODEL_NAME
    description = ("Encodes ip_adapter_image for the IP-Adapters in the transformer (load them with "
                   "pipe.loader.load_ip_adapter(...), scale them with pipe.loader.set_ip_adapter_scale(...))")
    expected_components = [IMAGE_ENCODER, FEATURE_EXTRACTOR, TRANSFORMER]
    no_adapter_hint = ("the transformer", "'XLabs-AI/flux-ip-adapter', weight_name='ip_adapter.safetensors', "
                                          "image_encoder=CLIPVisionModelWithProjection.from_pretrained(...)")

    @staticmethod
    def projections(components) -> list:
        projection = getattr(components.transformer, "encoder_hid_proj", None)
        return list(projection.image_projection_layers) if projection is not None else []

    @staticmethod
    def encode(components, images, projections, device) -> tuple[list, list]:
        positive, _ = encode_ip_images(components, images, projections, device)
        black = Image.new("RGB", (64, 64))
        negative, _ = encode_ip_images(components, [black] * len(projections), projections, device)
        return positive, [n.expand(-1, p.shape[1], -1).contiguous() for n, p in zip(negative, positive)]


class FluxAutoIPAdapterStep(AutoPipelineBlocks):
    """IP-Adapter: runs when ``ip_adapter_image`` (or precomputed ``ip_adapter_embeds``) is given, else skipped."""

    choices = {
        "ip_adapter": (FluxIPAdapterStep, "ip_adapter_image"),
        "from_embeds": (FluxIPAdapterStep, "ip_adapter_embeds"),
    }
